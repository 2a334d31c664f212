"""Electricity Maps API v3 (``auth-token`` header).

Intervals within the last 24 hours use the free-tier ``/carbon-intensity/history``
(one cached call per refresh serves every interval); older intervals use the paid
``/carbon-intensity/past-range``. Points are hourly; the factor is their
time-weighted mean over the interval. Values are consumption-based (flow-traced)
and lifecycle unless ``emission_factor_type="direct"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ...core.errors import ConfigError, UnknownZoneError
from ...core.types import Accounting, Averaging, Basis, IntensityFactor, Lifecycle
from ..catalogue import Catalogue
from ..forecast import Forecast, build_forecast, spacing
from ..series import Point, ceil_time, floor_time, parse_time, time_weighted_mean
from .base import LiveProvider, NoData, utc_now
from .http import HttpSettings, JsonHttpClient

DEFAULT_BASE_URL = "https://api.electricitymap.org/v3"
HOUR = timedelta(hours=1)
HISTORY_WINDOW = timedelta(hours=24)
LICENCE = "Electricity Maps API terms (published datasets: ODbL 1.0)"


class ElectricityMapsProvider(LiveProvider):
    name = "electricitymaps"

    def __init__(
        self,
        catalogue: Catalogue,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        emission_factor_type: str = "lifecycle",
        settings: HttpSettings | None = None,
        client: JsonHttpClient | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__(catalogue, now=now)
        if not token:
            raise ConfigError("Electricity Maps needs an API token (auth-token); get one at "
                              "https://portal.electricitymaps.com")
        if emission_factor_type not in ("lifecycle", "direct"):
            raise ConfigError(f"emission_factor_type must be lifecycle or direct, "
                              f"got {emission_factor_type!r}")
        self._token = token
        self._factor_type = emission_factor_type
        self.client = client or JsonHttpClient(base_url, settings)

    def _secrets(self) -> tuple[str, ...]:
        return (self._token,)

    def em_zone(self, zone: str) -> str:
        """The Electricity Maps zone for a catalogue key (a cloud region's mapped zone,
        or the key itself when Electricity Maps publishes it)."""
        try:
            found = self.catalogue.lookup(zone)
        except UnknownZoneError:
            return zone.strip().upper()  # a live-only zone; the API will say if it is unknown
        if found.cloud is not None:
            if not found.cloud.em_zone:
                raise NoData(f"no Electricity Maps zone known for {found.cloud.key}")
            return found.cloud.em_zone
        if "electricitymaps-yearly" not in found.zone.datasets:
            raise NoData(f"{found.zone.key} is not an Electricity Maps zone (use the balancing "
                         "authority key, e.g. US-CAL-CISO)")
        return found.zone.key

    def _live(self, zone: str, start: datetime, end: datetime) -> IntensityFactor:
        em_zone = self.em_zone(zone)
        headers = {"auth-token": self._token}
        params = {"zone": em_zone, "emissionFactorType": self._factor_type}
        if start >= self._now() - HISTORY_WINDOW:
            body = self.client.get_json("carbon-intensity/history", params, headers)
            rows = body["history"]
            endpoint = "history"
        else:
            # Whole hours in the query so every interval inside them shares one cached call.
            params |= {"start": floor_time(start, HOUR).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "end": ceil_time(end, HOUR).strftime("%Y-%m-%dT%H:%M:%SZ")}
            body = self.client.get_json("carbon-intensity/past-range", params, headers)
            rows = body["data"]
            endpoint = "past-range"
        points, factor_type = _points(rows)
        avg = time_weighted_mean(points, start, end)
        if avg is None:
            raise NoData(f"no {em_zone} data points in {start.isoformat()}..{end.isoformat()} "
                         f"({len(points)} points from {endpoint})")
        lifecycle = Lifecycle.DIRECT if factor_type == "direct" else Lifecycle.LIFECYCLE
        return IntensityFactor(
            zone=zone, g_per_kwh=avg.g_per_kwh,
            source=f"Electricity Maps API v3 {endpoint} ({em_zone}, {avg.points} hourly points, "
                   f"{avg.coverage:.0%} of the interval; consumption-based)",
            year=start.year, licence=LICENCE,
            basis=Basis(Averaging.AVERAGE, lifecycle, Accounting.LOCATION),
        )


    def _forecast(self, zone: str, now: datetime) -> Forecast:
        """``GET /carbon-intensity/forecast?zone=`` -> ``{"zone","forecast":[{carbonIntensity,
        datetime}],"updatedAt"}``. Points give only their start: each lasts until the next
        (hourly by default; the spacing of the answer decides, so 15-minute forecasts work)."""
        em_zone = self.em_zone(zone)
        body = self.client.get_json(
            "carbon-intensity/forecast",
            {"zone": em_zone, "emissionFactorType": self._factor_type},
            {"auth-token": self._token})
        rows = [r for r in body["forecast"] if r.get("carbonIntensity") is not None]
        starts = [parse_time(r["datetime"]) for r in rows]
        step = spacing(starts, HOUR)
        points = []
        for row, start in zip(rows, starts, strict=True):
            value = row["carbonIntensity"]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise NoData(f"implausible carbonIntensity {value!r}")
            points.append(Point(start, start + step, float(value)))
        lifecycle = Lifecycle.DIRECT if self._factor_type == "direct" else Lifecycle.LIFECYCLE
        updated = body.get("updatedAt")
        return build_forecast(
            zone, points, now=now,
            source=f"Electricity Maps API v3 forecast ({em_zone}; consumption-based)",
            basis=Basis(Averaging.AVERAGE, lifecycle, Accounting.LOCATION),
            generated_at=parse_time(updated) if isinstance(updated, str) else None)


def _points(rows: list[dict[str, Any]]) -> tuple[list[Point], str]:
    points = []
    factor_type = "lifecycle"
    for row in rows:
        value = row.get("carbonIntensity")
        if value is None:  # the API sends null for hours it has no estimate for
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise NoData(f"implausible carbonIntensity {value!r}")
        start = parse_time(row["datetime"])
        points.append(Point(start, start + HOUR, float(value)))
        factor_type = row.get("emissionFactorType") or factor_type
    return points, factor_type
