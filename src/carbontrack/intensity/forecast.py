"""A provider's intensity forecast: time-resolved points with their horizon and granularity.

Each live provider that publishes a forecast (Electricity Maps ``/carbon-intensity/forecast``,
WattTime ``/v3/forecast``, GB ``/intensity/{from}/fw48h`` and the regional ``fw48h``) turns
its answer into a :class:`Forecast` through :func:`build_forecast`, which is where bad
forecasts are caught, the same way for every provider:

- points wholly in the past are dropped; a forecast with nothing left is refused
  (:class:`ForecastUnusable`, "in the past") - a stale forecast never decides anything;
- a gap between consecutive points is kept as a gap (listed in ``gaps``), never bridged:
  a window that crosses it is not fully covered, so the planner does not pick it;
- a point that is not a finite, non-negative number refuses the whole forecast.

Callers that need a forecast and cannot get one (static provider, provider down, unusable
forecast) get a :class:`ForecastUnusable` whose message is the visible reason.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from ..core.errors import CarbonTrackError
from ..core.types import Basis
from .series import Point, as_utc


class ForecastUnusable(CarbonTrackError):
    """No usable forecast: the message says why (shown to the user, recorded in Events)."""


@dataclass(frozen=True)
class Forecast:
    zone: str
    points: tuple[Point, ...]  # sorted by start, none ending at or before ``fetched_at``
    granularity: timedelta  # the most common point length
    source: str  # provider, endpoint, region: what a reader needs to check it
    basis: Basis
    fetched_at: datetime
    generated_at: datetime | None = None  # when the provider computed it, if it says
    gaps: tuple[tuple[datetime, datetime], ...] = ()  # uncovered stretches between points

    @property
    def start(self) -> datetime:
        return self.points[0].start

    @property
    def end(self) -> datetime:
        return self.points[-1].end

    @property
    def horizon(self) -> timedelta:
        """How far ahead of ``fetched_at`` the forecast reaches."""
        return self.end - self.fetched_at

    def describe(self) -> str:
        gaps = f", {len(self.gaps)} gap(s)" if self.gaps else ""
        return (f"{self.source}: {len(self.points)} points of {_span(self.granularity)}, "
                f"horizon {_span(self.horizon)}{gaps}")


@runtime_checkable
class ForecastSource(Protocol):
    """A provider that can forecast; raises ForecastUnusable (or CarbonTrackError) when not."""

    name: str

    def forecast(self, zone: str) -> Forecast: ...


def build_forecast(zone: str, points: Iterable[Point], *, now: datetime, source: str,
                   basis: Basis, generated_at: datetime | None = None) -> Forecast:
    """Validate provider points into a Forecast (see the module docstring)."""
    now = as_utc(now)
    everything = sorted(points, key=lambda p: p.start)
    if not everything:
        raise ForecastUnusable(f"{source}: the forecast has no points")
    for p in everything:
        if not math.isfinite(p.g_per_kwh) or p.g_per_kwh < 0:
            raise ForecastUnusable(f"{source}: implausible forecast value {p.g_per_kwh!r} g/kWh")
        if p.end <= p.start:
            raise ForecastUnusable(f"{source}: a point ends before it starts ({p.start.isoformat()})")
    future = [p for p in everything if p.end > now]
    if not future:
        raise ForecastUnusable(
            f"{source}: the forecast is in the past (its last point ends "
            f"{everything[-1].end.isoformat()}, now is {now.isoformat()})")
    gaps: list[tuple[datetime, datetime]] = []
    kept = [future[0]]
    for p in future[1:]:
        previous = kept[-1]
        if p.start < previous.end:  # overlapping or duplicate points: keep the first
            continue
        if p.start > previous.end:
            gaps.append((previous.end, p.start))
        kept.append(p)
    lengths = [p.end - p.start for p in kept]
    granularity = max(set(lengths), key=lengths.count)
    return Forecast(zone=zone, points=tuple(kept), granularity=granularity, source=source,
                    basis=basis, fetched_at=now, generated_at=generated_at, gaps=tuple(gaps))


def spacing(starts: list[datetime], default: timedelta) -> timedelta:
    """The point length of a forecast that gives only start times: the smallest positive
    spacing between consecutive starts (a gap is longer, never shorter), else ``default``."""
    ordered = sorted(set(starts))
    steps = [b - a for a, b in itertools.pairwise(ordered) if b > a]
    return min(steps) if steps else default


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
