"""When to start deferrable work: the lowest-carbon window before a deadline (pure).

Used by the operator (deferrable Jobs) and by ``carbontrack run --until-low-carbon``.

The candidates are: now, every start between now and the latest start at which the window
begins or ends on a forecast point's boundary, and the latest start itself. The window's
mean is piecewise linear in its start and bends only at those starts, so the lowest is among
them. The latest start is the deadline: work is never held past it. Each candidate is scored
by the forecast's time-weighted mean over ``[start, start + duration)``. Only a window the
forecast covers completely counts: one that reaches past the horizon or crosses a gap has no
score. The lowest mean wins, and the earliest start breaks a tie, because waiting for
nothing has a cost.

A plan always says why, in one sentence a person can check against the forecast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..core.errors import ConfigError
from .forecast import Forecast
from .series import as_utc, time_weighted_mean

FULL = 1.0 - 1e-9  # coverage that counts as complete (float sums of overlaps)
MAX_SPAN = timedelta(days=366)  # forecasts reach days ahead; longer spans are typing errors
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(h|m|s)")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_span(text: str, what: str = "duration") -> timedelta:
    """"1h30m", "90m", "45s", "2.5h" (the grammar of carbontrack.io/expected-duration)."""
    text = text.strip()
    parts = _PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ConfigError(f"invalid {what} {text!r}: use hours, minutes and seconds, e.g. "
                          "'2h', '90m', '1h30m'")
    seconds = sum(float(n) * _SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"invalid {what} {text!r}: must be longer than zero")
    if seconds > MAX_SPAN.total_seconds():  # user input: would overflow datetime arithmetic
        raise ConfigError(f"invalid {what} {text!r}: longer than {MAX_SPAN.days} days")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class Plan:
    start: datetime  # when to run; <= deadline
    wait: timedelta  # start - now (zero: at once)
    reason: str
    at_submission_g_per_kwh: float | None  # forecast mean for starting now (the counterfactual)
    at_start_g_per_kwh: float | None  # forecast mean of the chosen window
    basis: str = ""  # forecast source and basis, for records and reports
    # False: the forecast did not choose the start (none, a deadline passed, no window it
    # covers): the work runs at once and callers show the reason as a warning
    forecast_chose: bool = True

    @property
    def deferred(self) -> bool:
        return self.wait > timedelta(0)


def window_mean(forecast: Forecast, start: datetime, duration: timedelta) -> float | None:
    """The forecast's mean over ``[start, start + duration)``, None unless fully covered."""
    avg = time_weighted_mean(forecast.points, start, start + duration)
    if avg is None or avg.coverage < FULL:
        return None
    if duration > timedelta(0) and any(start < g1 and g0 < start + duration for g0, g1 in forecast.gaps):
        return None
    return avg.g_per_kwh


def submission_mean(forecast: Forecast, now: datetime, duration: timedelta) -> float:
    """The counterfactual: the forecast for starting at once, over whatever part of
    ``[now, now + duration)`` it covers, else its first point (the nearest it knows)."""
    avg = time_weighted_mean(forecast.points, now, now + duration)
    return avg.g_per_kwh if avg is not None else forecast.points[0].g_per_kwh


def at_once(now: datetime, reason: str) -> Plan:
    """Run now, saying why (no forecast, deadline passed, ...)."""
    return Plan(as_utc(now), timedelta(0), reason, None, None, forecast_chose=False)


def plan(forecast: Forecast, *, now: datetime, duration: timedelta, deadline: datetime) -> Plan:
    now, deadline = as_utc(now), as_utc(deadline)
    if duration <= timedelta(0):
        raise ValueError(f"expected duration must be positive, got {duration}")
    basis = f"{forecast.describe()}; basis {forecast.basis.label()}"
    if deadline <= now:
        return Plan(now, timedelta(0), f"deadline {deadline.isoformat()} has passed: runs at once",
                    submission_mean(forecast, now, duration),
                    submission_mean(forecast, now, duration), basis, forecast_chose=False)
    # a start at or after the forecast's end is never covered: the deadline counts only
    # before it (it is user input and may be far off; scoring it could overflow datetime)
    candidates = {now} | ({deadline} if deadline < forecast.end else set())
    # the mean is piecewise linear in the start, bending where the window's start or end
    # meets a point's boundary: the lowest lies at one of those starts (or now, the deadline)
    candidates |= {p.start for p in forecast.points if now < p.start < deadline}
    candidates |= {p.end - duration for p in forecast.points if now < p.end - duration < deadline}
    scored = [(mean, start) for start in sorted(candidates)
              if (mean := window_mean(forecast, start, duration)) is not None]
    baseline = submission_mean(forecast, now, duration)
    if not scored:
        return Plan(now, timedelta(0),
                    f"no window of {duration} before {deadline.isoformat()} is covered by the "
                    f"forecast ({forecast.describe()}): runs at once", baseline, baseline, basis,
                    forecast_chose=False)
    # ties (within float noise of the overlap sums): the earliest start
    best_mean, best_start = min(scored, key=lambda ms: (round(ms[0], 6), ms[1]))
    if best_start == now:
        reason = f"now is the lowest-carbon window before the deadline ({best_mean:.0f} g/kWh forecast)"
    elif best_start == deadline:
        reason = (f"held until its deadline {deadline.isoformat()}: the forecast falls until then "
                  f"({best_mean:.0f} g/kWh then vs {baseline:.0f} now)")
    else:
        reason = (f"held until {best_start.isoformat()}, the lowest-carbon {duration} window "
                  f"before {deadline.isoformat()} ({best_mean:.0f} g/kWh forecast vs "
                  f"{baseline:.0f} now)")
    return Plan(best_start, best_start - now, reason, baseline, best_mean, basis)
