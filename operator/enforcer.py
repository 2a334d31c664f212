"""Holding and releasing Jobs for budgets with action Suspend (the decisions are pure, in
enforcement.py; this module writes them and says so in Events).

With the chart's MutatingAdmissionPolicy a Job is created held; without it (Kubernetes < 1.36)
the operator suspends it just after creation. Either way the operator releases it when no
budget it belongs to holds any more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from carbontrack.core.contract import DEFERRAL
from carbontrack.core.errors import TemporaryError

from .deferral import holds as deferral_holds
from .enforcement import BudgetView, to_resume, to_suspend
from .jobs import SUSPENDED_BY, JobFacts
from .kube import Conflict, Gone, KubeApi
from .metrics import OperatorMetrics

log = logging.getLogger(__name__)
JOB_REF = {"kind": "Job", "apiVersion": "batch/v1"}
# kind, hold (True) or release (False) -> the merge patch (the workload adapter's); None: the
# kind cannot be held
HoldPatch = Callable[[str, bool], Mapping[str, Any] | None]


def _job_hold(kind: str, hold: bool) -> Mapping[str, Any] | None:
    return {"spec": {"suspend": hold}}


def job_ref(job: JobFacts) -> dict[str, str]:
    """The Event's involvedObject: the workload of any kind."""
    return {"kind": job.kind, "apiVersion": job.api_version, "name": job.name,
            "namespace": job.namespace, "uid": job.uid}


class Enforcer:
    def __init__(self, kube: KubeApi, metrics: OperatorMetrics, clock: Callable[[], datetime],
                 budgets: Callable[[], Iterable[BudgetView]],
                 members: Callable[[JobFacts], set[str]], hold: HoldPatch = _job_hold) -> None:
        self._kube = kube
        self._metrics = metrics
        self._clock = clock
        self._budgets = budgets  # the current views
        self._members = members  # budgets a Job belongs to (relabelling does not escape them)
        self._hold = hold
        self._announced: set[str] = set()  # UIDs of held Jobs whose hold was announced (Event)

    def forget(self, uid: str) -> None:
        self._announced.discard(uid)

    async def enforce(self, job: JobFacts) -> None:
        budgets = list(self._budgets())
        blocker = to_suspend(job, budgets)
        if blocker is not None:
            await self._suspend(job, blocker)
        elif to_resume(job, budgets, self._members(job)):
            await self._resume(job)
        elif job.suspended and SUSPENDED_BY in job.annotations and job.uid not in self._announced:
            # held at admission (the chart's MutatingAdmissionPolicy): say why, once
            self._announced.add(job.uid)
            self._metrics.jobs_suspended.inc()
            await self._kube.post_event(
                job_ref(job), "SuspendedByCarbonBudget",
                f"held at admission: CarbonBudget {job.annotations[SUSPENDED_BY]} is exceeded; "
                "the Job resumes when the period resets or the limit is raised", True, self._clock())

    async def release(self, jobs: MutableMapping[str, JobFacts]) -> None:
        """Resume every held Job that no budget holds any more (updates ``jobs``)."""
        budgets = list(self._budgets())
        for job in list(jobs.values()):
            if to_resume(job, budgets, self._members(job)):
                await self._resume(job)
                annotations = {k: v for k, v in job.annotations.items() if k != SUSPENDED_BY}
                jobs[job.uid] = replace(job, suspended=deferral_holds(job), annotations=annotations)

    async def _suspend(self, job: JobFacts, budget: BudgetView) -> None:
        patch = self._hold(job.kind, True)
        if patch is None:
            return
        try:
            await self._kube.patch_workload(job.kind, job.namespace, job.name, job.uid, {
                **patch, "metadata": {"annotations": {SUSPENDED_BY: budget.key}}})
        except (Gone, Conflict, TemporaryError) as err:
            log.warning("could not suspend %s %s/%s: %s", job.kind, job.namespace, job.name, err)
            return
        self._metrics.jobs_suspended.inc()
        self._announced.add(job.uid)
        limit = budget.spec.limit_text if budget.spec else "?"
        await self._kube.post_event(
            job_ref(job), "SuspendedByCarbonBudget",
            f"suspended: CarbonBudget {budget.name} is exceeded ({budget.used} of {limit} in "
            f"{budget.period_name}); the Job resumes when the period resets or the limit is raised",
            True, self._clock(),
        )

    async def _resume(self, job: JobFacts) -> None:
        patch = self._hold(job.kind, False)
        if patch is None:
            return
        deferred = job.kind == "Job" and deferral_holds(job)
        if deferred:  # also held for its low-carbon window: operator/deferral.py releases it then
            patch = {}
        try:
            await self._kube.patch_workload(job.kind, job.namespace, job.name, job.uid, {
                **patch, "metadata": {"annotations": {SUSPENDED_BY: None}}})
        except (Gone, Conflict, TemporaryError) as err:
            log.warning("could not resume %s %s/%s: %s", job.kind, job.namespace, job.name, err)
            return
        self._metrics.jobs_resumed.inc()
        self._announced.discard(job.uid)
        await self._kube.post_event(
            job_ref(job), "ResumedByCarbonBudget",
            f"resumed: the CarbonBudget that suspended it ({job.annotations.get(SUSPENDED_BY)}) "
            "allows new Jobs again" + (f"; it stays held for its low-carbon window ({DEFERRAL})"
                                       if deferred else ""),
            False, self._clock(),
        )
