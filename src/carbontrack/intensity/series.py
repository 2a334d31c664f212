"""Time-weighted averaging of an intensity series over an interval.

Providers return points that each hold for a period (Electricity Maps: an hour,
WattTime: 5 minutes, GB: half an hour). Emissions are integrated per interval,
so the factor for ``[start, end)`` is the mean of the points weighted by how much
of the interval each one covers - not the latest value, not a plain mean.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone


@dataclass(frozen=True)
class Point:
    start: datetime
    end: datetime
    g_per_kwh: float


@dataclass(frozen=True)
class Average:
    g_per_kwh: float
    points: int  # points that overlapped the interval
    coverage: float  # covered share of the interval, 0..1


def parse_time(text: str) -> datetime:
    """ISO 8601 as the APIs send it ("2024-01-01T00:00:00.000Z", "2018-01-20T12:00Z")."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC (the APIs all speak UTC)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def floor_time(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return epoch + ((as_utc(moment) - epoch) // step) * step


def ceil_time(moment: datetime, step: timedelta) -> datetime:
    floored = floor_time(moment, step)
    return floored if floored == as_utc(moment) else floored + step


def time_weighted_mean(points: Iterable[Point], start: datetime, end: datetime) -> Average | None:
    """Mean of ``points`` over ``[start, end)`` weighted by overlap; ``None`` if none overlap.

    A zero-length interval (``start == end``) takes the point that contains ``start``.
    """
    start, end = as_utc(start), as_utc(end)
    if end == start:
        for p in points:
            if p.start <= start < p.end:
                return Average(p.g_per_kwh, 1, 1.0)
        return None
    total = weight = 0.0
    count = 0
    for p in points:
        overlap = (min(end, p.end) - max(start, p.start)).total_seconds()
        if overlap > 0:
            total += p.g_per_kwh * overlap
            weight += overlap
            count += 1
    if weight == 0:
        return None
    return Average(total / weight, count, min(1.0, weight / (end - start).total_seconds()))
