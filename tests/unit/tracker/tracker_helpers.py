"""Shared test parts for the tracker: scripted energy counters (the hardware boundary) and a
time-resolved intensity schedule (what a live provider looks like through the seam)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from carbontrack.core.errors import UnknownZoneError
from carbontrack.core.types import (
    Basis,
    Component,
    EnergyReading,
    IntensityFactor,
    Method,
    SourceHealth,
)
from carbontrack.tracker.clock import Clock

KWH = 3.6e6


class ScriptedSource:
    """Cumulative counters that advance by a scripted amount on every read (one step per
    read), like a RAPL or NVML counter seen at each sample."""

    def __init__(
        self,
        name: str,
        devices: Sequence[tuple[Component, str, Method, float]],
        steps: Sequence[Sequence[float]] | None = None,
        per_read: Sequence[float] | None = None,
    ) -> None:
        self.name = name
        self._devices = list(devices)  # (component, device, method, uncertainty)
        self._steps = [list(s) for s in steps] if steps else None
        self._per_read = list(per_read) if per_read else None
        self._totals = [0.0] * len(devices)
        self.reads = 0
        self.closed = False

    def read(self) -> Sequence[EnergyReading]:
        if self.reads > 0:
            step = self._steps[self.reads - 1] if self._steps else self._per_read
            assert step is not None
            self._totals = [t + s for t, s in zip(self._totals, step, strict=True)]
        self.reads += 1
        return [
            EnergyReading(c, d, self._totals[i], m, u, model="Test 9000")
            for i, (c, d, m, u) in enumerate(self._devices)
        ]

    def health(self) -> SourceHealth:
        return SourceHealth(True, "")

    def close(self) -> None:
        self.closed = True


class ScheduleLookup:
    """An IntensityLookup whose factor changes per call, like a time-resolved live provider."""

    def __init__(self, values: Sequence[float], zone: str = "XX") -> None:
        self._values = list(values)
        self.calls: list[tuple[datetime, datetime]] = []
        self.zone = zone

    def intensity(self, zone: str, start: datetime, end: datetime) -> IntensityFactor:
        if zone != self.zone:
            raise UnknownZoneError(f"unknown zone {zone!r}")
        self.calls.append((start, end))
        i = min(len(self.calls) - 1, len(self._values) - 1)
        return IntensityFactor(zone, self._values[i], "schedule", 2025, "CC0", Basis())


class FixedShareScope:
    name = "process"

    def __init__(self, shares: Sequence[float]) -> None:
        self._shares = list(shares)
        self.calls = 0

    def share(self) -> float:
        i = self.calls
        self.calls += 1
        if i == 0:
            return 0.0  # priming call
        return self._shares[min(i - 1, len(self._shares) - 1)]


class PowerSource:
    """Counters driven by a (manual) clock: joules = watts x seconds, however often read.
    Several trackers can share it without inflating each other's energy."""

    def __init__(self, clock: Clock, watts: dict[Component, float], method: Method = Method.MEASURED):
        self.name = "power"
        self._clock = clock
        self._watts = watts
        self._method = method

    def read(self) -> Sequence[EnergyReading]:
        t = self._clock.monotonic()
        return [EnergyReading(c, f"{c.value}-0", w * t, self._method, 0.1) for c, w in self._watts.items()]

    def health(self) -> SourceHealth:
        return SourceHealth(True, "")

    def close(self) -> None:
        pass
