"""The lowest-carbon window before a deadline (intensity/window.py) and forecast validation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from carbontrack.core.types import Basis
from carbontrack.intensity.forecast import Forecast, ForecastUnusable, build_forecast
from carbontrack.intensity.series import Point
from carbontrack.intensity.window import plan, window_mean

T0 = datetime(2025, 6, 1, 12, tzinfo=timezone.utc)
STEP = timedelta(seconds=10)  # compressed time, as the e2e test uses it


def at(n: float) -> datetime:
    return T0 + n * STEP


def forecast(values: list[float | None], now: datetime = T0) -> Forecast:
    points = [Point(at(i), at(i + 1), v) for i, v in enumerate(values) if v is not None]
    return build_forecast("DE", points, now=now, source="test forecast", basis=Basis())


def test_held_until_the_minimum_window_that_fits_the_duration() -> None:
    f = forecast([400, 300, 100, 500, 50, 600])
    # one step: point 4 (50) is the minimum
    p = plan(f, now=T0, duration=STEP, deadline=at(6))
    assert p.start == at(4) and p.wait == 4 * STEP and p.deferred
    assert p.at_submission_g_per_kwh == 400 and p.at_start_g_per_kwh == 50
    assert "held until" in p.reason and "50 g/kWh" in p.reason
    # two steps: windows 2-4 (300), 3-5 (275), 4-6 (325), 1-3 (200): starts at 1
    p2 = plan(f, now=T0, duration=2 * STEP, deadline=at(6))
    assert p2.start == at(1) and p2.at_start_g_per_kwh == pytest.approx(200.0)


def test_never_held_past_the_deadline() -> None:
    f = forecast([400, 350, 300, 250, 50])
    p = plan(f, now=T0, duration=STEP, deadline=at(2.5))
    # the minimum (point 4) is after the deadline: the best start at or before it is the
    # deadline itself (mean of 300 and 250 over its window)
    assert p.start == at(2.5) and p.start <= at(2.5)
    assert "deadline" in p.reason
    assert p.at_start_g_per_kwh == pytest.approx(275.0)


def test_deadline_passed_runs_at_once() -> None:
    p = plan(forecast([400, 50]), now=at(0.5), duration=STEP, deadline=at(0))
    assert p.wait == timedelta(0) and "has passed" in p.reason


def test_now_is_best_runs_at_once_and_ties_go_to_the_earliest() -> None:
    p = plan(forecast([100, 100, 300]), now=T0, duration=STEP, deadline=at(2))
    assert p.wait == timedelta(0) and "now is the lowest-carbon" in p.reason


def test_windows_over_gaps_or_past_the_horizon_do_not_count() -> None:
    f = forecast([400, None, 10, 500])  # a gap where point 1 should be
    assert f.gaps == ((at(1), at(2)),)
    assert window_mean(f, at(0.5), STEP) is None  # crosses the gap
    assert window_mean(f, at(3.5), STEP) is None  # runs past the horizon
    p = plan(f, now=T0, duration=2 * STEP, deadline=at(3))
    # only 2-4 (255) is covered among candidate starts; 0-2 crosses the gap
    assert p.start == at(2) and p.at_start_g_per_kwh == pytest.approx(255.0)
    none_fit = plan(f, now=T0, duration=10 * STEP, deadline=at(3))
    assert none_fit.wait == timedelta(0) and "no window" in none_fit.reason


def test_forecast_validation() -> None:
    with pytest.raises(ForecastUnusable, match="in the past"):
        forecast([100, 200], now=at(5))
    with pytest.raises(ForecastUnusable, match="implausible"):
        forecast([100, float("nan")])
    with pytest.raises(ForecastUnusable, match="implausible"):
        forecast([100, -1])
    with pytest.raises(ForecastUnusable, match="no points"):
        forecast([])
    f = forecast([100, 200, 300], now=at(1.5))  # the running point stays, past ones go
    assert [p.g_per_kwh for p in f.points] == [200, 300] and f.horizon == 1.5 * STEP
    with pytest.raises(ValueError, match="positive"):
        plan(f, now=at(1.5), duration=timedelta(0), deadline=at(3))


def test_a_deadline_at_the_end_of_time_plans_without_overflow() -> None:
    # the deadline is user input (an RFC 3339 time); a window starting there cannot be covered
    # by any forecast, and scoring it must not overflow datetime
    last = datetime(9999, 12, 31, 23, tzinfo=timezone.utc)
    p = plan(forecast([400, 300, 100, 500]), now=T0, duration=timedelta(hours=2), deadline=last)
    assert p.wait == timedelta(0) and "no window" in p.reason
    p = plan(forecast([400, 300, 100, 500]), now=T0, duration=STEP, deadline=last)
    assert p.start == at(2) and p.at_start_g_per_kwh == 100


def test_the_best_window_may_end_where_a_point_ends() -> None:
    # 1.5 steps: a start at 0 averages 233, at 1 (a point's start) 367; the lowest window starts
    # at 0.5 and ends with the cheap point (300 x 0.5 + 100 x 1) / 1.5 = 167
    f = forecast([300, 100, 900, 900])
    p = plan(f, now=T0, duration=1.5 * STEP, deadline=at(2))
    assert p.start == at(0.5) and p.at_start_g_per_kwh == pytest.approx(500 / 3)
    assert p.at_start_g_per_kwh == window_mean(f, at(0.5), 1.5 * STEP)
