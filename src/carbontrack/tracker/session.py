"""The sampling loop: read energy sources every interval, charge this run its share, and
integrate emissions per interval.

    emissions = sum over intervals of  attributed IT energy x PUE x that interval's factor

Each interval asks the ``IntensityLookup`` seam for the factor of [start, end], so a
time-resolved live provider gives every interval its own factor; the static catalogue
gives the same one each time. Never total energy x final factor.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ..core.emissions import co2e_grams
from ..core.errors import CarbonTrackError
from ..core.types import (
    Component,
    EnergySource,
    IntensityFactor,
    IntensityLookup,
    Method,
)
from .clock import Clock
from .result import DeviceEnergy, FactorUse, Notes, SourceStatus
from .scope import SHARED_COMPONENTS, Scope

_METHOD_RANK = {Method.MEASURED: 0, Method.SAMPLED: 1, Method.ESTIMATED: 2}


class _Device:
    """Running totals of one device (a plain class: dataclass creation costs start-up time)."""

    __slots__ = ("attributed_j", "component", "last_j", "machine_j", "method", "model", "source", "uncertainty")

    def __init__(
        self, source: str, component: Component, method: Method, model: str, last_j: float, uncertainty: float
    ) -> None:
        self.source, self.component, self.method, self.model = source, component, method, model
        self.last_j, self.uncertainty = last_j, uncertainty
        self.machine_j = self.attributed_j = 0.0


class _FactorAcc:
    __slots__ = ("factor", "intervals", "it_energy_j")

    def __init__(self, factor: IntensityFactor) -> None:
        self.factor = factor
        self.intervals = 0
        self.it_energy_j = 0.0


@dataclass(frozen=True)
class SessionTotals:
    """Everything the session measured; the tracker adds identity and host facts."""

    started_at: datetime
    ended_at: datetime
    duration_s: float
    energy_j: dict[str, float]
    co2e_grams: float
    market_based_co2e_grams: float | None
    method: str
    uncertainty: float
    devices: tuple[DeviceEnergy, ...]
    factors: tuple[FactorUse, ...]
    sources: tuple[SourceStatus, ...]
    intervals: int
    warnings: tuple[str, ...]


class Session:
    """One run's accounting. ``start()`` primes the counters, ``sample()`` closes one interval,
    ``stop()`` closes the last one. With ``interval_s`` a daemon thread calls ``sample()``;
    tests call it by hand with a ``ManualClock`` for exact arithmetic."""

    def __init__(
        self,
        sources: Sequence[EnergySource],
        lookup: IntensityLookup,
        zone: str,
        pue: float,
        scope: Scope,
        clock: Clock,
        market_factor_g_per_kwh: float | None = None,
    ) -> None:
        self._sources = list(sources)
        self._lookup = lookup
        self._zone = zone
        self._pue = pue
        self._scope = scope
        self._clock = clock
        self._market = market_factor_g_per_kwh
        self._lock = threading.Lock()
        self._devices: dict[tuple[str, str], _Device] = {}
        self._factors: dict[tuple[float, str, str | None], _FactorAcc] = {}
        self._last_factor: IntensityFactor | None = None
        self._co2e_g = 0.0
        self._market_g = 0.0
        self._intervals = 0
        self._notes = Notes()
        self._t0 = 0.0
        self._t_last = 0.0
        self._started_at: datetime | None = None
        self._wall_last: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, interval_s: float | None = None) -> None:
        with self._lock:
            self._t0 = self._t_last = self._clock.monotonic()
            self._started_at = self._wall_last = self._clock.now()
            self._scope.share()  # prime the CPU-time baseline
            for src in self._sources:
                for r in src.read():
                    self._devices[(src.name, r.device)] = _Device(
                        src.name, r.component, r.method, r.model, r.joules, r.uncertainty
                    )
        if interval_s is not None:
            self._thread = threading.Thread(
                target=self._loop, args=(interval_s,), name="carbontrack-sampler", daemon=True
            )
            self._thread.start()

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.sample()
            except Exception as err:  # keep sampling; the result says what went wrong
                self._notes.add(f"sampling error: {type(err).__name__}: {err}")

    def stop(self) -> SessionTotals:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        return self.totals()

    # -- one interval ----------------------------------------------------------------------
    def sample(self) -> None:
        with self._lock:
            if self._started_at is None or self._wall_last is None:
                raise RuntimeError("Session.sample() before start()")
            now = self._clock.monotonic()
            wall = self._clock.now()
            share = self._scope.share()
            interval_j = 0.0
            for src in self._sources:
                for r in src.read():
                    key = (src.name, r.device)
                    dev = self._devices.get(key)
                    if dev is None:  # a device that appeared mid-run counts from now on
                        self._devices[key] = _Device(
                            src.name,
                            r.component,
                            r.method,
                            r.model,
                            r.joules,
                            uncertainty=r.uncertainty,
                        )
                        continue
                    delta = r.joules - dev.last_j
                    dev.last_j = r.joules
                    if delta < 0:  # sources promise monotonic counters; never book negatives
                        self._notes.add(f"{src.name}/{r.device}: counter went backwards, ignored")
                        continue
                    charged = delta * share if r.component in SHARED_COMPONENTS else delta
                    dev.machine_j += delta
                    dev.attributed_j += charged
                    dev.method = max(dev.method, r.method, key=_METHOD_RANK.__getitem__)
                    dev.uncertainty = max(dev.uncertainty, r.uncertainty)
                    dev.model = dev.model or r.model
                    interval_j += charged
            factor = self._factor(self._wall_last, wall)
            self._co2e_g += co2e_grams(interval_j, factor.g_per_kwh, self._pue)
            if self._market is not None:
                self._market_g += co2e_grams(interval_j, self._market, self._pue)
            acc = self._factors.setdefault(
                (factor.g_per_kwh, factor.source, factor.fallback_reason), _FactorAcc(factor)
            )
            acc.intervals += 1
            acc.it_energy_j += interval_j
            self._intervals += 1
            self._t_last, self._wall_last = now, wall

    def _factor(self, start: datetime, end: datetime) -> IntensityFactor:
        try:
            factor = self._lookup.intensity(self._zone, start, end)
        except CarbonTrackError as err:
            # The zone was validated before start, so this is a provider failing mid-run:
            # keep the last good factor and say so, rather than losing the interval.
            if self._last_factor is None:
                raise
            self._notes.add(f"intensity lookup failed mid-run ({err}); reused the previous factor")
            return self._last_factor
        if factor.fallback_reason:
            self._notes.add(f"intensity fallback for {self._zone}: {factor.fallback_reason}")
        self._last_factor = factor
        return factor

    # -- results ---------------------------------------------------------------------------
    def totals(self) -> SessionTotals:
        with self._lock:
            if self._started_at is None or self._wall_last is None:
                raise RuntimeError("Session.totals() before start()")
            energy: dict[str, float] = {}
            weighted_u = 0.0
            for dev in self._devices.values():
                energy[dev.component.value] = energy.get(dev.component.value, 0.0) + dev.attributed_j
                weighted_u += dev.attributed_j * dev.uncertainty
            # The run's method is the least direct one among devices that contributed energy.
            contributing = [d for d in self._devices.values() if d.attributed_j > 0]
            methods = [d.method for d in (contributing or list(self._devices.values()))]
            worst = max(methods, key=_METHOD_RANK.__getitem__) if methods else None
            total = sum(energy.values())
            averaging = sorted({a.factor.basis.averaging.value for a in self._factors.values()})
            if len(averaging) > 1:
                # WattTime MOER is marginal; its static fallback is an annual average
                self._notes.add(
                    f"co2e_grams adds {' and '.join(averaging)} factors (a live provider fell "
                    "back to the static catalogue for some intervals): see factors"
                )
            sources = []
            for src in self._sources:
                h = src.health()
                sources.append(SourceStatus(src.name, h.up, h.message))
                if not h.up:
                    self._notes.add(f"source {src.name} is down: {h.message}")
            return SessionTotals(
                started_at=self._started_at,
                ended_at=self._wall_last,
                duration_s=self._t_last - self._t0,
                energy_j=energy,
                co2e_grams=self._co2e_g,
                market_based_co2e_grams=self._market_g if self._market is not None else None,
                method=worst.value if worst is not None else "none",
                # errors of devices of one machine are not independent: add them linearly
                uncertainty=weighted_u / total if total > 0 else 0.0,
                devices=tuple(
                    DeviceEnergy(
                        d.source,
                        d.component.value,
                        dev_id,
                        d.method.value,
                        d.model,
                        d.machine_j,
                        d.attributed_j,
                        d.uncertainty,
                    )
                    for (_, dev_id), d in self._devices.items()
                ),
                factors=tuple(
                    FactorUse(
                        a.factor.zone,
                        a.factor.g_per_kwh,
                        a.factor.source,
                        a.factor.year,
                        a.factor.licence,
                        a.factor.basis.label(),
                        a.factor.fallback_reason,
                        a.intervals,
                        a.it_energy_j,
                    )
                    for a in self._factors.values()
                ),
                sources=tuple(sources),
                intervals=self._intervals,
                warnings=tuple(self._notes.items),
            )
