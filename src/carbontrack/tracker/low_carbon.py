"""``carbontrack run --until-low-carbon DURATION``: wait for the lowest-carbon window first.

The provider's forecast for the run's zone is asked once; :func:`carbontrack.intensity.window.plan`
picks the start of the lowest-carbon window of ``--expected-duration`` that starts within
DURATION from now (never later: DURATION is the deadline). What it waits for and why is
printed before the wait, and the counterfactual (the forecast for starting at once vs for
the chosen window) after it. Without a usable forecast (static provider, provider down,
forecast in the past) the command starts at once and the reason is printed.

Clock and sleep are injected: tests run the whole wait on a manual clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from ..intensity.forecast import ForecastSource, ForecastUnusable
from ..intensity.window import Plan, at_once, plan
from .clock import Clock

MAX_NAP_S = 60.0  # wake at least once a minute, so a clock jump (suspend) is noticed


def wait_for_low_carbon(
    forecaster: Callable[[], ForecastSource],
    zone: str,
    *,
    within: timedelta,
    duration: timedelta,
    clock: Clock,
    sleep: Callable[[float], None],
    say: Callable[[str], None],
) -> Plan:
    """Sleep until the planned start; return the plan (its reason and counterfactual)."""
    now = clock.now()
    deadline = now + within
    try:
        forecast = forecaster().forecast(zone)
    except ForecastUnusable as err:
        chosen = at_once(now, f"no usable forecast ({err}): starting at once")
        say(f"carbontrack run: {chosen.reason}")
        return chosen
    chosen = plan(forecast, now=now, duration=duration, deadline=deadline)
    if not chosen.deferred:
        say(f"carbontrack run: starting at once: {chosen.reason}")
        return chosen
    say(f"carbontrack run: waiting {chosen.wait.total_seconds():.0f} s until "
        f"{chosen.start.isoformat()}: {chosen.reason} [{chosen.basis}]")
    while (left := (chosen.start - clock.now()).total_seconds()) > 0:
        sleep(min(left, MAX_NAP_S))
    say(f"carbontrack run: starting now; {counterfactual(chosen)}")
    return chosen


def counterfactual(chosen: Plan) -> str:
    """The estimate in one line: forecast intensity of starting at once vs of the window."""
    if chosen.at_submission_g_per_kwh is None or chosen.at_start_g_per_kwh is None:
        return "no counterfactual (the forecast did not cover starting at once)"
    saved = 1.0 - chosen.at_start_g_per_kwh / chosen.at_submission_g_per_kwh \
        if chosen.at_submission_g_per_kwh > 0 else 0.0
    return (f"estimated {saved:.0%} less CO2e than starting at once (forecast "
            f"{chosen.at_submission_g_per_kwh:.0f} -> {chosen.at_start_g_per_kwh:.0f} g/kWh; "
            "an estimate from the forecast, not a measurement)")
