"""GB Carbon Intensity API (NESO; no key; CC BY 4.0).

National half-hourly intensity for zone ``GB`` (also ``GBR``, ``gb``): ``actual``
where measured, else ``forecast`` (the source says which). The figure is CO2 from
generation including imports and losses - *direct*, not lifecycle, so it is not
comparable with Ember or Electricity Maps lifecycle numbers; the basis says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ...core.errors import UnknownZoneError
from ...core.types import Accounting, Averaging, Basis, IntensityFactor, Lifecycle
from ..catalogue import Catalogue
from ..series import Point, ceil_time, floor_time, parse_time, time_weighted_mean
from .base import LiveProvider, NoData, utc_now
from .http import HttpSettings, JsonHttpClient

DEFAULT_BASE_URL = "https://api.carbonintensity.org.uk"
HALF_HOUR = timedelta(minutes=30)
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
    ) -> None:
        super().__init__(catalogue, now=now)
        self.client = client or JsonHttpClient(base_url, settings)

    def _live(self, zone: str, start: datetime, end: datetime) -> IntensityFactor:
        try:
            key = self.catalogue.lookup(zone).zone.key
        except UnknownZoneError:
            key = zone.strip().upper()
        if key != "GB":
            raise NoData(f"covers Great Britain (zone GB) only, not {zone!r}")
        frm = floor_time(start, HALF_HOUR).strftime("%Y-%m-%dT%H:%MZ")
        to = max(ceil_time(end, HALF_HOUR), floor_time(start, HALF_HOUR) + HALF_HOUR)
        body = self.client.get_json(f"intensity/{frm}/{to.strftime('%Y-%m-%dT%H:%MZ')}")
        points, kinds = _points(body)
        avg = time_weighted_mean(points, start, end)
        if avg is None:
            raise NoData(f"no half-hours in {start.isoformat()}..{end.isoformat()}")
        return IntensityFactor(
            zone=zone, g_per_kwh=avg.g_per_kwh,
            source=f"GB Carbon Intensity API (NESO) national, {'+'.join(sorted(kinds))} "
                   f"({avg.points} half-hours)",
            year=start.year, licence=LICENCE,
            basis=Basis(Averaging.AVERAGE, Lifecycle.DIRECT, Accounting.LOCATION),
        )


def _points(body: Mapping[str, Any]) -> tuple[list[Point], set[str]]:
    points = []
    kinds: set[str] = set()
    for row in body["data"]:
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
