"""The report's section on long-running workloads (Deployments, StatefulSets,
LeaderWorkerSets, InferenceServices): their slices, recorded by the operator one line each,
summed per workload, with CO2e per 1,000 functional units (pure).

A slice's line carries ``job_uid = "<workload uid>@<slice start>"`` and, where the workload
names a functional-unit counter (``carbontrack.io/functional-unit-query``), the slice's unit
count in ``functional_units`` (``functional_unit`` is then the unit's name; a slice without
unit data says ``slice`` and 1). gCO2e per 1,000 units is the CO2e of the slices that have
unit data divided by their units, so a slice whose counter had no data never dilutes it;
``units_coverage`` says how many slices had data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from carbontrack.core.slices import NO_UNIT, parse_slice_key

from .model import LineItem
from .sci import sci_over


@dataclass(frozen=True)
class WorkloadSummary:
    namespace: str
    name: str
    kind: str
    uid: str
    slices: int
    start: datetime | None
    end: datetime | None
    contiguous: bool
    it_energy_kwh: float
    location_gco2e: float
    embodied_gco2e: float | None
    functional_unit: str | None
    units: float | None
    units_coverage: str
    g_per_1000_units: float | None
    sci_g_per_unit: float | None

    def to_dict(self) -> dict[str, Any]:
        out = dict(vars(self))
        out["start"] = self.start.isoformat() if self.start else None
        out["end"] = self.end.isoformat() if self.end else None
        return out


def slice_lines(lines: Sequence[LineItem]) -> dict[tuple[str, str], list[LineItem]]:
    """Lines that are slices, by (namespace, workload uid), each list in time order."""
    out: dict[tuple[str, str], list[LineItem]] = {}
    for line in lines:
        parsed = parse_slice_key(line.job_uid)
        if parsed is not None:
            out.setdefault((line.namespace, parsed[0]), []).append(line)
    for group in out.values():
        group.sort(key=lambda x: (x.start or datetime.min).timestamp() if x.start else 0.0)
    return out


def summarize(uid: str, slices: Sequence[LineItem]) -> WorkloadSummary:
    first = slices[0]
    with_units = [x for x in slices if x.functional_unit != NO_UNIT]
    unit_names = sorted({x.functional_unit for x in with_units})
    units = math.fsum(x.functional_units for x in with_units) if with_units else None
    unit_g = math.fsum(x.location_kgco2e for x in with_units) * 1000.0
    per_1000 = unit_g / units * 1000.0 if units else None
    sci = sci_over(with_units)  # SCI with R = the units (O + M per unit)
    all_embodied = [x.embodied_kgco2e for x in slices]
    return WorkloadSummary(
        namespace=first.namespace, name=first.job, kind=first.workload_kind or "", uid=uid,
        slices=len(slices), start=slices[0].start, end=slices[-1].end,
        contiguous=all(a.end == b.start for a, b in itertools.pairwise(slices)),
        it_energy_kwh=math.fsum(x.it_energy_kwh for x in slices),
        location_gco2e=math.fsum(x.location_kgco2e for x in slices) * 1000.0,
        embodied_gco2e=(math.fsum(m for m in all_embodied if m is not None) * 1000.0
                        if all(m is not None for m in all_embodied) else None),
        functional_unit=",".join(unit_names) if unit_names else None,
        units=units if len(unit_names) <= 1 else None,
        units_coverage=f"{len(with_units)}/{len(slices)} slices",
        g_per_1000_units=per_1000 if len(unit_names) == 1 else None,
        sci_g_per_unit=sci if len(unit_names) == 1 else None,
    )


def section(lines: Sequence[LineItem]) -> list[WorkloadSummary]:
    groups = slice_lines(lines)
    return [summarize(uid, group) for (_, uid), group in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[1][0].job, kv[0][1]))]
