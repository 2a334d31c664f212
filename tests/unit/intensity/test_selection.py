"""carbontrack.intensity.selection and .live against real local HTTP servers serving the
providers' documented shapes (shared/data/raw/API_NOTES.md): flags and environment,
credentials, one factor per interval, caching, backoff, Retry-After, fallback and recovery."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fakeapi_intensity import FakeApi, Reply

from carbontrack.core.errors import ConfigError
from carbontrack.core.types import Averaging
from carbontrack.intensity.catalogue import Catalogue
from carbontrack.intensity.live import Backoff, retry_after_s
from carbontrack.intensity.selection import IntensityConfig, Selection, config_from, select

NOW = datetime(2025, 6, 1, 12, 30, tzinfo=timezone.utc)
EM_ENV = {"ELECTRICITYMAPS_API_TOKEN": "tok-test"}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def em_row(hour: int, value: float) -> dict[str, object]:
    return {"zone": "DE", "carbonIntensity": value, "datetime": f"2025-06-01T{hour:02d}:00:00.000Z",
            "updatedAt": "2025-06-01T12:05:00.000Z", "emissionFactorType": "lifecycle",
            "isEstimated": False, "estimationMethod": None}


def utc(hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 6, 1, hour, minute, tzinfo=timezone.utc)


def em_selection(api: FakeApi, clock: Clock, catalogue: Catalogue, **kw: object) -> Selection:
    config = IntensityConfig(provider="electricitymaps", base_url=api.url, **kw)  # type: ignore[arg-type]
    return select(config, EM_ENV, catalogue=catalogue, clock=clock, now=lambda: NOW,
                  draw=lambda: 0.0)


def test_flags_win_over_the_environment() -> None:
    env = {"CARBONTRACK_INTENSITY_PROVIDER": "gb", "CARBONTRACK_INTENSITY_BASE_URL": "http://env",
           "WATTTIME_REGIONS": "US-CAL-CISO=CAISO_NORTH, aws:us-west-1=CAISO_NORTH"}
    from_env = config_from(env)
    assert (from_env.provider, from_env.base_url) == ("gb", "http://env")
    assert from_env.watttime_regions == (("US-CAL-CISO", "CAISO_NORTH"),
                                         ("aws:us-west-1", "CAISO_NORTH"))
    flags = config_from(env, provider="watttime", base_url="http://flag",
                        watttime_regions=["DE=X"])
    assert (flags.provider, flags.base_url, flags.watttime_regions) == (
        "watttime", "http://flag", (("DE", "X"),))
    assert config_from({}).provider == "static"
    with pytest.raises(ConfigError, match="unknown intensity provider 'nope'"):
        config_from({"CARBONTRACK_INTENSITY_PROVIDER": "nope"})
    with pytest.raises(ConfigError, match="ZONE=REGION"):
        config_from({}, watttime_regions=["CAISO_NORTH"])


@pytest.mark.parametrize(("provider", "env", "needle"), [
    ("electricitymaps", {}, r"\$ELECTRICITYMAPS_API_TOKEN"),
    ("watttime", {"WATTTIME_PASSWORD": "p"}, r"\$WATTTIME_USERNAME"),
    ("watttime", {"WATTTIME_USERNAME": "u"}, r"\$WATTTIME_PASSWORD"),
    ("watttime", {"WATTTIME_USERNAME": "u", "WATTTIME_PASSWORD": "p"}, "--watttime-region"),
])
def test_missing_credentials_name_the_variable(catalogue: Catalogue, provider: str,
                                               env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        select(IntensityConfig(provider=provider), env, catalogue=catalogue)


def test_static_is_the_catalogue_and_overrides_layer_on_top(catalogue: Catalogue,
                                                             tmp_path: Path) -> None:
    sel = select(IntensityConfig(), {}, catalogue=catalogue)
    assert sel.lookup is catalogue and sel.live is None
    res = sel.resolve(node_labels={"topology.kubernetes.io/region": "eu-west-1"},
                      provider_id="aws:///eu-west-1a/i-1")
    assert (res.key, res.zone, res.rule) == ("aws:eu-west-1", "IE", "cloud-region")
    path = tmp_path / "overrides.json"
    path.write_text(json.dumps([{"zone": "DE", "g_per_kwh": 123.0, "source": "auditor 2025"}]))
    sel = select(config_from({"CARBONTRACK_INTENSITY_OVERRIDES": str(path)}), {},
                 catalogue=catalogue)
    factor = sel.lookup.intensity("DE", utc(9), utc(10))
    assert (factor.g_per_kwh, factor.source) == (123.0, "user override: auditor 2025")


def test_each_interval_gets_its_own_value_from_one_cached_call(catalogue: Catalogue,
                                                               fake_api: FakeApi) -> None:
    fake_api.add("/carbon-intensity/history", Reply(body={
        "zone": "DE", "history": [em_row(10, 100.0), em_row(11, 300.0)]}))
    clock = Clock()
    sel = em_selection(fake_api, clock, catalogue)
    first = sel.lookup.intensity("DE", utc(10, 55), utc(11))
    clock.t += 5
    second = sel.lookup.intensity("DE", utc(11), utc(11, 5))
    assert (first.g_per_kwh, second.g_per_kwh) == (100.0, 300.0)
    assert first.fallback_reason is None and second.fallback_reason is None
    assert "Electricity Maps API v3 history" in second.source
    seen = fake_api.requests_to("/carbon-intensity/history")
    assert len(seen) == 1 and seen[0].headers["auth-token"] == "tok-test"


def test_stopped_server_falls_back_backs_off_and_recovers(catalogue: Catalogue) -> None:
    api = FakeApi()
    rows = {"zone": "DE", "history": [em_row(10, 100.0), em_row(11, 300.0)]}
    api.add("/carbon-intensity/history", Reply(body=rows))
    clock = Clock()
    sel = em_selection(api, clock, catalogue, cache_ttl_s=60.0, backoff_s=30.0)
    assert sel.live is not None
    assert sel.lookup.intensity("DE", utc(11), utc(11, 1)).g_per_kwh == 300.0
    port = api.port
    api.close()
    clock.t += 61  # the cached answer has expired
    down = sel.lookup.intensity("DE", utc(11, 1), utc(11, 2))
    static = catalogue.get("DE")
    assert (down.g_per_kwh, down.source) == (static.g_per_kwh, static.source)
    assert down.fallback_reason is not None and "cannot connect" in down.fallback_reason
    assert not sel.live.live and sel.live.attempts == 2
    clock.t += 29  # inside the 30 s backoff: the provider is not asked
    again = sel.lookup.intensity("DE", utc(11, 2), utc(11, 3))
    assert again.fallback_reason == down.fallback_reason and sel.live.attempts == 2
    clock.t += 2  # past it, still down: asked once, next wait doubles to 60 s
    sel.lookup.intensity("DE", utc(11, 3), utc(11, 4))
    assert sel.live.attempts == 3
    restarted = FakeApi(port)
    try:
        restarted.add("/carbon-intensity/history", Reply(body=rows))
        clock.t += 59
        assert sel.lookup.intensity("DE", utc(11, 4), utc(11, 5)).fallback_reason is not None
        assert restarted.seen == []
        clock.t += 2
        back = sel.lookup.intensity("DE", utc(11, 5), utc(11, 6))
        assert (back.g_per_kwh, back.fallback_reason) == (300.0, None) and sel.live.live
    finally:
        restarted.close()


def test_retry_after_longer_than_the_backoff_is_honoured(catalogue: Catalogue,
                                                         fake_api: FakeApi) -> None:
    fake_api.add("/carbon-intensity/history",
                 Reply(429, {"error": "rate limited"}, {"Retry-After": "120"}),
                 Reply(body={"zone": "DE", "history": [em_row(11, 300.0)]}))
    clock = Clock()
    sel = em_selection(fake_api, clock, catalogue)
    limited = sel.lookup.intensity("DE", utc(11), utc(11, 1))
    assert limited.fallback_reason is not None and "Retry-After" in limited.fallback_reason
    assert retry_after_s(limited.fallback_reason) == 120.0
    clock.t += 100  # past the 30 s backoff, but the server asked for 120 s
    assert sel.lookup.intensity("DE", utc(11, 1), utc(11, 2)).fallback_reason is not None
    assert len(fake_api.seen) == 1
    clock.t += 21
    assert sel.lookup.intensity("DE", utc(11, 2), utc(11, 3)).g_per_kwh == 300.0
    assert len(fake_api.seen) == 2


@pytest.mark.parametrize(("reply", "needle"), [
    (Reply(401, {"message": "Invalid auth-token"}), "HTTP 401"),
    (Reply(503, {"error": "maintenance"}), "HTTP 503: maintenance"),
    (Reply(body="<html>proxy</html>"), "malformed JSON"),
    (Reply(body={"zone": "DE", "history": {"x": 1}}), "unexpected response"),
    (Reply(404, {"error": "Zone 'DE' does not exist"}), "HTTP 404"),
])
def test_bad_answers_give_the_static_factor_and_say_why(catalogue: Catalogue, fake_api: FakeApi,
                                                        reply: Reply, needle: str) -> None:
    fake_api.add("/carbon-intensity/history", reply)
    sel = em_selection(fake_api, Clock(), catalogue)
    factor = sel.lookup.intensity("DE", utc(11), utc(11, 1))
    assert factor.g_per_kwh == catalogue.get("DE").g_per_kwh
    assert factor.fallback_reason is not None and needle in factor.fallback_reason
    assert "tok-test" not in factor.fallback_reason


def test_zone_the_provider_does_not_cover_falls_back(catalogue: Catalogue,
                                                     fake_api: FakeApi) -> None:
    sel = em_selection(fake_api, Clock(), catalogue)
    factor = sel.lookup.intensity("US-EGRID-CAMX", utc(11), utc(11, 1))  # eGRID, not an EM zone
    assert factor.fallback_reason is not None and "not an Electricity Maps zone" in factor.fallback_reason
    assert fake_api.seen == []


def test_watttime_is_marginal_and_its_fallback_is_labelled_average(catalogue: Catalogue,
                                                                    fake_api: FakeApi) -> None:
    fake_api.add("/login", Reply(body={"token": "jwt-1"}))
    fake_api.add("/v3/historical", Reply(body={
        "data": [{"point_time": "2025-06-01T11:00:00Z", "value": 1000.0}],
        "meta": {"region": "CAISO_NORTH", "signal_type": "co2_moer", "units": "lbs_co2_per_mwh",
                 "data_point_period_seconds": 300}}), Reply(500, {"error": "down"}))
    clock = Clock()
    config = IntensityConfig(provider="watttime", base_url=fake_api.url,
                             watttime_regions=(("US-CAL-CISO", "CAISO_NORTH"),))
    sel = select(config, {"WATTTIME_USERNAME": "u", "WATTTIME_PASSWORD": "pw-test"},
                 catalogue=catalogue, clock=clock, now=lambda: NOW, draw=lambda: 0.0)
    live = sel.lookup.intensity("US-CAL-CISO", utc(11), utc(11, 5))
    assert live.g_per_kwh == pytest.approx(453.59237)  # 1000 lb/MWh
    assert live.basis.averaging is Averaging.MARGINAL
    clock.t += 301
    down = sel.lookup.intensity("US-CAL-CISO", utc(11, 5), utc(11, 10))
    assert down.fallback_reason is not None and down.basis.averaging is Averaging.AVERAGE
    assert fake_api.requests_to("/login")[0].headers["authorization"].startswith("Basic ")


def test_gb_needs_no_credentials(catalogue: Catalogue, fake_api: FakeApi) -> None:
    fake_api.add("/intensity/2025-06-01T11:00Z/2025-06-01T11:30Z", Reply(body={"data": [
        {"from": "2025-06-01T11:00Z", "to": "2025-06-01T11:30Z",
         "intensity": {"forecast": 150, "actual": 140, "index": "low"}}]}))
    sel = select(IntensityConfig(provider="gb", base_url=fake_api.url), {}, catalogue=catalogue,
                 clock=Clock(), now=lambda: NOW)
    factor = sel.lookup.intensity("GB", utc(11, 5), utc(11, 10))
    assert (factor.g_per_kwh, factor.fallback_reason) == (140.0, None)


def test_backoff_doubles_to_its_cap_with_bounded_jitter() -> None:
    b = Backoff(first_s=30.0, max_s=1800.0, jitter=0.1)
    assert [b.delay(n, 0.0) for n in (1, 2, 3, 7, 20)] == [30.0, 60.0, 120.0, 1800.0, 1800.0]
    assert b.delay(1, 1.0) == pytest.approx(33.0)
    assert retry_after_s("HTTP 500: x") is None
    assert timedelta(seconds=b.delay(1, 0.5)) == timedelta(seconds=31.5)
