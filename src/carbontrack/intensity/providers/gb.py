"""GB Carbon Intensity API (NESO; no key; CC BY 4.0).

National half-hourly intensity for zone ``GB`` (also ``GBR``, ``gb``): ``actual``
where measured, else ``forecast`` (the source says which). The figure is CO2 from
generation including imports and losses - *direct*, not lifecycle, so it is not
comparable with Ember or Electricity Maps lifecycle numbers; the basis says so.

Regional (``region="postcode:RG10"`` or ``"regionid:3"``, region ids 1-17): the same
zone ``GB`` is asked through ``/regional/intensity/{from}/{to}/postcode/{pc}`` (or
``/regionid/{id}``); regional periods carry a forecast only, never an actual, and the
source says which region answered. Forecasts: ``/intensity/{from}/fw48h`` (national) or
``/regional/intensity/{from}/fw48h/postcode/{pc}`` - 96 half-hours.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ...core.errors import ConfigError, UnknownZoneError
from ...core.types import Accounting, Averaging, Basis, IntensityFactor, Lifecycle
from ..catalogue import Catalogue
from ..forecast import Forecast, build_forecast
from ..series import Point, ceil_time, floor_time, parse_time, time_weighted_mean
from .base import LiveProvider, NoData, utc_now
from .http import HttpSettings, JsonHttpClient

DEFAULT_BASE_URL = "https://api.carbonintensity.org.uk"
HALF_HOUR = timedelta(minutes=30)
REGION_IDS = range(1, 18)  # gb_regions.csv: 1-14 DNO regions, 15-17 England/Scotland/Wales


def parse_region(text: str) -> tuple[str, str]:
    """``postcode:RG10`` or ``regionid:3`` -> the URL suffix parts (kind, value)."""
    kind, sep, value = text.strip().partition(":")
    kind, value = kind.strip().lower(), value.strip()
    if sep and kind == "postcode" and value.isalnum() and 2 <= len(value) <= 4:
        return kind, value.upper()
    if sep and kind == "regionid" and value.isdigit() and int(value) in REGION_IDS:
        return kind, str(int(value))
    raise ConfigError(f"GB region {text!r}: use postcode:OUTWARD (e.g. postcode:RG10, the first "
                      "half of a postcode) or regionid:N with N in 1-17")
LICENCE = "CC BY 4.0 (NESO Carbon Intensity API)"


class GbCarbonIntensityProvider(LiveProvider):
    name = "gb-carbon-intensity"

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        base_url: str = DEFAULT_BASE_URL,
        settings: HttpSettings | None = None,
        client: JsonHttpClient | None = None,
        now: Callable[[], datetime] = utc_now,
        region: str | None = None,
    ) -> None:
        super().__init__(catalogue, now=now)
        self.client = client or JsonHttpClient(base_url, settings)
        self.region = parse_region(region) if region else None

    @property
    def scope(self) -> str:
        return f"region {self.region[0]} {self.region[1]}" if self.region else "national"

    def _check_zone(self, zone: str) -> None:
        try:
            key = self.catalogue.lookup(zone).zone.key
        except UnknownZoneError:
            key = zone.strip().upper()
        if key != "GB":
            raise NoData(f"covers Great Britain (zone GB) only, not {zone!r}")

    def _rows(self, span: str) -> Any:
        """National ``intensity/{span}`` or regional ``regional/intensity/{span}/{kind}/{v}``."""
        if self.region is None:
            return self.client.get_json(f"intensity/{span}")["data"]
        body = self.client.get_json(f"regional/intensity/{span}/{self.region[0]}/{self.region[1]}")
        data = body["data"]
        if isinstance(data, list):  # the current-period call wraps the region in a list
            data = data[0]
        return data["data"]

    def _live(self, zone: str, start: datetime, end: datetime) -> IntensityFactor:
        self._check_zone(zone)
        frm = floor_time(start, HALF_HOUR).strftime("%Y-%m-%dT%H:%MZ")
        to = max(ceil_time(end, HALF_HOUR), floor_time(start, HALF_HOUR) + HALF_HOUR)
        points, kinds = _points(self._rows(f"{frm}/{to.strftime('%Y-%m-%dT%H:%MZ')}"))
        avg = time_weighted_mean(points, start, end)
        if avg is None:
            raise NoData(f"no half-hours in {start.isoformat()}..{end.isoformat()}")
        return IntensityFactor(
            zone=zone, g_per_kwh=avg.g_per_kwh,
            source=f"GB Carbon Intensity API (NESO) {self.scope}, {'+'.join(sorted(kinds))} "
                   f"({avg.points} half-hours)",
            year=start.year, licence=LICENCE,
            basis=Basis(Averaging.AVERAGE, Lifecycle.DIRECT, Accounting.LOCATION),
        )


    def _forecast(self, zone: str, now: datetime) -> Forecast:
        self._check_zone(zone)
        frm = floor_time(now, HALF_HOUR).strftime("%Y-%m-%dT%H:%MZ")
        rows = self._rows(f"{frm}/fw48h")
        points = []
        for row in rows:  # the forecast, even where an actual exists: one kind of number
            value = row["intensity"].get("forecast")
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise NoData(f"implausible intensity {value!r}")
            points.append(Point(parse_time(row["from"]), parse_time(row["to"]), float(value)))
        return build_forecast(
            zone, points, now=now, source=f"GB Carbon Intensity API (NESO) fw48h {self.scope}",
            basis=Basis(Averaging.AVERAGE, Lifecycle.DIRECT, Accounting.LOCATION))


def _points(rows: list[Mapping[str, Any]]) -> tuple[list[Point], set[str]]:
    points = []
    kinds: set[str] = set()
    for row in rows:
        intensity = row["intensity"]
        value, kind = intensity.get("actual"), "actual"
        if value is None:  # future or not yet measured half-hours carry a forecast only
            value, kind = intensity.get("forecast"), "forecast"
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise NoData(f"implausible intensity {value!r}")
        points.append(Point(parse_time(row["from"]), parse_time(row["to"]), float(value)))
        kinds.add(kind)
    return points, kinds
