"""Live providers against local HTTP servers serving the documented bodies and failures.

Whatever the server does, ``intensity()`` returns a factor: the live one, or the
catalogue's static one with ``fallback_reason`` saying why. Nothing crashes.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fakeapi_intensity import FakeApi, Reply

from carbontrack.core.errors import ConfigError, UnknownZoneError
from carbontrack.core.types import Averaging, IntensityLookup, Lifecycle
from carbontrack.intensity.catalogue import Catalogue
from carbontrack.intensity.providers.electricitymaps import ElectricityMapsProvider
from carbontrack.intensity.providers.gb import GbCarbonIntensityProvider
from carbontrack.intensity.providers.http import HttpSettings, JsonHttpClient
from carbontrack.intensity.providers.watttime import WattTimeProvider

NOW = datetime(2025, 6, 1, 12, 30, tzinfo=timezone.utc)
FAST = HttpSettings(timeout_s=0.2, retries=1, backoff_s=0.01, cache_ttl_s=300)


def utc(hour: int, minute: int = 0, day: int = 1) -> datetime:
    return datetime(2025, 6, day, hour, minute, tzinfo=timezone.utc)


def http(api: FakeApi, sleeps: list[float] | None = None) -> JsonHttpClient:
    return JsonHttpClient(api.url, FAST, sleep=(sleeps if sleeps is not None else []).append)


# --- Electricity Maps --------------------------------------------------------------------

def em_row(hour: int, value: float | None, day: int = 1) -> dict[str, object]:
    return {"zone": "DE", "carbonIntensity": value,
            "datetime": f"2025-06-{day:02d}T{hour:02d}:00:00.000Z",
            "updatedAt": "2025-06-01T12:05:00.000Z", "createdAt": "2025-05-29T06:20:31.772Z",
            "emissionFactorType": "lifecycle", "isEstimated": False, "estimationMethod": None}


def em(catalogue: Catalogue, api: FakeApi) -> ElectricityMapsProvider:
    return ElectricityMapsProvider(catalogue, "tok-123", client=http(api), now=lambda: NOW)


def test_em_history_is_time_weighted_over_the_interval(catalogue: Catalogue,
                                                       fake_api: FakeApi) -> None:
    fake_api.add("/carbon-intensity/history", Reply(body={
        "zone": "DE", "history": [em_row(9, 100.0), em_row(10, 300.0), em_row(11, None)]}))
    provider = em(catalogue, fake_api)
    assert isinstance(provider, IntensityLookup)
    # 09:30-10:30 = 30 min at 100 + 30 min at 300
    factor = provider.intensity("DE", utc(9, 30), utc(10, 30))
    assert factor.g_per_kwh == pytest.approx(200.0)
    assert factor.fallback_reason is None
    assert factor.basis.lifecycle is Lifecycle.LIFECYCLE
    assert "history" in factor.source and "2 hourly points" in factor.source
    # 09:45-10:45: 15 min at 100, 45 min at 300
    assert provider.intensity("DE", utc(9, 45), utc(10, 45)).g_per_kwh == pytest.approx(250.0)
    seen = fake_api.requests_to("/carbon-intensity/history")
    assert len(seen) == 1  # the second interval came from the cache
    assert seen[0].headers["auth-token"] == "tok-123"
    assert seen[0].query == {"zone": "DE", "emissionFactorType": "lifecycle"}


def test_em_old_interval_uses_past_range_and_cloud_region_zone(catalogue: Catalogue,
                                                               fake_api: FakeApi) -> None:
    row = {**em_row(3, 400.0), "datetime": "2025-05-20T03:00:00.000Z", "zone": "US-MIDA-PJM"}
    fake_api.add("/carbon-intensity/past-range", Reply(body={"data": [row]}))
    provider = em(catalogue, fake_api)
    may20 = datetime(2025, 5, 20, 3, 10, tzinfo=timezone.utc)
    factor = provider.intensity("aws:us-east-1", may20, may20 + timedelta(minutes=30))
    assert (factor.g_per_kwh, factor.fallback_reason) == (400.0, None)
    query = fake_api.requests_to("/carbon-intensity/past-range")[0].query
    assert query["zone"] == "US-MIDA-PJM"  # the region's Electricity Maps zone
    # whole hours, so every interval in the hour shares one cached call
    assert (query["start"], query["end"]) == ("2025-05-20T03:00:00Z", "2025-05-20T04:00:00Z")
    # a day with no points: the static eGRID factor, with the reason
    other = provider.intensity("aws:us-east-1", may20 - timedelta(days=1), may20 - timedelta(hours=1))
    assert other.fallback_reason is not None and "no US-MIDA-PJM data points" in other.fallback_reason
    assert other.g_per_kwh == catalogue.get("aws:us-east-1").g_per_kwh


def test_em_past_range_value(catalogue: Catalogue, fake_api: FakeApi) -> None:
    fake_api.add("/carbon-intensity/past-range", Reply(body={"data": [em_row(3, 400.0, day=1)]}))
    provider = ElectricityMapsProvider(catalogue, "t", client=http(fake_api),
                                       now=lambda: NOW + timedelta(days=3))
    factor = provider.intensity("DEU", utc(3, 10), utc(3, 40))
    assert (factor.g_per_kwh, factor.zone, factor.fallback_reason) == (400.0, "DEU", None)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(500, {"error": "internal"}), "HTTP 500: internal (after 2 attempts)"),
        (Reply(401, {"message": "Invalid auth-token"}), "HTTP 401"),
        (Reply(429, {"error": "rate"}, {"Retry-After": "9999"}), "Retry-After"),
        (Reply(body="<html>proxy error</html>"), "malformed JSON"),
        (Reply(body={"zone": "DE", "history": "oops"}), "unexpected response"),
        (Reply(body={"zone": "DE"}), "unexpected response (KeyError"),
        (Reply(body={"zone": "DE", "history": [em_row(9, -5.0)]}), "implausible"),
        (Reply(body={"zone": "DE", "history": []}), "no DE data points"),
        (Reply(body={}, delay_s=1.0), "timed out after 0.2 s"),
    ],
)
def test_em_failures_fall_back_visibly(catalogue: Catalogue, fake_api: FakeApi,
                                       reply: Reply, reason: str) -> None:
    fake_api.add("/carbon-intensity/history", reply)
    provider = em(catalogue, fake_api)
    factor = provider.intensity("DE", utc(9), utc(10))
    static = catalogue.get("DE")
    assert factor.g_per_kwh == static.g_per_kwh and factor.source == static.source
    assert factor.fallback_reason is not None
    assert factor.fallback_reason.startswith("electricitymaps: ")
    assert reason in factor.fallback_reason
    assert provider.fallbacks == 1


def test_em_zone_it_does_not_cover_falls_back(catalogue: Catalogue, fake_api: FakeApi) -> None:
    factor = em(catalogue, fake_api).intensity("CAMX", utc(9), utc(10))
    assert factor.zone == "US-EGRID-CAMX"
    assert factor.fallback_reason is not None
    assert "not an Electricity Maps zone" in factor.fallback_reason
    assert fake_api.seen == []  # decided without calling the API


def test_em_unknown_zone_and_failed_api_is_an_error(catalogue: Catalogue,
                                                    fake_api: FakeApi) -> None:
    fake_api.add("/carbon-intensity/history", Reply(404, {"error": "Zone 'ZZ-TOP' not found"}))
    with pytest.raises(UnknownZoneError, match=r"not found.*static fallback failed too"):
        em(catalogue, fake_api).intensity("ZZ-TOP", utc(9), utc(10))


def test_em_needs_a_token(catalogue: Catalogue) -> None:
    with pytest.raises(ConfigError, match="token"):
        ElectricityMapsProvider(catalogue, "")


# --- WattTime ------------------------------------------------------------------------------

def wt_body(values: list[float], units: str = "lbs_co2_per_mwh",
            first: str = "2025-06-01T12:00:00+00:00") -> dict[str, object]:
    t0 = datetime.fromisoformat(first)
    return {
        "data": [{"point_time": (t0 + timedelta(minutes=5 * i)).isoformat(), "value": v}
                 for i, v in enumerate(values)],
        "meta": {"region": "CAISO_NORTH", "signal_type": "co2_moer", "units": units,
                 "data_point_period_seconds": 300, "warnings": []},
    }


def wt(catalogue: Catalogue, api: FakeApi, clock: list[datetime] | None = None,
       sleeps: list[float] | None = None) -> WattTimeProvider:
    times = clock if clock is not None else [NOW]
    return WattTimeProvider(catalogue, "user", "secret", {"US-CAL-CISO": "CAISO_NORTH"},
                            client=http(api, sleeps), now=lambda: times[0])


def test_wt_moer_is_marginal_and_converted_from_lb_per_mwh(catalogue: Catalogue,
                                                           fake_api: FakeApi) -> None:
    fake_api.add("/login", Reply(body={"token": "jwt-1"}))
    fake_api.add("/v3/historical", Reply(body=wt_body([1000.0, 500.0, 800.0])))
    factor = wt(catalogue, fake_api).intensity("US-CAL-CISO", utc(12), utc(12, 10))
    assert factor.g_per_kwh == pytest.approx(750.0 * 0.45359237)
    assert factor.basis.averaging is Averaging.MARGINAL
    assert factor.basis.lifecycle is Lifecycle.DIRECT
    assert factor.fallback_reason is None
    login = fake_api.requests_to("/login")[0]
    assert login.headers["authorization"] == "Basic dXNlcjpzZWNyZXQ="  # user:secret
    data = fake_api.requests_to("/v3/historical")[0]
    assert data.headers["authorization"] == "Bearer jwt-1"
    assert data.query == {"region": "CAISO_NORTH", "signal_type": "co2_moer",
                          "start": "2025-06-01T12:00:00Z", "end": "2025-06-01T12:10:00Z"}


def test_wt_relogs_on_401_and_after_token_ttl(catalogue: Catalogue, fake_api: FakeApi) -> None:
    fake_api.add("/login", Reply(body={"token": "jwt-1"}), Reply(body={"token": "jwt-2"}),
                 Reply(body={"token": "jwt-3"}))
    fake_api.add("/v3/historical", Reply(401, {"error": "token expired"}),
                 Reply(body=wt_body([100.0] * 12)))
    clock = [NOW]
    provider = wt(catalogue, fake_api, clock)
    assert provider.intensity("US-CAL-CISO", utc(12), utc(12, 5)).fallback_reason is None
    assert provider.logins == 2
    auths = [s.headers["authorization"] for s in fake_api.requests_to("/v3/historical")]
    assert auths == ["Bearer jwt-1", "Bearer jwt-2"]
    clock[0] = NOW + timedelta(minutes=40)  # token older than its 25-minute lifetime
    assert provider.intensity("US-CAL-CISO", utc(12, 5), utc(12, 10)).fallback_reason is None
    assert provider.logins == 3


def test_wt_429_then_success(catalogue: Catalogue, fake_api: FakeApi) -> None:
    fake_api.add("/login", Reply(body={"token": "jwt"}))
    fake_api.add("/v3/historical", Reply(429, {"error": "too many"}, {"Retry-After": "2"}),
                 Reply(body=wt_body([200.0, 200.0])))
    sleeps: list[float] = []
    factor = wt(catalogue, fake_api, sleeps=sleeps).intensity("US-CAL-CISO", utc(12), utc(12, 5))
    assert factor.g_per_kwh == pytest.approx(200.0 * 0.45359237)
    assert sleeps == [2.0]


def test_wt_nowcast_when_historical_has_not_caught_up(catalogue: Catalogue,
                                                      fake_api: FakeApi) -> None:
    fake_api.add("/login", Reply(body={"token": "jwt"}))
    fake_api.add("/v3/historical", Reply(body=wt_body([], first="2025-06-01T12:00:00+00:00")))
    fake_api.add("/v3/forecast", Reply(body=wt_body([600.0], first="2025-06-01T12:25:00+00:00")))
    factor = wt(catalogue, fake_api).intensity("US-CAL-CISO", utc(12, 28), utc(12, 30))
    assert factor.g_per_kwh == pytest.approx(600.0 * 0.45359237)
    assert "nowcast" in factor.source
    assert fake_api.requests_to("/v3/forecast")[0].query["horizon_hours"] == "0"


@pytest.mark.parametrize(
    ("login", "data", "reason"),
    [
        (Reply(body={"token": "jwt"}), Reply(body=wt_body([60.0], units="percentile")),
         "unexpected units 'percentile'"),
        (Reply(403, {"error": "bad password"}), Reply(body={}), "HTTP 403"),
        (Reply(body={"token": "jwt"}), Reply(body="not json"), "malformed JSON"),
        (Reply(body={"token": "jwt"}), Reply(503, ""), "HTTP 503"),
    ],
)
def test_wt_failures_fall_back_visibly(catalogue: Catalogue, fake_api: FakeApi, login: Reply,
                                       data: Reply, reason: str) -> None:
    fake_api.add("/login", login)
    fake_api.add("/v3/historical", data)
    factor = wt(catalogue, fake_api).intensity("US-CAL-CISO", utc(12), utc(12, 5))
    assert factor.fallback_reason is not None and reason in factor.fallback_reason
    # the static stand-in keeps its own (average) basis: the reader sees it is not a MOER
    assert factor.basis.averaging is Averaging.AVERAGE
    assert factor.g_per_kwh == catalogue.get("US-CAL-CISO").g_per_kwh


def test_wt_unmapped_zone_falls_back_without_calling(catalogue: Catalogue,
                                                     fake_api: FakeApi) -> None:
    factor = wt(catalogue, fake_api).intensity("DE", utc(12), utc(12, 5))
    assert factor.fallback_reason is not None
    assert "no WattTime region configured for zone 'DE'" in factor.fallback_reason
    assert fake_api.seen == []


# --- GB Carbon Intensity -----------------------------------------------------------------

def gb_period(start: str, end: str, forecast: int, actual: int | None) -> dict[str, object]:
    return {"from": start, "to": end,
            "intensity": {"forecast": forecast, "actual": actual, "index": "moderate"}}


def test_gb_national_actual_then_forecast(catalogue: Catalogue, fake_api: FakeApi) -> None:
    path = "/intensity/2025-06-01T12:00Z/2025-06-01T13:00Z"
    fake_api.add(path, Reply(body={"data": [
        gb_period("2025-06-01T12:00Z", "2025-06-01T12:30Z", 270, 260),
        gb_period("2025-06-01T12:30Z", "2025-06-01T13:00Z", 180, None),
    ]}))
    provider = GbCarbonIntensityProvider(catalogue, client=http(fake_api), now=lambda: NOW)
    factor = provider.intensity("GB", utc(12, 15), utc(12, 45))
    assert factor.g_per_kwh == pytest.approx((260 + 180) / 2)
    assert "actual+forecast" in factor.source
    assert factor.basis.lifecycle is Lifecycle.DIRECT
    assert factor.licence.startswith("CC BY 4.0")
    assert fake_api.requests_to(path)[0].headers["accept"] == "application/json"


def test_gb_error_body_is_reported(catalogue: Catalogue, fake_api: FakeApi) -> None:
    fake_api.add("/intensity/2025-06-01T12:00Z/2025-06-01T12:30Z", Reply(400, {"error": {
        "code": "400 Bad Request", "message": "Please enter a valid ISO 8601 date"}}))
    provider = GbCarbonIntensityProvider(catalogue, client=http(fake_api), now=lambda: NOW)
    factor = provider.intensity("GBR", utc(12), utc(12, 20))
    assert factor.fallback_reason is not None
    assert "valid ISO 8601 date" in factor.fallback_reason
    assert factor.g_per_kwh == catalogue.get("GB").g_per_kwh


def test_gb_other_zones_fall_back(catalogue: Catalogue, fake_api: FakeApi) -> None:
    provider = GbCarbonIntensityProvider(catalogue, client=http(fake_api), now=lambda: NOW)
    factor = provider.intensity("FR", utc(12), utc(12, 30))
    assert factor.fallback_reason is not None and "Great Britain" in factor.fallback_reason
