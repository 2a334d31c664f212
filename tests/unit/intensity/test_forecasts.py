"""Forecasts, GB regional intensity and WattTime region lookup, against local HTTP servers
serving the documented shapes (../shared/data/raw/API_NOTES.md), and each bad input."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fakeapi_intensity import FakeApi, Reply

from carbontrack.core.errors import ConfigError
from carbontrack.core.types import Averaging, Lifecycle
from carbontrack.intensity.catalogue import Catalogue
from carbontrack.intensity.forecast import ForecastUnusable
from carbontrack.intensity.providers.electricitymaps import ElectricityMapsProvider
from carbontrack.intensity.providers.gb import GbCarbonIntensityProvider, parse_region
from carbontrack.intensity.providers.http import HttpSettings, JsonHttpClient
from carbontrack.intensity.providers.watttime import WattTimeProvider
from carbontrack.intensity.selection import config_from, select

NOW = datetime(2025, 6, 1, 12, 10, tzinfo=timezone.utc)
# as the selection builds it: one attempt, a 429 answered at once with its Retry-After
ONCE = HttpSettings(timeout_s=1.0, retries=0, retry_after_max_s=0.0, cache_ttl_s=0)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def hour(n: int) -> datetime:
    return datetime(2025, 6, 1, 12, tzinfo=timezone.utc) + timedelta(hours=n)


def em(catalogue: Catalogue, api: FakeApi) -> ElectricityMapsProvider:
    return ElectricityMapsProvider(catalogue, "tok-forecast-123",
                                   client=JsonHttpClient(api.url, ONCE), now=lambda: NOW)


def em_forecast(values: dict[int, float]) -> dict[str, object]:
    return {"zone": "DE", "updatedAt": "2025-06-01T12:00:00.000Z",
            "forecast": [{"carbonIntensity": v, "datetime": iso(hour(h))} for h, v in values.items()]}


def test_em_forecast_is_time_resolved_with_horizon_and_granularity(catalogue: Catalogue,
                                                                   fake_api: FakeApi) -> None:
    # an hour already over (11:00-12:00) is dropped; 12:00-13:00 still runs at 12:10
    fake_api.add("/carbon-intensity/forecast", Reply(body=em_forecast(
        {-1: 500.0, 0: 300.0, 1: 200.0, 2: 100.0, 3: 250.0})))
    forecast = em(catalogue, fake_api).forecast("DE")
    assert [p.g_per_kwh for p in forecast.points] == [300.0, 200.0, 100.0, 250.0]
    assert forecast.points[0].start == hour(0) and forecast.points[-1].end == hour(4)
    assert forecast.granularity == timedelta(hours=1)
    assert forecast.horizon == hour(4) - NOW
    assert forecast.gaps == ()
    assert forecast.basis.lifecycle is Lifecycle.LIFECYCLE
    assert forecast.generated_at == hour(0)
    seen = fake_api.requests_to("/carbon-intensity/forecast")[0]
    assert seen.query["zone"] == "DE" and seen.headers["auth-token"] == "tok-forecast-123"


def test_em_forecast_keeps_gaps_and_granularity_from_the_spacing(catalogue: Catalogue,
                                                                 fake_api: FakeApi) -> None:
    fake_api.add("/carbon-intensity/forecast", Reply(body=em_forecast(
        {0: 300.0, 1: 200.0, 4: 100.0})))  # hours 2 and 3 missing
    forecast = em(catalogue, fake_api).forecast("DE")
    assert forecast.gaps == ((hour(2), hour(4)),)
    assert forecast.granularity == timedelta(hours=1)
    assert "1 gap(s)" in forecast.describe()


@pytest.mark.parametrize(("reply", "expected"), [
    (Reply(401, {"error": "invalid auth-token tok-forecast-123"}), "HTTP 401"),
    (Reply(429, {"message": "slow down"}, {"Retry-After": "90"}), "rate-limited us for 90 s"),
    (Reply(200, b"{not json"), "malformed JSON"),
    (Reply(200, {"zone": "DE", "history": []}), "unexpected response (KeyError"),
    (Reply(200, em_forecast({-3: 100.0, -2: 120.0})), "the forecast is in the past"),
    (Reply(200, {"zone": "DE", "forecast": []}), "the forecast has no points"),
    (Reply(404, {"error": "Zone 'XX-NOPE' does not exist"}), "does not exist"),
])
def test_em_forecast_failures_are_one_visible_reason(catalogue: Catalogue, fake_api: FakeApi,
                                                     reply: Reply, expected: str) -> None:
    fake_api.add("/carbon-intensity/forecast", reply)
    with pytest.raises(ForecastUnusable) as caught:
        em(catalogue, fake_api).forecast("DE")
    assert expected in str(caught.value)
    assert "tok-forecast-123" not in str(caught.value)  # the API echoed it: redacted


# --- WattTime ----------------------------------------------------------------------------

def wt(catalogue: Catalogue, api: FakeApi, **kw: object) -> WattTimeProvider:
    return WattTimeProvider(catalogue, "user", "pw-forecast-9", kw.pop("regions", {}),  # type: ignore[arg-type]
                            client=JsonHttpClient(api.url, ONCE), now=lambda: NOW, **kw)  # type: ignore[arg-type]


def wt_body(start: datetime, values: list[float], period_s: int = 300) -> dict[str, object]:
    return {"data": [{"point_time": iso(start + timedelta(seconds=i * period_s)), "value": v}
                     for i, v in enumerate(values)],
            "meta": {"region": "CAISO_NORTH", "signal_type": "co2_moer", "units": "lbs_co2_per_mwh",
                     "data_point_period_seconds": period_s, "generated_at": iso(NOW)}}


def test_wt_forecast_is_marginal_in_g_per_kwh(catalogue: Catalogue, fake_api: FakeApi) -> None:
    fake_api.add("/login", Reply(body={"token": "jwt-1"}))
    fake_api.add("/v3/forecast", Reply(body=wt_body(NOW, [1000.0, 500.0, 800.0])))
    forecast = wt(catalogue, fake_api, regions={"US-CAL-CISO": "CAISO_NORTH"},
                  horizon_hours=6).forecast("US-CAL-CISO")
    assert [p.g_per_kwh for p in forecast.points] == pytest.approx([453.59237, 226.796185, 362.873896])
    assert forecast.granularity == timedelta(minutes=5) and forecast.horizon == timedelta(minutes=15)
    assert forecast.basis.averaging is Averaging.MARGINAL
    assert "marginal" in forecast.describe() or "co2_moer" in forecast.describe()
    asked = fake_api.requests_to("/v3/forecast")[0]
    assert asked.query == {"region": "CAISO_NORTH", "signal_type": "co2_moer", "horizon_hours": "6"}
    assert asked.headers["authorization"] == "Bearer jwt-1"


def test_wt_region_from_location_is_asked_once(catalogue: Catalogue, fake_api: FakeApi) -> None:
    fake_api.add("/login", Reply(body={"token": "jwt-1"}))
    fake_api.add("/v3/region-from-loc", Reply(body={
        "region": "CAISO_NORTH", "region_full_name": "Northern California", "signal_type": "co2_moer"}))
    provider = wt(catalogue, fake_api, locations={"US-CAL-CISO": (37.77, -122.42)})
    assert provider.region("US-CAL-CISO") == "CAISO_NORTH"
    assert provider.region("us-cal-ciso") == "CAISO_NORTH"
    asked = fake_api.requests_to("/v3/region-from-loc")
    assert len(asked) == 1
    assert asked[0].query == {"latitude": "37.77", "longitude": "-122.42", "signal_type": "co2_moer"}


def test_wt_region_lookup_failures(catalogue: Catalogue, fake_api: FakeApi) -> None:
    fake_api.add("/login", Reply(body={"token": "jwt-1"}))
    fake_api.add("/v3/region-from-loc", Reply(400, {"error": "Coordinates not found"}))
    provider = wt(catalogue, fake_api, locations={"US-CAL-CISO": (0.0, 0.0)})
    with pytest.raises(ForecastUnusable, match="Coordinates not found"):
        provider.forecast("US-CAL-CISO")
    with pytest.raises(ForecastUnusable, match="no WattTime region configured for zone 'DE'"):
        provider.forecast("DE")
    # an unknown zone for the live intensity falls back to the static factor, visibly
    factor = provider.intensity("US-CAL-CISO", NOW, NOW + timedelta(minutes=5))
    assert factor.fallback_reason is not None and "Coordinates not found" in factor.fallback_reason


def test_wt_401_on_login_is_a_reason_without_the_password(catalogue: Catalogue,
                                                         fake_api: FakeApi) -> None:
    fake_api.add("/login", Reply(401, {"error": "bad password pw-forecast-9"}))
    with pytest.raises(ForecastUnusable) as caught:
        wt(catalogue, fake_api, regions={"US-CAL-CISO": "CAISO_NORTH"}).forecast("US-CAL-CISO")
    assert "HTTP 401" in str(caught.value) and "pw-forecast-9" not in str(caught.value)


# --- GB ----------------------------------------------------------------------------------

def gb_period(start: datetime, forecast: float | None, actual: float | None = None) -> dict[str, object]:
    return {"from": start.strftime("%Y-%m-%dT%H:%MZ"),
            "to": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%MZ"),
            "intensity": {"forecast": forecast, "actual": actual, "index": "moderate"}}


def half(n: int) -> datetime:
    return datetime(2025, 6, 1, 12, tzinfo=timezone.utc) + timedelta(minutes=30 * n)


def gb(catalogue: Catalogue, api: FakeApi, region: str | None = None) -> GbCarbonIntensityProvider:
    return GbCarbonIntensityProvider(catalogue, client=JsonHttpClient(api.url, ONCE),
                                     now=lambda: NOW, region=region)


def test_gb_fw48h_national_uses_forecasts(catalogue: Catalogue, fake_api: FakeApi) -> None:
    fake_api.add("/intensity/2025-06-01T12:00Z/fw48h", Reply(body={"data": [
        gb_period(half(0), 200.0, 190.0), gb_period(half(1), 150.0), gb_period(half(2), 120.0)]}))
    forecast = gb(catalogue, fake_api).forecast("GB")
    assert [p.g_per_kwh for p in forecast.points] == [200.0, 150.0, 120.0]
    assert forecast.granularity == timedelta(minutes=30)
    assert forecast.basis.lifecycle is Lifecycle.DIRECT
    assert "fw48h national" in forecast.source


def regional(periods: list[dict[str, object]], wrap: bool) -> dict[str, object]:
    region = {"regionid": 12, "dnoregion": "SSE South", "shortname": "South England",
              "postcode": "RG10",
              "data": [{**p, "generationmix": [{"fuel": "gas", "perc": 43.6}]} for p in periods]}
    return {"data": [region] if wrap else region}


@pytest.mark.parametrize("wrap", [True, False])
def test_gb_regional_postcode_intensity_and_forecast(catalogue: Catalogue, fake_api: FakeApi,
                                                     wrap: bool) -> None:
    fake_api.add("/regional/intensity/2025-06-01T12:00Z/2025-06-01T12:30Z/postcode/RG10",
                 Reply(body=regional([gb_period(half(0), 88.0)], wrap)))
    fake_api.add("/regional/intensity/2025-06-01T12:00Z/fw48h/postcode/RG10",
                 Reply(body=regional([gb_period(half(0), 88.0), gb_period(half(1), 44.0)], wrap)))
    provider = gb(catalogue, fake_api, "postcode:rg10")
    factor = provider.intensity("GB", half(0), half(0) + timedelta(minutes=10))
    assert factor.fallback_reason is None and factor.g_per_kwh == 88.0
    assert "region postcode RG10, forecast" in factor.source
    assert [p.g_per_kwh for p in provider.forecast("GB").points] == [88.0, 44.0]


def test_gb_regionid_path_and_bad_regions(catalogue: Catalogue, fake_api: FakeApi) -> None:
    fake_api.add("/regional/intensity/2025-06-01T12:00Z/fw48h/regionid/3",
                 Reply(body=regional([gb_period(half(0), 266.0)], False)))
    assert gb(catalogue, fake_api, "regionid:3").forecast("GB").points[0].g_per_kwh == 266.0
    for bad in ("regionid:18", "regionid:0", "postcode:", "postcode:RG10 9XX", "london"):
        with pytest.raises(ConfigError, match="GB region"):
            parse_region(bad)
    with pytest.raises(ForecastUnusable, match="Great Britain"):
        gb(catalogue, fake_api).forecast("DE")
    with pytest.raises(ConfigError, match="GB region"):
        config_from({"CARBONTRACK_GB_REGION": "postcode:!!"}, provider="gb")


def test_gb_error_shape_is_the_reason(catalogue: Catalogue, fake_api: FakeApi) -> None:
    fake_api.add("/intensity/2025-06-01T12:00Z/fw48h", Reply(400, {"error": {
        "code": "400 Bad Request", "message": "Please enter a valid date"}}))
    with pytest.raises(ForecastUnusable, match="Please enter a valid date"):
        gb(catalogue, fake_api).forecast("GB")


# --- selection -----------------------------------------------------------------------------

def test_selection_gives_the_live_provider_as_forecaster(catalogue: Catalogue,
                                                         fake_api: FakeApi) -> None:
    with pytest.raises(ForecastUnusable, match="provider is static"):
        select(config_from({}), {}, catalogue=catalogue).forecaster()
    env = {"CARBONTRACK_INTENSITY_PROVIDER": "watttime", "WATTTIME_USERNAME": "u",
           "WATTTIME_PASSWORD": "p", "WATTTIME_LOCATIONS": "US-CAL-CISO=37.77,-122.42",
           "CARBONTRACK_INTENSITY_BASE_URL": fake_api.url}
    fake_api.add("/login", Reply(body={"token": "jwt-1"}))
    fake_api.add("/v3/region-from-loc", Reply(body={"region": "CAISO_NORTH"}))
    fake_api.add("/v3/forecast", Reply(body=wt_body(datetime.now(timezone.utc), [1000.0, 500.0])))
    forecast = select(config_from(env), env, catalogue=catalogue).forecaster().forecast("US-CAL-CISO")
    assert len(forecast.points) >= 1
    assert fake_api.requests_to("/v3/forecast")[0].query["region"] == "CAISO_NORTH"
    for bad in ("US-CAL-CISO=91,0", "US-CAL-CISO=37.7", "=1,2", "X=a,b"):
        with pytest.raises(ConfigError, match="ZONE=LAT,LON"):
            config_from({"WATTTIME_LOCATIONS": bad})
