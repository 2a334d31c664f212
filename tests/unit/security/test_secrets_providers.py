"""Credentials never leave in messages: live intensity providers and the exporter's API
client against a real local server that refuses them (401, 403, 500, garbage) and echoes
every request header back, as a hostile or careless API could."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from carbontrack.exporter.kubeapi import ApiClient, ApiError
from leaky_server import leaky_server

from carbontrack.core.apiconfig import from_kubeconfig
from carbontrack.core.errors import CarbonTrackError, ConfigError
from carbontrack.intensity.catalogue import Catalogue
from carbontrack.intensity.providers.electricitymaps import ElectricityMapsProvider
from carbontrack.intensity.providers.http import HttpSettings, JsonHttpClient
from carbontrack.intensity.providers.watttime import WattTimeProvider

TOKEN = "SECRET-TOKEN-7f3a9c1e"
PASSWORD = "SECRET-PASSWORD-51b2d"
BEARER = "SECRET-BEARER-0e77aa"
SECRETS = (TOKEN, PASSWORD, BEARER)
FAST = HttpSettings(timeout_s=5.0, retries=1, backoff_s=0.0, cache_ttl_s=0.0)
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


def assert_clean(*texts: object) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in str(text), f"{secret} leaked in {text!r}"


def _em(catalogue: Catalogue, url: str) -> ElectricityMapsProvider:
    return ElectricityMapsProvider(catalogue, TOKEN, base_url=url, settings=FAST, now=lambda: NOW)


@pytest.mark.parametrize("status", [401, 403, 500, 429])
def test_electricity_maps_refusals_fall_back_without_the_token(
    catalogue: Catalogue, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    caplog.set_level(logging.DEBUG)
    with leaky_server({"/carbon-intensity": [(status, {})]}) as server:
        factor = _em(catalogue, server.url).intensity("DE", NOW - timedelta(hours=1), NOW)
        got = [h for _, h in server.requests]
    assert got and got[0]["auth-token"] == TOKEN  # the server did see (and echo) it
    assert factor.fallback_reason is not None and f"HTTP {status}" in factor.fallback_reason
    assert "[redacted]" in factor.fallback_reason
    assert_clean(factor, factor.fallback_reason, caplog.text)


def test_a_garbage_body_and_a_wrong_shape_are_reported_without_the_token(
    catalogue: Catalogue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # 200 with the echo as body: valid JSON, no "history" list -> unexpected response
    with leaky_server({"/carbon-intensity": [(200, {"history": [{"datetime": TOKEN, "carbonIntensity": 1}]})]}) as s:
        factor = _em(catalogue, s.url).intensity("DE", NOW - timedelta(hours=1), NOW)
    assert factor.fallback_reason is not None and "unexpected response" in factor.fallback_reason
    assert_clean(factor.fallback_reason, caplog.text)


def test_the_http_client_redacts_header_credentials_from_every_error() -> None:
    with leaky_server({"/a": [(401, {})], "/b": [(500, {})]}) as s:
        client = JsonHttpClient(s.url, FAST, sleep=lambda _: None)
        for path, headers in (("a", {"auth-token": TOKEN}), ("b", {"Authorization": f"Bearer {BEARER}"})):
            with pytest.raises(CarbonTrackError) as info:
                client.get_json(path, headers=headers)
            assert "[redacted]" in str(info.value)
            assert_clean(info.value, repr(info.value))


def test_a_password_in_the_base_url_is_redacted() -> None:
    with leaky_server({"/": [(200, {})]}) as s:
        client = JsonHttpClient(s.url.replace("http://", f"http://user:{PASSWORD}@"), FAST, sleep=lambda _: None)
        with pytest.raises(CarbonTrackError) as info:
            client.get_json("x")
    assert_clean(info.value)


@pytest.mark.parametrize("login_status", [401, 500])
def test_watttime_login_refused_without_the_password(
    catalogue: Catalogue, caplog: pytest.LogCaptureFixture, login_status: int
) -> None:
    caplog.set_level(logging.DEBUG)
    with leaky_server({"/login": [(login_status, {})]}) as s:
        p = WattTimeProvider(catalogue, "someone", PASSWORD, {"US-CAL-CISO": "CAISO_NORTH"},
                             base_url=s.url, settings=FAST, now=lambda: NOW)
        p.client._sleep = lambda _: None
        factor = p.intensity("US-CAL-CISO", NOW - timedelta(hours=1), NOW)
        sent = s.requests[0][1]["authorization"]
    assert sent.startswith("Basic ")
    assert factor.fallback_reason is not None and f"HTTP {login_status}" in factor.fallback_reason
    assert sent not in factor.fallback_reason
    assert_clean(factor.fallback_reason, caplog.text)


def test_watttime_bearer_token_refused_without_the_token(
    catalogue: Catalogue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = {"/login": [(200, {"token": BEARER})], "/v3/": [(403, {})]}
    with leaky_server(answers) as s:
        p = WattTimeProvider(catalogue, "someone", PASSWORD, {"US-CAL-CISO": "CAISO_NORTH"},
                             base_url=s.url, settings=FAST, now=lambda: NOW)
        factor = p.intensity("US-CAL-CISO", NOW - timedelta(hours=1), NOW)
        logins = sum(1 for path, _ in s.requests if path == "/login")
    assert logins == 2  # refused bearer: one fresh login, then the fallback
    assert factor.fallback_reason is not None and "HTTP 403" in factor.fallback_reason
    assert_clean(factor.fallback_reason, caplog.text)


def _kubeconfig(tmp_path: Path, server: str, token_line: str) -> Path:
    p = tmp_path / "kubeconfig.yaml"
    p.write_text(f"""apiVersion: v1
