"""Time-weighted averaging: each interval gets the mean of what covered it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from carbontrack.intensity.series import (
    Point,
    ceil_time,
    floor_time,
    parse_time,
    time_weighted_mean,
)

H = timedelta(hours=1)
T = datetime(2025, 3, 1, tzinfo=timezone.utc)
SERIES = [Point(T, T + H, 100.0), Point(T + H, T + 2 * H, 200.0), Point(T + 2 * H, T + 3 * H, 600.0)]


def test_weighted_by_overlap() -> None:
    avg = time_weighted_mean(SERIES, T + H / 2, T + 2 * H + H / 4)
    assert avg is not None
    # 30 min @100, 60 min @200, 15 min @600 over 105 min
    assert avg.g_per_kwh == pytest.approx((30 * 100 + 60 * 200 + 15 * 600) / 105)
    assert (avg.points, avg.coverage) == (3, 1.0)


def test_integral_is_conserved_when_splitting_an_interval() -> None:
    """Energy x mean over [a, c) equals the sum over [a, b) and [b, c) for constant power."""
    a, b, c = T + H / 3, T + H + H / 7, T + 3 * H
    whole = time_weighted_mean(SERIES, a, c)
    left, right = time_weighted_mean(SERIES, a, b), time_weighted_mean(SERIES, b, c)
    assert whole is not None and left is not None and right is not None
    span = (c - a).total_seconds()
    parts = (left.g_per_kwh * (b - a).total_seconds() + right.g_per_kwh * (c - b).total_seconds())
    assert whole.g_per_kwh * span == pytest.approx(parts)


def test_partial_coverage_and_no_overlap() -> None:
    avg = time_weighted_mean(SERIES, T + 2 * H, T + 4 * H)
    assert avg is not None and avg.g_per_kwh == 600.0 and avg.coverage == pytest.approx(0.5)
    assert time_weighted_mean(SERIES, T + 5 * H, T + 6 * H) is None
    assert time_weighted_mean([], T, T + H) is None


def test_instant_takes_the_containing_point() -> None:
    avg = time_weighted_mean(SERIES, T + H, T + H)
    assert avg is not None and avg.g_per_kwh == 200.0
    assert time_weighted_mean(SERIES, T + 9 * H, T + 9 * H) is None


def test_naive_times_are_utc_and_rounding() -> None:
    naive = datetime(2025, 3, 1, 1, 30)
    avg = time_weighted_mean(SERIES, naive, naive + H / 2)
    assert avg is not None and avg.g_per_kwh == 200.0
    assert floor_time(naive, H) == T + H
    assert ceil_time(naive, H) == T + 2 * H
    assert ceil_time(T + H, H) == T + H
    assert parse_time("2025-03-01T01:00:00.000Z") == T + H
    assert parse_time("2018-01-20T12:00Z") == datetime(2018, 1, 20, 12, tzinfo=timezone.utc)
