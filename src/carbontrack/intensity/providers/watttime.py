"""WattTime API v3: marginal operating emission rate (MOER).

Login is ``GET /login`` with HTTP Basic auth, giving a bearer token valid for
about 30 minutes; we log in again after ``token_ttl`` or when the API answers
401/403. MOER is a *marginal* rate in lb CO2/MWh: it is converted to g/kWh and
labelled ``marginal`` - it suits load shifting, not a Scope 2 inventory.

WattTime regions (``CAISO_NORTH``) are not grid zone keys, so the caller passes
the mapping (``regions={"US-CAL-CISO": "CAISO_NORTH"}``); nothing is guessed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ...core.errors import ConfigError
from ...core.types import Accounting, Averaging, Basis, IntensityFactor, Lifecycle
from ..catalogue import Catalogue
from ..forecast import Forecast, build_forecast
from ..series import Average, Point, ceil_time, floor_time, parse_time, time_weighted_mean
from .base import LiveProvider, NoData, utc_now
from .http import HttpSettings, HttpStatusError, JsonHttpClient, basic_auth

DEFAULT_BASE_URL = "https://api.watttime.org"
LB_PER_MWH_TO_G_PER_KWH = 0.45359237  # 1 lb = 0.45359237 kg; kg/MWh = g/kWh
# units string -> factor to g/kWh; "percentile" (signal-index) is not a rate and is refused
UNITS = {"lbs_co2_per_mwh": LB_PER_MWH_TO_G_PER_KWH, "kg_co2_per_mwh": 1.0, "g_co2_per_kwh": 1.0}
FIVE_MINUTES = timedelta(minutes=5)
LICENCE = "WattTime API terms of service"


class WattTimeProvider(LiveProvider):
    name = "watttime"

    def __init__(
        self,
        catalogue: Catalogue,
        username: str,
        password: str,
        regions: Mapping[str, str],
        *,
        locations: Mapping[str, tuple[float, float]] | None = None,
        horizon_hours: int = 24,
        base_url: str = DEFAULT_BASE_URL,
        signal_type: str = "co2_moer",
        token_ttl: timedelta = timedelta(minutes=25),
        settings: HttpSettings | None = None,
        client: JsonHttpClient | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__(catalogue, now=now)
        if not username or not password:
            raise ConfigError("WattTime needs a username and password (register with "
                              "POST /register, see https://docs.watttime.org)")
        if signal_type not in ("co2_moer", "co2_aoer"):
            raise ConfigError(f"signal_type must be co2_moer or co2_aoer, got {signal_type!r}")
        self._auth = basic_auth(username, password)
        self._password = password  # only to redact it from messages
        self._regions = {k.strip().upper(): v for k, v in regions.items()}
        # zone -> (latitude, longitude): the region comes from /v3/region-from-loc, once
        self._locations = {k.strip().upper(): v for k, v in (locations or {}).items()}
        if not 0 <= horizon_hours <= 72:
            raise ConfigError(f"WattTime forecast horizon_hours must be 0-72, got {horizon_hours}")
        self._horizon_hours = horizon_hours
        self._signal = signal_type
        self._token_ttl = token_ttl
        self._token: str | None = None
        self._token_at: datetime | None = None
        self.client = client or JsonHttpClient(base_url, settings)
        self.logins = 0

    def _secrets(self) -> tuple[str, ...]:
        return (self._password, self._auth, self._token or "")

    def region(self, zone: str) -> str:
        key = zone.strip().upper()
        region = self._regions.get(key)
        if region is None and key in self._locations:
            region = self.region_from_location(*self._locations[key])
            self._regions[key] = region  # a grid region does not move: ask once
        if region is None:
            raise NoData(f"no WattTime region configured for zone {zone!r} "
                         f"(configured: {', '.join(sorted({*self._regions, *self._locations})) or 'none'}; "
                         "give --watttime-region ZONE=REGION or --watttime-location ZONE=LAT,LON)")
        return region

    def region_from_location(self, latitude: float, longitude: float) -> str:
        """``GET /v3/region-from-loc?latitude=&longitude=&signal_type=`` -> ``{"region": ...}``."""
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise ConfigError(f"location {latitude},{longitude} is not a latitude,longitude")
        body = self._get("v3/region-from-loc", {
            "latitude": f"{latitude:g}", "longitude": f"{longitude:g}", "signal_type": self._signal})
        region = body.get("region") if isinstance(body, Mapping) else None
        if not isinstance(region, str) or not region:
            raise NoData(f"region-from-loc answered without a region for {latitude},{longitude}")
        return region

    def _login(self) -> str:
        body = self.client.get_json("login", headers={"Authorization": self._auth}, cache=False)
        token = body["token"]
        if not isinstance(token, str) or not token:
            raise NoData("login answered without a token")
        self._token, self._token_at = token, self._now()
        self.logins += 1
        return token

    def _get(self, path: str, params: dict[str, str]) -> Any:
        token = self._token
        if token is None or self._token_at is None or self._now() - self._token_at > self._token_ttl:
            token = self._login()
        try:
            return self.client.get_json(path, params, {"Authorization": f"Bearer {token}"})
        except HttpStatusError as err:
            if err.status not in (401, 403):
                raise
            token = self._login()  # expired or revoked: one fresh login, then give up
            return self.client.get_json(path, params, {"Authorization": f"Bearer {token}"})

    def _live(self, zone: str, start: datetime, end: datetime) -> IntensityFactor:
        region = self.region(zone)
        params = {
            "region": region, "signal_type": self._signal,
            "start": floor_time(start, FIVE_MINUTES).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": ceil_time(end, FIVE_MINUTES).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        points = _points(self._get("v3/historical", params))
        avg = time_weighted_mean(points, start, end)
        endpoint = "historical"
        if avg is None and end >= self._now() - FIVE_MINUTES:
            # The newest 5 minutes may not be in /historical yet: ask for the nowcast.
            nowcast = {"region": region, "signal_type": self._signal, "horizon_hours": "0"}
            points = _points(self._get("v3/forecast", nowcast))
            avg = time_weighted_mean(points, start, end)
            if avg is None and points:  # the interval is this very moment: take the nowcast
                avg = Average(points[0].g_per_kwh, 1, 0.0)
            endpoint = "forecast (nowcast)"
        if avg is None:
            raise NoData(f"no {region} data points in {start.isoformat()}..{end.isoformat()}")
        averaging = Averaging.MARGINAL if self._signal == "co2_moer" else Averaging.AVERAGE
        return IntensityFactor(
            zone=zone, g_per_kwh=avg.g_per_kwh,
            source=f"WattTime API v3 {endpoint} {self._signal} ({region}, {avg.points} points)",
            year=start.year, licence=LICENCE,
            basis=Basis(averaging, Lifecycle.DIRECT, Accounting.LOCATION),
        )


    def _forecast(self, zone: str, now: datetime) -> Forecast:
        """``GET /v3/forecast?region=&signal_type=&horizon_hours=`` (5-minute points)."""
        region = self.region(zone)
        body = self._get("v3/forecast", {"region": region, "signal_type": self._signal,
                                         "horizon_hours": str(self._horizon_hours)})
        generated = (body.get("meta") or {}).get("generated_at")
        averaging = Averaging.MARGINAL if self._signal == "co2_moer" else Averaging.AVERAGE
        return build_forecast(
            zone, _points(body), now=now,
            source=f"WattTime API v3 forecast {self._signal} ({region})",
            basis=Basis(averaging, Lifecycle.DIRECT, Accounting.LOCATION),
            generated_at=parse_time(generated) if isinstance(generated, str) else None)


def _points(body: Mapping[str, Any]) -> list[Point]:
    meta = body.get("meta") or {}
    units = meta.get("units")
    if units not in UNITS:
        raise NoData(f"unexpected units {units!r} (want one of {', '.join(sorted(UNITS))})")
    scale = UNITS[units]
    period = timedelta(seconds=int(meta.get("data_point_period_seconds") or 300))
    points = []
    for row in body["data"]:
        value = row.get("value")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise NoData(f"implausible MOER value {value!r}")
        start = parse_time(row["point_time"])
        points.append(Point(start, start + period, float(value) * scale))
    return points
