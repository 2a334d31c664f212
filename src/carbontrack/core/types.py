"""Value types shared by every part of CarbonTrack.

Energy sources report *cumulative* joules per device (monotonic since the
source was opened, wrap-arounds and resets already handled), so consumers only
ever take differences of two readings. Units are in the names: joules, watts,
grams of CO2e, gCO2e per kWh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Protocol, runtime_checkable

JOULES_PER_KWH = 3.6e6


class Component(str, Enum):
    """What drew the energy. Values are Prometheus label values."""

    CPU = "cpu"
    DRAM = "dram"
    GPU = "gpu"
    OTHER = "other"


class Method(str, Enum):
    """How a number was obtained; reports and metrics always say which."""

    MEASURED = "measured"  # a hardware energy counter (RAPL energy_uj, NVML total energy)
    SAMPLED = "sampled"  # power sampled in a thread and integrated over time
    ESTIMATED = "estimated"  # a model (utilisation x coefficients, TDP), no counter


@dataclass(frozen=True)
class EnergyReading:
    """One device's cumulative energy at one instant.

    ``joules`` is monotonic non-decreasing for the life of the source object.
    ``uncertainty`` is a relative half-width (0.05 = +/-5 %) of the true value.
    """

    component: Component
    device: str  # stable device id: "package-0", "dram-1", "GPU-<uuid>", "cpu-estimate"
    joules: float
    method: Method
    uncertainty: float = 0.0
    model: str = ""  # hardware model where known ("NVIDIA H100 80GB HBM3", "Xeon 8480")


@dataclass(frozen=True)
class SourceHealth:
    """Whether a source works, and if not, one actionable sentence why."""

    up: bool
    message: str = ""


@runtime_checkable
class EnergySource(Protocol):
    """One hardware (or model) energy source. Implementations: sources.rapl, sources.nvml,
    sources.estimate."""

    name: str

    def read(self) -> Sequence[EnergyReading]:
        """Current cumulative readings; never raises for a device error (health says)."""
        ...

    def health(self) -> SourceHealth: ...

    def close(self) -> None: ...


class Averaging(str, Enum):
    AVERAGE = "average"
    MARGINAL = "marginal"


class Lifecycle(str, Enum):
    LIFECYCLE = "lifecycle"  # includes upstream emissions of fuels and plants
    DIRECT = "direct"  # combustion only


class Accounting(str, Enum):
    LOCATION = "location-based"
    MARKET = "market-based"


@dataclass(frozen=True)
class Basis:
    averaging: Averaging = Averaging.AVERAGE
    lifecycle: Lifecycle = Lifecycle.LIFECYCLE
    accounting: Accounting = Accounting.LOCATION

    def label(self) -> str:
        return f"{self.averaging.value}/{self.lifecycle.value}/{self.accounting.value}"


@dataclass(frozen=True)
class IntensityFactor:
    """A grid carbon intensity with its provenance.

    ``fallback_reason`` is set when a live provider failed and this static
    factor stands in for it; it must be shown to the user, never swallowed.
    """

    zone: str
    g_per_kwh: float
    source: str
    year: int | None = None
    licence: str = ""
    basis: Basis = field(default_factory=Basis)
    fallback_reason: str | None = None


@runtime_checkable
class IntensityLookup(Protocol):
    """The seam between emissions arithmetic and the grid catalogue / live providers.

    Asked per interval so that time-resolved providers give each interval its
    own factor. Raises ``carbontrack.core.errors.UnknownZoneError`` for a zone
    it cannot resolve: never a silent default.
    """

    def intensity(self, zone: str, start: datetime, end: datetime) -> IntensityFactor: ...
