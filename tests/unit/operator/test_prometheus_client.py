"""The Prometheus client against a real local HTTP server that plays Prometheus' API,
including its failure modes: down, slow, garbage, errors."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

import pytest
from aiohttp import web
from carbontrack.operator.metrics import OperatorMetrics
from carbontrack.operator.prometheus import PrometheusClient, QueryError, parse_response
from prometheus_client import CollectorRegistry

from carbontrack.core.errors import TemporaryError

AT = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def vector(*samples: tuple[dict[str, str], str]) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": m, "value": [1772366400.0, v]} for m, v in samples]}}).encode()


Body = Callable[[str, OperatorMetrics, list[dict[str, str]]], Awaitable[None]]


async def with_server(handlers: list[Handler], body: Body) -> None:
    seen: list[dict[str, str]] = []
    calls = iter(handlers)

    async def route(request: web.Request) -> web.StreamResponse:
        seen.append(dict(await request.post()))
        return await next(calls)(request)

    app = web.Application()
    app.router.add_post("/api/v1/query", route)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await body(f"http://127.0.0.1:{port}", OperatorMetrics(CollectorRegistry()), seen)
    finally:
        await runner.cleanup()


def respond(status: int, payload: bytes) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(status=status, body=payload, content_type="application/json")
    return handler


def slow(seconds: float) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return web.Response(body=vector(), content_type="application/json")
    return handler


async def no_sleep(_: float) -> None:
    return None


def count(metrics: OperatorMetrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "carbontrack_operator_prometheus_queries_total", {"outcome": outcome})
    return value or 0.0


def test_query_sends_promql_and_time_and_parses_the_vector() -> None:
    async def body(url: str, metrics: OperatorMetrics, seen: list[dict[str, str]]) -> None:
        client = PrometheusClient(url, metrics, sleep=no_sleep)
        samples = await client.query("up", AT)
        await client.close()
        assert [(s.labels, s.value) for s in samples] == [({"component": "cpu"}, 1234.5)]
        assert seen == [{"query": "up", "time": "1772366400.000"}]
        assert count(metrics, "ok") == 1

    asyncio.run(with_server([respond(200, vector(({"component": "cpu"}, "1234.5")))], body))


def test_garbage_then_success_is_retried_with_backoff() -> None:
    async def body(url: str, metrics: OperatorMetrics, seen: list[dict[str, str]]) -> None:
        sleeps: list[float] = []

        async def record(s: float) -> None:
            sleeps.append(s)

        client = PrometheusClient(url, metrics, attempts=3, backoff_initial_s=0.5, sleep=record)
        samples = await client.query("up", AT)
        await client.close()
        assert [s.value for s in samples] == [7.0]
        assert sleeps == [0.5, 1.0]
        assert (count(metrics, "error"), count(metrics, "ok")) == (2, 1)

    asyncio.run(with_server(
        [respond(200, b"<html>proxy error</html>"), respond(503, b'{"status":"error"}'),
         respond(200, vector(({}, "7")))], body))


@pytest.mark.parametrize(
    ("status", "payload", "fragment"),
    [
        (200, b"not json", "non-JSON"),
        (200, b"[1, 2]", "unexpected JSON"),
        (503, b'{"status":"error","errorType":"unavailable","error":"shutting down"}', "unavailable"),
        (422, b'{"status":"error","errorType":"execution","error":"query timed out"}', "timed out"),
        (200, b'{"status":"success","data":{"resultType":"matrix","result":[]}}', "not an instant vector"),
        (200, b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{}}]}}', "malformed"),
        (200, b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}',
         "non-finite"),
        (200, b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"+Inf"]}]}}',
         "non-finite"),
        (200, b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}',
         "malformed"),
    ],
)
def test_garbage_is_a_temporary_error_never_a_number(status: int, payload: bytes, fragment: str) -> None:
    with pytest.raises(TemporaryError, match=fragment):
        parse_response(status, payload)


def test_bad_query_is_not_retried() -> None:
    with pytest.raises(QueryError, match="bad_data"):
        parse_response(400, b'{"status":"error","errorType":"bad_data","error":"parse error"}')


def test_slow_prometheus_times_out_as_temporary_error() -> None:
    async def body(url: str, metrics: OperatorMetrics, seen: list[dict[str, str]]) -> None:
        client = PrometheusClient(url, metrics, timeout_s=0.1, attempts=2, sleep=no_sleep)
        with pytest.raises(TemporaryError, match="unreachable or slow"):
            await client.query("up", AT)
        await client.close()
        assert count(metrics, "error") == 2

    asyncio.run(with_server([slow(0.4), slow(0.4)], body))


def test_unreachable_prometheus_is_a_temporary_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here now

    async def run() -> None:
        client = PrometheusClient(f"http://127.0.0.1:{port}", OperatorMetrics(CollectorRegistry()),
                                  attempts=2, sleep=no_sleep)
        with pytest.raises(TemporaryError, match="unreachable or slow"):
            await client.query("up", AT)
        await client.close()

    asyncio.run(run())
