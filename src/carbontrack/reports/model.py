"""The report line item: one Job (or one tracker run) with every field docs/reports.md lists
("What a line carries").

Field names carry their units (``_kwh``, ``_kgco2e``, ``_g_per_kwh``, ``_h``) so a CSV
column never needs a legend; factors (intensity, PUE, market factor) sit on the same line
as the numbers they produced, so each line can be checked on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any

from carbontrack.core.errors import ConfigError

COMPONENTS = ("cpu", "dram", "gpu", "other")

# Where a line came from; the aggregate step uses it to prefer final (annotated) numbers.
SOURCE_CLUSTER = "cluster-annotation"
SOURCE_PROMETHEUS = "prometheus"
SOURCE_TRACKER = "tracker-file"


@dataclass(frozen=True)
class LineItem:
    """One accounted workload. Energy in kWh, emissions in kgCO2e, time in hours.

    ``it_energy_kwh`` is the sum of the component energies (checked in ``validate``);
    ``facility_energy_kwh`` = IT energy x PUE. ``location_kgco2e`` is the number the
    operator/tracker integrated interval by interval (never total energy x final factor);
    ``intensity_g_per_kwh`` is its energy-weighted mean, shown for reading, not recomputing.
    """

    # identity
    source: str
    cluster: str = ""
    namespace: str = ""
    job: str = ""
    job_uid: str = ""
    team: str = ""
    model: str = ""
    mlflow_run_id: str = ""
    wandb_run_id: str = ""
    status: str = ""  # Complete | Failed | Running | "" (unknown)
    run_kind: str = ""  # training | preliminary | fine-tuning | inference | "" (label-declared)
    # time window (UTC)
    start: datetime | None = None
    end: datetime | None = None
    # hardware
    node_pool: str = ""
    instance_type: str = ""
    node_count: int = 0  # nodes the Job's pods ran on (0: not recorded)
    gpu_model: str = ""
    gpu_count: int = 0
    gpu_hours: float = 0.0
    cpu_cores_reserved: float = 0.0
    memory_gb_reserved: float = 0.0  # RAM requested (Jobs) or installed (tracker host), GB
    # energy (IT equipment, before PUE)
    cpu_kwh: float = 0.0
    dram_kwh: float = 0.0
    gpu_kwh: float = 0.0
    other_kwh: float = 0.0
    it_energy_kwh: float = 0.0
    energy_method: str = ""  # measured | sampled | estimated | mixed(...)
    idle_share: float | None = None  # fraction of IT energy that was idle power
    idle_rule: str = ""  # how idle power was attributed (e.g. "reserved")
    # facility
    pue: float = 1.0
    pue_source: str = ""
    facility_energy_kwh: float = 0.0
    # grid factor (location-based)
    grid_zone: str = ""
    intensity_g_per_kwh: float = 0.0
    intensity_basis: str = ""
    intensity_source: str = ""
    intensity_year: int | None = None
    location_kgco2e: float = 0.0
    # a Job on nodes in several zones: (zone, facility kWh, location kgCO2e) per zone, so
    # each zone's own factors apply to its share (empty: all in grid_zone)
    by_zone: tuple[tuple[str, float, float], ...] = ()
    # market-based (contractual instruments; see ghg.py)
    market_g_per_kwh: float | None = None
    market_source: str = ""
    market_kgco2e: float | None = None
    # embodied (SCI M)
    embodied_kgco2e: float | None = None
    embodied_assumptions: str = ""
    # SCI
    functional_unit: str = "job"
    functional_units: float = 1.0
    sci_g_per_unit: float | None = None
    # GHG Protocol classification
    ghg_scope: str = ""
    ghg_basis: str = ""  # which factor basis the scope figures use (ghg_basis.py)
    direct_kgco2e: float | None = None  # combustion-only location-based (Scope 2 when own)
    upstream_kgco2e: float | None = None  # lifecycle - direct: Scope 3 Category 3 when own
    # quality
    uncertainty: float | None = None  # relative half-width of the energy (0.1 = +/-10 %)
    tool_version: str = ""
    accounted_at: datetime | None = None
    notes: str = ""
    # the recorded workload's kind (Job, Deployment, ...; a slice of a long-running workload
    # has job_uid "<workload uid>@<slice start>"); "" where the source does not say
    workload_kind: str = ""

    @property
    def duration_h(self) -> float:
        if self.start is None or self.end is None:
            return 0.0
        return max(0.0, (self.end - self.start).total_seconds() / 3600.0)

    @property
    def key(self) -> str:
        """Identity used to de-duplicate the same workload seen by several sources."""
        if self.job_uid:
            return f"uid:{self.job_uid}"
        return f"{self.source}:{self.cluster}/{self.namespace}/{self.job}"

    def with_(self, **changes: Any) -> LineItem:
        return replace(self, **changes)

    def validate(self) -> LineItem:
        """Reject lines that would make totals wrong; message names the workload and field."""
        where = f"{self.namespace}/{self.job}" if self.namespace else self.job or self.key
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{where}: {f.name} is {v!r}; expected a finite number")
        for name in (*(f"{c}_kwh" for c in COMPONENTS), "it_energy_kwh", "location_kgco2e"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}: {name} is negative ({getattr(self, name)})")
        parts = sum(getattr(self, f"{c}_kwh") for c in COMPONENTS)
        if not math.isclose(parts, self.it_energy_kwh, rel_tol=1e-6, abs_tol=1e-9):
            raise ConfigError(
                f"{where}: component energies sum to {parts:.9g} kWh but it_energy_kwh is "
                f"{self.it_energy_kwh:.9g} kWh; the source data is inconsistent"
            )
        if self.pue < 1.0:
            raise ConfigError(f"{where}: PUE {self.pue} is below 1.0")
        return self

    def to_row(self) -> dict[str, Any]:
        """Flat, ordered dict for CSV/JSON: datetimes as ISO 8601 UTC, None as empty."""
        row: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "end":
                row["end"] = _iso(v)
                row["duration_h"] = self.duration_h
                continue
            if f.name == "by_zone":
                row["by_zone"] = ";".join(f"{z}:{kwh:.9g}:{kg:.9g}" for z, kwh, kg in v)
                continue
            row[f.name] = _iso(v) if isinstance(v, datetime) else v
        return row


def line_columns() -> list[str]:
    cols: list[str] = []
    for f in fields(LineItem):
        cols.append(f.name)
        if f.name == "end":
            cols.append("duration_h")
    return cols


# Units of every numeric column; written into the JSON report and the CSV header notes.
UNITS: Mapping[str, str] = {
    "duration_h": "h",
    "gpu_hours": "GPU-h",
    "cpu_cores_reserved": "cores",
    "memory_gb_reserved": "GB (10^9 bytes)",
    **{f"{c}_kwh": "kWh" for c in COMPONENTS},
    "it_energy_kwh": "kWh (IT equipment)",
    "facility_energy_kwh": "kWh (IT x PUE)",
    "idle_share": "fraction of IT energy",
    "pue": "ratio",
    "intensity_g_per_kwh": "gCO2e/kWh",
    "market_g_per_kwh": "gCO2e/kWh",
    "location_kgco2e": "kgCO2e",
    "by_zone": "zone:facility kWh:location kgCO2e, ';'-separated",
    "direct_kgco2e": "kgCO2e",
    "upstream_kgco2e": "kgCO2e",
    "market_kgco2e": "kgCO2e",
    "embodied_kgco2e": "kgCO2e",
    "sci_g_per_unit": "gCO2e per functional unit",
    "uncertainty": "relative half-width of energy",
}


def _iso(v: datetime | None) -> str:
    if v is None:
        return ""
    if v.tzinfo is None:
        v = v.replace(tzinfo=timezone.utc)
    return v.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_time(text: str, what: str) -> datetime:
    """ISO 8601 (``Z`` allowed) -> aware UTC datetime; naive input is taken as UTC."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{what}: {text!r} is not an ISO 8601 time (e.g. 2026-11-30T12:00:00Z)"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Totals:
    """Sums over line items. Recomputable from the lines (a test does exactly that)."""

    jobs: int = 0
    gpu_hours: float = 0.0
    it_energy_kwh: float = 0.0
    facility_energy_kwh: float = 0.0
    location_kgco2e: float = 0.0
    market_kgco2e: float = 0.0
    embodied_kgco2e: float = 0.0
    by_component_kwh: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
