"""JsonHttpClient against a real local HTTP server: retries, backoff, 429, timeouts, cache."""

from __future__ import annotations

import socket

import pytest
from fakeapi_intensity import FakeApi, Reply

from carbontrack.intensity.providers.http import (
    HttpSettings,
    HttpStatusError,
    JsonHttpClient,
    ProviderUnavailable,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def client(api: FakeApi, sleeps: list[float], clock: FakeClock | None = None,
           **settings: float) -> JsonHttpClient:
    opts = {"timeout_s": 2.0, "retries": 3, "backoff_s": 0.5, "cache_ttl_s": 60.0, **settings}
    return JsonHttpClient(api.url, HttpSettings(**opts),
                          sleep=sleeps.append, clock=clock or FakeClock(), wall_clock=lambda: 0.0)


def test_json_is_returned_and_cached_per_url_until_ttl(fake_api: FakeApi) -> None:
    fake_api.add("/v", Reply(body={"n": 1}), Reply(body={"n": 2}))
    clock = FakeClock()
    c = client(fake_api, [], clock)
    assert c.get_json("v", {"a": "1"}) == {"n": 1}
    assert c.get_json("v", {"a": "1"}) == {"n": 1}  # from the cache
    assert len(fake_api.requests_to("/v")) == 1
    clock.t += 61
    assert c.get_json("v", {"a": "1"}) == {"n": 2}
    assert fake_api.requests_to("/v")[0].query == {"a": "1"}


def test_5xx_is_retried_with_exponential_backoff(fake_api: FakeApi) -> None:
    fake_api.add("/v", Reply(500, {"error": "boom"}), Reply(502, "bad gateway"),
                 Reply(503, ""), Reply(body=[1]))
    sleeps: list[float] = []
    assert client(fake_api, sleeps).get_json("v") == [1]
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(fake_api.requests_to("/v")) == 4


def test_retries_exhausted_names_the_last_error(fake_api: FakeApi) -> None:
    fake_api.add("/v", Reply(500, {"message": "database down"}))
    sleeps: list[float] = []
    with pytest.raises(ProviderUnavailable, match=r"HTTP 500: database down \(after 3 attempts\)"):
        client(fake_api, sleeps, retries=2, backoff_s=1.0, backoff_max_s=1.5).get_json("v")
    assert sleeps == [1.0, 1.5]  # capped by backoff_max_s


def test_429_waits_for_retry_after(fake_api: FakeApi) -> None:
    fake_api.add("/v", Reply(429, {"error": "slow down"}, {"Retry-After": "7"}), Reply(body={}))
    sleeps: list[float] = []
    assert client(fake_api, sleeps).get_json("v") == {}
    assert sleeps == [7.0]


def test_429_with_http_date_retry_after(fake_api: FakeApi) -> None:
    # wall clock is 0 (1970-01-01T00:00:00Z); the server asks us to come back 30 s later
    fake_api.add("/v", Reply(429, "", {"Retry-After": "Thu, 01 Jan 1970 00:00:30 GMT"}),
                 Reply(body={}))
    sleeps: list[float] = []
    client(fake_api, sleeps).get_json("v")
    assert sleeps == [30.0]


def test_429_asking_for_too_long_gives_up_at_once(fake_api: FakeApi) -> None:
    fake_api.add("/v", Reply(429, "", {"Retry-After": "3600"}))
    sleeps: list[float] = []
    with pytest.raises(ProviderUnavailable, match="rate-limited us for 3600 s"):
        client(fake_api, sleeps).get_json("v")
    assert sleeps == [] and len(fake_api.requests_to("/v")) == 1


def test_4xx_is_permanent_and_not_retried(fake_api: FakeApi) -> None:
    fake_api.add("/v", Reply(401, {"error": {"code": "401", "message": "bad token"}}))
    with pytest.raises(HttpStatusError, match=r"HTTP 401 .*bad token") as info:
        client(fake_api, []).get_json("v")
    assert info.value.status == 401
    assert len(fake_api.requests_to("/v")) == 1


def test_slow_server_times_out_and_is_retried(fake_api: FakeApi) -> None:
    fake_api.add("/v", Reply(body={}, delay_s=1.0))
    sleeps: list[float] = []
    c = client(fake_api, sleeps, timeout_s=0.1, retries=1)
    with pytest.raises(ProviderUnavailable, match=r"timed out after 0.1 s \(after 2 attempts\)"):
        c.get_json("v")
    assert c.requests_sent == 2 and sleeps == [0.5]


def test_malformed_json_is_reported_not_cached(fake_api: FakeApi) -> None:
    fake_api.add("/v", Reply(body="{not json"), Reply(body={"ok": True}))
    c = client(fake_api, [])
    with pytest.raises(ProviderUnavailable, match="malformed JSON"):
        c.get_json("v")
    assert c.get_json("v") == {"ok": True}


def test_connection_refused_is_temporary() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    sleeps: list[float] = []
    c = JsonHttpClient(f"http://127.0.0.1:{port}", HttpSettings(retries=1), sleep=sleeps.append)
    with pytest.raises(ProviderUnavailable, match="cannot connect"):
        c.get_json("v")
    assert sleeps == [0.5]


def test_base_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        JsonHttpClient("api.example.org")
