"""Assemble a report from line items: scope filter, de-duplication, GHG, SCI, totals.

Pure apart from the injected clock, so the whole pipeline is tested on plain line items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from carbontrack import __version__
from carbontrack.core import contract

from . import aggregate, aiact, ghg, long_running
from .model import UNITS, LineItem
from .sci import EmbodiedModel
from .sources_cluster import Budget, Skipped
from .statement import compute_statement


@dataclass(frozen=True)
class Scope:
    cluster: str = ""
    namespaces: tuple[str, ...] = ()
    team: str = ""
    selector: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "namespaces": list(self.namespaces) or "all",
            "team": self.team or "all",
            "job_selector": self.selector,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }


@dataclass
class Report:
    generated_at: datetime
    scope: Scope
    lines: list[LineItem]
    budgets: list[Budget] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, object]:
        return aggregate.all_totals(self.lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": contract.REPORT_DOCUMENT_SCHEMA,
            "tool_version": __version__,
            "generated_at": self.generated_at.isoformat(),
            "scope": self.scope.describe(),
            "units": dict(UNITS),
            "line_items": [x.to_row() for x in self.lines],
            "totals": self.totals,
            "ghg": aggregate_ghg(self.lines),
            "eu_ai_act": [vars(e) for e in aiact.model_energy(self.lines)],
            # long-running workloads (Deployments, ...): their slices summed per workload,
            # with gCO2e per 1,000 functional units (reports/long_running.py)
            "long_running": [w.to_dict() for w in long_running.section(self.lines)],
            "budgets": [vars(b) for b in self.budgets],
            "skipped_jobs": [vars(s) for s in self.skipped],
            "notes": self.notes,
        }

    def statement(self) -> str:
        return compute_statement(self.lines)


def aggregate_ghg(lines: Sequence[LineItem]) -> dict[str, Any]:
    return {
        "framework": "GHG Protocol Corporate Standard and Scope 2 Guidance",
        "by_scope": ghg.summary(lines),
        "note": (
            "Location-based uses grid-average factors; market-based uses contractual "
            "instruments configured per zone, else the grid-average factor (stated per line)."
        ),
    }


def build_report(
    lines: Sequence[LineItem],
    scope: Scope,
    ghg_settings: ghg.GhgSettings,
    embodied: EmbodiedModel,
    team_of: Callable[[LineItem], str] = lambda x: x.team,
    skipped: Sequence[Skipped] = (),
    budgets: Sequence[Budget] = (),
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    fill: Callable[[LineItem], LineItem] = lambda x: x,
) -> Report:
    """``fill`` completes a line's provenance (e.g. ``CatalogueYears.fill``) before use."""
    kept, notes = aggregate.deduplicate(lines)
    selected = [
        x
        for x in kept
        if aggregate.in_period(x, scope.since, scope.until)
        and (not scope.team or team_of(x) == scope.team)
        and (not scope.namespaces or x.namespace in scope.namespaces or not x.namespace)
    ]
    out = [embodied.apply(ghg.classify(fill(x), ghg_settings)) for x in selected]
    out.sort(key=lambda x: (x.end or x.accounted_at or scope.until or clock()).timestamp())
    return Report(clock(), scope, out, list(budgets), list(skipped), notes)
