"""What one tracked run produced. Plain data: writers, the summary table and loggers read it.

Units are in the names. Energies are IT energy (what the hardware drew) unless the
name says ``facility`` (IT energy x PUE, what the building drew).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from ..core.types import JOULES_PER_KWH


@dataclass(frozen=True)
class FactorUse:
    """One grid factor used for some of the run's intervals, and how much energy it covered."""

    zone: str
    g_per_kwh: float
    source: str
    year: int | None
    licence: str
    basis: str  # Basis.label(): "average/lifecycle/location-based"
    fallback_reason: str | None
    intervals: int
    it_energy_j: float


@dataclass(frozen=True)
class DeviceEnergy:
    """One device's energy over the run: as the machine drew it, and what this run was charged."""

    source: str
    component: str
    device: str
    method: str
    model: str
    machine_energy_j: float
    attributed_energy_j: float
    uncertainty: float


@dataclass(frozen=True)
class SourceStatus:
    name: str
    up: bool
    message: str


@dataclass(frozen=True)
class RunResult:
    run_id: str
    project_name: str
    experiment_id: str
    started_at: datetime
    ended_at: datetime
    duration_s: float
    scope: str  # "process" | "machine"
    method: str  # least direct method that contributed energy: measured < sampled < estimated
    energy_j: dict[str, float]  # component -> attributed IT energy, joules
    co2e_grams: float  # location-based, sum over intervals of kWh x PUE x that interval's factor
    market_based_co2e_grams: float | None
    market_factor_g_per_kwh: float | None
    zone: str
    pue: float
    factors: tuple[FactorUse, ...]
    devices: tuple[DeviceEnergy, ...]
    sources: tuple[SourceStatus, ...]
    uncertainty: float  # relative half-width of the energy (and so of the emissions)
    intervals: int
    host: dict[str, Any]
    carbontrack_version: str
    parent_run_id: str | None = None  # set when this tracker was started inside another
    overlaps_with: tuple[str, ...] = ()  # run ids whose windows overlap this one (same energy)
    warnings: tuple[str, ...] = ()
    method_notes: tuple[str, ...] = ()  # why each source was (not) used; estimate model basis
    command: tuple[str, ...] | None = None
    exit_code: int | None = None

    @property
    def energy_total_j(self) -> float:
        return sum(self.energy_j.values())

    @property
    def energy_kwh(self) -> float:
        """IT energy, kWh."""
        return self.energy_total_j / JOULES_PER_KWH

    @property
    def facility_energy_kwh(self) -> float:
        return self.energy_kwh * self.pue

    @property
    def intensity_g_per_kwh(self) -> float | None:
        """Effective factor: emissions / facility kWh (the energy-weighted mean of the factors)."""
        if self.facility_energy_kwh <= 0:
            return self.factors[0].g_per_kwh if self.factors else None
        return self.co2e_grams / self.facility_energy_kwh

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["started_at"] = self.started_at.isoformat()
        d["ended_at"] = self.ended_at.isoformat()
        d["energy_total_j"] = self.energy_total_j
        d["energy_kwh"] = self.energy_kwh
        d["facility_energy_kwh"] = self.facility_energy_kwh
        d["intensity_g_per_kwh"] = self.intensity_g_per_kwh
        return d


@runtime_checkable
class ResultLogger(Protocol):
    """Plug-in hook: MLflow / W&B loggers (carbontrack.reports.*) receive each finished run."""

    def on_result(self, result: RunResult) -> None: ...


class Notes:
    """Mutable warnings collected while a run is live (frozen into RunResult at the end)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, text: str) -> None:
        if text not in self.items:
            self.items.append(text)
