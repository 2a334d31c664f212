from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from carbontrack.operator.period import (
    CalendarPeriod,
    RollingPeriod,
    parse_period,
    parse_window,
)

from carbontrack.core.errors import ConfigError

UTC = timezone.utc


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_month_in_utc() -> None:
    w = CalendarPeriod("Month", ZoneInfo("UTC")).window(at(2026, 2, 14, 12))
    assert (w.start, w.end, w.name) == (at(2026, 2, 1), at(2026, 3, 1), "2026-02")


def test_month_in_berlin_follows_dst() -> None:
    period = CalendarPeriod("Month", ZoneInfo("Europe/Berlin"))
    march = period.window(at(2026, 3, 15))
    # March starts in CET (UTC+1), April starts in CEST (UTC+2): DST began on 29 March.
    assert march.start == at(2026, 2, 28, 23)
    assert march.end == at(2026, 3, 31, 22)
    assert march.end - march.start == timedelta(days=31, hours=-1)
    assert march.name == "2026-03 Europe/Berlin"


def test_instant_belongs_to_local_month_not_utc_month() -> None:
    period = CalendarPeriod("Month", ZoneInfo("Europe/Berlin"))
    # 23:30 UTC on 31 Oct is 00:30 on 1 Nov in Berlin (CET after DST ended on 25 Oct).
    w = period.window(at(2026, 10, 31, 23, 30))
    assert w.name == "2026-11 Europe/Berlin"
    assert w.start == at(2026, 10, 31, 23)


def test_quarter_in_new_york() -> None:
    period = CalendarPeriod("Quarter", ZoneInfo("America/New_York"))
    w = period.window(at(2026, 5, 20))
    assert w.name == "2026-Q2 America/New_York"
    assert w.start == at(2026, 4, 1, 4)  # EDT, UTC-4
    assert w.end == at(2026, 7, 1, 4)
    q4 = period.window(at(2026, 12, 31, 12))
    assert q4.start == at(2026, 10, 1, 4)  # EDT
    assert q4.end == at(2027, 1, 1, 5)  # EST, UTC-5


def test_year_in_auckland_southern_hemisphere_dst() -> None:
    w = CalendarPeriod("Year", ZoneInfo("Pacific/Auckland")).window(at(2026, 6, 1))
    assert w.name == "2026 Pacific/Auckland"
    assert w.start == at(2025, 12, 31, 11)  # NZDT, UTC+13
    assert w.end == at(2026, 12, 31, 11)


def test_half_hour_zone() -> None:
    w = CalendarPeriod("Month", ZoneInfo("Asia/Kolkata")).window(at(2026, 1, 10))
    assert w.start == at(2025, 12, 31, 18, 30)


def test_month_whose_local_midnight_does_not_exist_starts_at_first_local_instant() -> None:
    # America/Asuncion sprang forward 00:00 -> 01:00 on 2023-10-01: there was no local midnight.
    tz = ZoneInfo("America/Asuncion")
    period = CalendarPeriod("Month", tz)
    w = period.window(at(2023, 10, 15))
    assert w.start == at(2023, 10, 1, 4)  # 01:00 local at UTC-3 == 00:00 at UTC-4
    assert w.start.astimezone(tz).hour == 1
    before = (w.start - timedelta(seconds=1)).astimezone(tz)
    assert (before.month, before.day, before.hour) == (9, 30, 23)
    assert period.window(w.start - timedelta(seconds=1)).end == w.start


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Santiago", "Australia/Lord_Howe",
                                  "Asia/Tehran", "Pacific/Chatham",
                                  "America/Asuncion"])
@pytest.mark.parametrize("unit", ["Month", "Quarter", "Year"])
def test_periods_tile_time_without_gap_or_overlap(zone: str, unit: str) -> None:
    period = CalendarPeriod(unit, ZoneInfo(zone))
    w = period.window(at(2024, 1, 5))
    for _ in range(14):
        nxt = period.window(w.end)
        assert nxt.start == w.end
        assert period.window(w.end - timedelta(microseconds=1)) == w
        assert w.contains(w.start) and not w.contains(w.end)
        w = nxt


def test_rolling_window_ends_now_and_includes_now() -> None:
    p = RollingPeriod(timedelta(days=30), "30d")
    now = at(2026, 3, 29, 1, 30)
    w = p.window(now)
    assert w.contains(now)
    assert w.contains(now - timedelta(days=30))
    assert not w.contains(now - timedelta(days=30, seconds=1))
    assert w.name == "last 30d"


def test_rolling_window_starts_on_a_15_minute_utc_step_and_slides() -> None:
    # the step keeps 15-minute ledger buckets wholly inside or outside the window (exact folding)
    p = RollingPeriod(timedelta(days=7), "7d")
    now = at(2026, 3, 29, 1, 37, 12)
    w = p.window(now)
    assert w.start == at(2026, 3, 22, 1, 30)  # 7 days earlier is 01:37:12, rounded down
    assert w.contains(at(2026, 3, 22, 1, 30)) and not w.contains(at(2026, 3, 22, 1, 29, 59, 999999))
    assert w.contains(now) and not w.contains(now + timedelta(milliseconds=1))
    assert w.sliding
    assert p.window(now + timedelta(minutes=8)).start == at(2026, 3, 22, 1, 45)
    assert not CalendarPeriod("Month", ZoneInfo("UTC")).window(now).sliding


@pytest.mark.parametrize(("text", "delta"), [("12h", timedelta(hours=12)), ("30d", timedelta(days=30)),
                                             ("2w", timedelta(weeks=2))])
def test_parse_window(text: str, delta: timedelta) -> None:
    assert parse_window(text) == delta


@pytest.mark.parametrize("text", ["", "0d", "30", "1.5d", "30m", "-1d", "d"])
def test_parse_window_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="whole number of hours, days or weeks"):
        parse_window(text)


def test_parse_period_calendar_defaults_to_utc() -> None:
    p = parse_period({"type": "Calendar", "calendar": "Month"})
    assert p == CalendarPeriod("Month", ZoneInfo("UTC"))


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"type": "Weekly"}, "use Calendar or Rolling"),
        ({"type": "Calendar"}, "needs Month, Quarter or Year"),
        ({"type": "Calendar", "calendar": "Week"}, "needs Month, Quarter or Year"),
        ({"type": "Calendar", "calendar": "Month", "timeZone": "Mars/Olympus"}, "unknown time zone"),
        ({"type": "Calendar", "calendar": "Month", "window": "3d"}, "must not set window"),
        ({"type": "Rolling"}, "needs window"),
        ({"type": "Rolling", "window": "7d", "calendar": "Month"}, "must not set calendar"),
    ],
)
def test_parse_period_rejects(spec: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_period(spec)


def test_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        CalendarPeriod("Month", ZoneInfo("UTC")).window(datetime(2026, 1, 1))
