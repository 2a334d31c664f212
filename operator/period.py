"""Budget periods: calendar month/quarter/year in an IANA time zone, or a rolling window.

Calendar boundaries are local midnights of the zone converted to UTC, so a month in
Europe/Berlin starts at 23:00 or 22:00 UTC depending on DST, and consecutive periods tile
time with no gap or overlap. Where midnight does not exist locally (zones that switch DST
at 00:00, e.g. America/Santiago) the period starts at the first local instant of that day.

A rolling window ends now and starts ``window`` earlier, rounded down to a 15-minute UTC
step (so it spans between ``window`` and ``window`` + 15 min). The step is what lets a
budget fold its ledger into 15-minute buckets and keep totals exact: a bucket is then
always wholly inside or outside the window, as it is for a calendar period.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from carbontrack.core.errors import ConfigError

CALENDAR_UNITS = ("Month", "Quarter", "Year")
_WINDOW = re.compile(r"^([0-9]+)(h|d|w)$")
_WINDOW_UNIT = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def step_start(at: datetime) -> datetime:
    """The 15-minute UTC step ``at`` falls in."""
    at = at.astimezone(timezone.utc)
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


@dataclass(frozen=True)
class Window:
    """Half-open [start, end) in UTC; ``name`` is what `kubectl get` shows."""

    start: datetime
    end: datetime
    name: str
    sliding: bool = False
    """True for a rolling window: it ends now and moves on without resets, so usage
    thresholds and "exceeded" carry over from one status update to the next."""

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True)
class CalendarPeriod:
    unit: str  # Month | Quarter | Year
    tz: ZoneInfo

    def window(self, at: datetime) -> Window:
        """The calendar period containing instant ``at`` (aware)."""
        local = _require_aware(at).astimezone(self.tz)
        year, month = local.year, local.month
        if self.unit == "Month":
            first, months = month, 1
            name = f"{year:04d}-{month:02d}"
        elif self.unit == "Quarter":
            first, months = 3 * ((month - 1) // 3) + 1, 3
            name = f"{year:04d}-Q{(month - 1) // 3 + 1}"
        else:
            first, months = 1, 12
            name = f"{year:04d}"
        end_year, end_month = year + (first - 1 + months) // 12, (first - 1 + months) % 12 + 1
        start = self._local_midnight(year, first)
        end = self._local_midnight(end_year, end_month)
        tzname = self.tz.key
        return Window(start, end, name if tzname == "UTC" else f"{name} {tzname}")

    def _local_midnight(self, year: int, month: int) -> datetime:
        # fold=0 in a DST gap resolves with the pre-transition offset, i.e. to the first
        # instant that exists on that local day; a round-trip through UTC normalises it.
        return datetime(year, month, 1, tzinfo=self.tz).astimezone(timezone.utc)


@dataclass(frozen=True)
class RollingPeriod:
    length: timedelta
    text: str

    def window(self, at: datetime) -> Window:
        end = _require_aware(at).astimezone(timezone.utc)
        return Window(step_start(end - self.length), end + timedelta(microseconds=1), f"last {self.text}",
                      sliding=True)


Period = CalendarPeriod | RollingPeriod


def parse_window(text: str) -> timedelta:
    match = _WINDOW.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) == 0:
        raise ConfigError(
            f"invalid rolling window {text!r}: write a whole number of hours, days or weeks "
            'greater than zero, e.g. "12h", "30d" or "2w"'
        )
    return int(match.group(1)) * _WINDOW_UNIT[match.group(2)]


def load_zone(name: str) -> ZoneInfo:
    shown = name if len(name) <= 80 else name[:80] + "..."
    try:
        return ZoneInfo(name)
    # OSError: ZoneInfo opens the name as a file path, so an over-long name fails with
    # "File name too long" (and odd names with other OS errors) instead of not-found.
    except (ZoneInfoNotFoundError, ValueError, OSError) as err:
        raise ConfigError(
            f"unknown time zone {shown!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from err


def parse_period(spec: dict[str, object]) -> Period:
    """Period from a CarbonBudget ``spec.period``; ConfigError names the offending field."""
    kind = spec.get("type")
    if kind == "Calendar":
        unit = spec.get("calendar")
        if unit not in CALENDAR_UNITS:
            raise ConfigError(
                f"invalid period.calendar {unit!r}: a Calendar period needs Month, Quarter or Year"
            )
        if "window" in spec:
            raise ConfigError("invalid period: a Calendar period must not set window")
        tz_name = spec.get("timeZone", "UTC")
        if not isinstance(tz_name, str):
            raise ConfigError(f"invalid period.timeZone {tz_name!r}: use an IANA name")
        return CalendarPeriod(str(unit), load_zone(tz_name))
    if kind == "Rolling":
        if "calendar" in spec or "timeZone" in spec:
            raise ConfigError("invalid period: a Rolling period must not set calendar or timeZone")
        window = spec.get("window")
        if not isinstance(window, str):
            raise ConfigError('invalid period: a Rolling period needs window, e.g. "30d"')
        return RollingPeriod(parse_window(window), window)
    raise ConfigError(f"invalid period.type {kind!r}: use Calendar or Rolling")


def _require_aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("naive datetime: periods need an aware instant (UTC)")
    return at