kind: Config
current-context: c
clusters: [{{name: k, cluster: {{server: "{server}"}}}}]
contexts: [{{name: c, context: {{cluster: k, user: u}}}}]
users:
- name: u
  user:
    {token_line}
""")
    return p


def test_exporter_kubeconfig_yaml_errors_do_not_quote_the_token(tmp_path: Path) -> None:
    # PyYAML's own message quotes the offending line: here, the token
    p = _kubeconfig(tmp_path, "https://127.0.0.1:1", f"token: {TOKEN}: [")
    with pytest.raises(ConfigError) as info:
        from_kubeconfig(p)
    assert "line 9" in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is not None
    assert_clean(info.value)


@pytest.mark.parametrize("status", [401, 403, 500])
def test_exporter_api_client_errors_do_not_carry_the_bearer_token(tmp_path: Path, status: int) -> None:
    with leaky_server({"/api": [(status, {})]}) as s:
        ep = from_kubeconfig(_kubeconfig(tmp_path, s.url, f"token: {TOKEN}"))
        with pytest.raises(ApiError) as info:
            ApiClient(ep, timeout_s=5).get_json("/api/v1/pods", {})
        assert s.requests[0][1]["authorization"] == f"Bearer {TOKEN}"
    assert info.value.status == status
    assert str(info.value).startswith(f"HTTP {status}: refused /api/v1/pods")
    assert "[redacted]" in str(info.value)
    assert_clean(repr(ep), info.value, info.value.message)


def test_exporter_pod_watch_health_and_logs_carry_no_token(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The pod watch's health message becomes the exporter's source status; its warning is logged."""
    import threading

    from carbontrack.exporter.pods import PodCache
    from carbontrack.exporter.podwatch import Backoff, PodWatcher

    caplog.set_level(logging.DEBUG)
    told: list[tuple[bool, str]] = []
    down = threading.Event()

    def health(up: bool, message: str) -> None:
        told.append((up, message))
        down.set()

    with leaky_server({"/api": [(401, {})]}) as s:
        ep = from_kubeconfig(_kubeconfig(tmp_path, s.url, f"token: {TOKEN}"))
        watcher = PodWatcher(ApiClient(ep, timeout_s=5), "node-a", PodCache(), health=health,
                             backoff=Backoff(0.05, 0.05))
        watcher.start()
        try:
            assert down.wait(30)
        finally:
            watcher.stop()
    assert told[0][0] is False and told[0][1].startswith("ApiError: HTTP 401: refused /api/v1/pods")
    assert "pod watch" in caplog.text
    assert_clean(told, caplog.text)
