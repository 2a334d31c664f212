"""Suspend / resume decisions for budgets with action Suspend (pure).

"New" Jobs are those created at or after the moment the budget was exceeded: Jobs that
were already running keep running (they were admitted under the limit). A Job suspended by
the operator carries the annotation ``carbontrack.io/suspended-by``; Jobs suspended by
anyone else are never touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .budgets import BudgetSpec
from .jobs import SUSPENDED_BY, JobFacts


@dataclass(frozen=True)
class BudgetView:
    """What the operator keeps in memory about one CarbonBudget."""

    namespace: str
    name: str
    uid: str
    spec: BudgetSpec | None  # None: invalid spec (reported in its status)
    exceeded: bool = False
    exceeded_at: datetime | None = None
    used: str = ""
    period_name: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects(self, job: JobFacts) -> bool:
        return (
            self.spec is not None
            and job.namespace == self.namespace
            and self.spec.selector.matches(job.labels)
        )

    @property
    def holding(self) -> bool:
        """Exceeded with action Suspend: new Jobs it counts are held."""
        return self.spec is not None and self.spec.action == "Suspend" and self.exceeded

    def blocks(self, job: JobFacts) -> bool:
        return self.holding and self.selects(job)


def to_suspend(job: JobFacts, budgets: Iterable[BudgetView]) -> BudgetView | None:
    """The exceeded Suspend budget that must suspend this new Job, if any."""
    if job.finished or job.deleting or job.suspended:
        return None
    for budget in sorted(budgets, key=lambda b: b.key):
        if budget.blocks(job) and (
            budget.exceeded_at is None or job.created_at >= budget.exceeded_at
        ):
            return budget
    return None


def to_resume(job: JobFacts, budgets: Iterable[BudgetView], members: Iterable[str] = ()) -> bool:
    """True when a held Job is no longer blocked by any budget: neither one selecting it
    now, nor one it belonged to (``members``, the budget that held it among them), so
    relabelling a held Job does not release it."""
    if SUSPENDED_BY not in job.annotations or not job.suspended or job.finished:
        return False
    keys = {*members, job.annotations[SUSPENDED_BY]}
    return not any(b.blocks(job) or (b.holding and b.key in keys) for b in budgets)
