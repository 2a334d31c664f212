"""De-duplication across sources, the period filter, and totals by namespace, team and model.

Totals are plain sums of line fields, so anyone can recompute them from the CSV; the
tests do exactly that. No line is ever counted twice: the same Job seen by the cluster
(final, annotated) and by Prometheus (a live window) keeps only the cluster line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from .model import COMPONENTS, SOURCE_CLUSTER, SOURCE_PROMETHEUS, SOURCE_TRACKER, LineItem, Totals

# Lower rank wins when two sources describe the same Job.
SOURCE_RANK = {SOURCE_CLUSTER: 0, SOURCE_PROMETHEUS: 1, SOURCE_TRACKER: 2}


def deduplicate(lines: Iterable[LineItem]) -> tuple[list[LineItem], list[str]]:
    """Keep one line per workload key; return the kept lines and a note per dropped line."""
    best: dict[str, LineItem] = {}
    notes: list[str] = []
    for line in lines:
        prev = best.get(line.key)
        if prev is None:
            best[line.key] = line
            continue
        keep, drop = sorted((prev, line), key=lambda x: SOURCE_RANK.get(x.source, 9))
        best[line.key] = keep
        notes.append(
            f"{drop.namespace}/{drop.job}: {drop.source} line dropped, {keep.source} line kept "
            "(same Job; counted once)"
        )
    return list(best.values()), notes


def in_period(line: LineItem, since: datetime | None, until: datetime | None) -> bool:
    """A workload belongs to the period in which it finished (or was accounted, or started).

    Prometheus lines are already cut to the queried window [start, end], so they belong to
    the period when that window lies inside it.
    """
    if line.source == SOURCE_PROMETHEUS and line.start is not None and line.end is not None:
        return (since is None or line.start >= since) and (until is None or line.end <= until)
    t = line.end or line.accounted_at or line.start
    if t is None:
        return since is None and until is None
    if since is not None and t < since:
        return False
    return not (until is not None and t >= until)


def totals(lines: Sequence[LineItem]) -> Totals:
    comp = {c: sum(getattr(x, f"{c}_kwh") for x in lines) for c in COMPONENTS}
    return Totals(
        jobs=len(lines),
        gpu_hours=sum(x.gpu_hours for x in lines),
        it_energy_kwh=sum(x.it_energy_kwh for x in lines),
        facility_energy_kwh=sum(x.facility_energy_kwh for x in lines),
        location_kgco2e=sum(x.location_kgco2e for x in lines),
        market_kgco2e=sum(
            x.market_kgco2e if x.market_kgco2e is not None else x.location_kgco2e for x in lines
        ),
        embodied_kgco2e=sum(x.embodied_kgco2e or 0.0 for x in lines),
        by_component_kwh=comp,
    )


UNSET = "(none)"


def group_totals(lines: Sequence[LineItem], key: Callable[[LineItem], str]) -> dict[str, Totals]:
    groups: dict[str, list[LineItem]] = {}
    for x in lines:
        groups.setdefault(key(x) or UNSET, []).append(x)
    return {k: totals(v) for k, v in sorted(groups.items())}


def all_totals(lines: Sequence[LineItem]) -> dict[str, object]:
    """The totals block of a report: overall and by namespace, team, model, GHG scope, zone and
    workload kind."""
    return {
        "all": totals(lines).as_dict(),
        "by_namespace": {k: t.as_dict() for k, t in group_totals(lines, lambda x: x.namespace).items()},
        "by_team": {k: t.as_dict() for k, t in group_totals(lines, lambda x: x.team).items()},
        "by_model": {k: t.as_dict() for k, t in group_totals(lines, lambda x: x.model).items()},
        "by_ghg_scope": {k: t.as_dict() for k, t in group_totals(lines, lambda x: x.ghg_scope).items()},
        "by_zone": {k: t.as_dict() for k, t in group_totals(lines, lambda x: x.grid_zone).items()},
        # Job, PyTorchJob, JobSet, TrainJob, RayJob, ... (the operator's record says which)
        "by_workload_kind": {k: t.as_dict() for k, t in group_totals(lines, lambda x: x.workload_kind).items()},
    }
