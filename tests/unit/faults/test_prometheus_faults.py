"""Prometheus down, slow or returning garbage, and clock skew between Prometheus (which
stamps scrapes) and the operator: the operator's Accountant, talking HTTP to a real local
server that plays Prometheus' query API, either waits (TemporaryError / NotReady) or
returns exactly the right numbers. It never returns a wrong one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp import web
from carbontrack.operator.accounting import Accountant, Accounting, NotReady
from carbontrack.operator.jobs import job_facts
from carbontrack.operator.metrics import OperatorMetrics
from carbontrack.operator.prometheus import PrometheusClient
from carbontrack.operator.settings import OperatorSettings
from prometheus_client import CollectorRegistry

from carbontrack.core.errors import TemporaryError

FINISHED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
JOB_UID = "5f0c1b2a-0000-4000-8000-00000000f00d"
CPU_J, GPU_J = 3.6e6, 7.2e6  # 1 kWh + 2 kWh
G_PER_KWH, PUE = 400.0, 1.2
JOB = job_facts({
    "metadata": {"uid": JOB_UID, "namespace": "ml", "name": "train",
                 "creationTimestamp": "2026-03-01T10:00:00Z"},
    "spec": {"template": {"spec": {"containers": [{"name": "t"}]}}},
    "status": {"startTime": "2026-03-01T10:00:00Z", "completionTime": "2026-03-01T12:00:00Z",
               "conditions": [{"type": "Complete", "status": "True",
                               "lastTransitionTime": "2026-03-01T12:00:00Z"}]},
})
KINDS = ("energy", "freshness", "co2e", "pue", "intensity", "pods")


def kind_of(query: str) -> str:
    if query.startswith("sum by") and "energy_joules" in query:
        return "energy"
    if query.startswith("sum by") and "co2e" in query:
        return "co2e"
    if query.startswith("timestamp("):
        return "freshness"
    if query.startswith("max(timestamp("):
        return "any_freshness"
    if query.startswith("avg_over_time(carbontrack_pue"):
        return "pue"
    if query.startswith("avg_over_time(carbontrack_grid"):
        return "intensity"
    if query.startswith("count by (pod_uid"):
        return "pods"
    raise AssertionError(f"unexpected query {query}")


def vector(samples: list[tuple[dict[str, str], Any]], at: float) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": m, "value": [at, v if isinstance(v, str) else repr(float(v))]}
        for m, v in samples]}}


def good_answer(kind: str, at: float, scraped_at: float) -> dict[str, Any]:
    node = {"node": "node-1"}
    facility = PUE * G_PER_KWH / 3.6e6  # g per IT joule
    answers: dict[str, list[tuple[dict[str, str], Any]]] = {
        "energy": [({**node, "component": "cpu", "method": "measured"}, CPU_J),
                   ({**node, "component": "gpu", "method": "measured"}, GPU_J)],
        "co2e": [({**node, "component": "cpu", "method": "measured"}, CPU_J * facility),
                 ({**node, "component": "gpu", "method": "measured"}, GPU_J * facility)],
        "freshness": [(node, scraped_at)],
        "any_freshness": [({}, scraped_at)],
        "pue": [(node, PUE)],
        "intensity": [({**node, "zone": "DE", "source": "test", "basis": "average"},
                       G_PER_KWH)],
        "pods": [({"pod_uid": "p1", "component": "cpu"}, 1),
                 ({"pod_uid": "p1", "component": "gpu"}, 1)],
    }
    return vector(answers[kind], at)


Fault = Callable[[str, dict[str, Any]], Awaitable[web.StreamResponse]]


def body(payload: bytes, status: int = 200) -> web.Response:
    return web.Response(status=status, body=payload, content_type="application/json")


async def _slow(_k: str, good: dict[str, Any]) -> web.StreamResponse:
    await asyncio.sleep(1.0)  # twice the client's 0.5 s timeout
    return body(json.dumps(good).encode())


def _mutate(fn: Callable[[dict[str, Any]], None]) -> Fault:
    async def fault(_k: str, good: dict[str, Any]) -> web.StreamResponse:
        doc = json.loads(json.dumps(good))
        fn(doc)
        return body(json.dumps(doc).encode())
    return fault


def _set_values(value: str) -> Callable[[dict[str, Any]], None]:
    def fn(doc: dict[str, Any]) -> None:
        for item in doc["data"]["result"]:
            item["value"][1] = value
    return fn


def _const(payload: bytes, status: int = 200) -> Fault:
    async def fault(_k: str, _g: dict[str, Any]) -> web.StreamResponse:
        return body(payload, status)
    return fault


FAULTS: dict[str, Fault] = {
    "http-500": _const(b'{"status":"error","errorType":"internal","error":"boom"}', 500),
    "http-503-html": _const(b"<html>Service Unavailable</html>", 503),
    "malformed-json": _const(b'{"status":"success","data":{"resultType":"vector","result":[{'),
    "not-json": _const(b"\x00\xff garbage"),
    "json-array": _const(b"[1,2,3]"),
    "matrix": _mutate(lambda d: d["data"].update(resultType="matrix")),
    "no-result": _mutate(lambda d: d["data"].pop("result")),
    "nan": _mutate(_set_values("NaN")),
    "+inf": _mutate(_set_values("+Inf")),
    "not-a-number": _mutate(_set_values("lots")),
    "value-missing": _mutate(lambda d: [i.pop("value") for i in d["data"]["result"]]),
    "metric-not-a-dict": _mutate(lambda d: [i.update(metric=["x"]) for i in d["data"]["result"]]),
    "status-error-200": _mutate(lambda d: d.update(status="error", errorType="timeout")),
    "slow": _slow,
}


class FakePrometheus:
    """Answers the operator's queries like Prometheus would, with one fault injected on one
    query kind until ``heal()``. ``scraped_at``: the timestamp Prometheus reports for the
    latest scrape of the node (Prometheus' clock, not the operator's)."""

    def __init__(self, scraped_at: float) -> None:
        self.scraped_at = scraped_at
        self.fault: tuple[str, Fault] | None = None
        self.seen: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/query", self._route)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _route(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        query, at = str(form["query"]), float(str(form["time"]))
        kind = kind_of(query)
        self.seen.append(kind)
        good = good_answer(kind, at, self.scraped_at)
        if self.fault is not None and self.fault[0] == kind:
            return await self.fault[1](kind, good)
        return body(json.dumps(good).encode())


async def no_sleep(_: float) -> None:
    return None


def accountant(url: str, clock: Callable[[], datetime]) -> tuple[Accountant, PrometheusClient]:
    settings = OperatorSettings(prometheus_url=url, scrape_interval_s=30.0,
                                accounting_delay_s=5.0, prometheus_timeout_s=0.5)
    client = PrometheusClient(url, OperatorMetrics(CollectorRegistry()), timeout_s=0.5,
                              attempts=2, sleep=no_sleep)
    return Accountant(client, settings, clock), client


def assert_exact(acc: Accounting) -> None:
    assert not acc.no_data
    assert acc.energy_kwh == pytest.approx(3.0, rel=1e-12)
    assert acc.co2e_grams == pytest.approx(3.0 * PUE * G_PER_KWH, rel=1e-12)
    assert acc.intensity_g_per_kwh == pytest.approx(G_PER_KWH, rel=1e-12)
    assert acc.pue == {"node-1": PUE}
    assert acc.pods == 1


CASES = [(k, f) for k in KINDS for f in FAULTS]


@pytest.mark.parametrize(("kind", "fault"), CASES, ids=[f"{k}-{f}" for k, f in CASES])
def test_garbage_from_prometheus_is_never_a_number(kind: str, fault: str) -> None:
    async def run() -> None:
        now = FINISHED + timedelta(minutes=2)
        prom = FakePrometheus(scraped_at=(FINISHED + timedelta(seconds=60)).timestamp())
        await prom.start()
        acct, client = accountant(f"http://127.0.0.1:{prom.port}", lambda: now)
        try:
            prom.fault = (kind, FAULTS[fault])
            with pytest.raises(TemporaryError):
                got = await acct.account(JOB)
                pytest.fail(f"returned a number from a faulty Prometheus: {got.report()}")
            assert kind in prom.seen
            prom.fault = None  # healed: the next try is exact
            assert_exact(await acct.account(JOB))
        finally:
            await client.close()
            await prom.stop()

    asyncio.run(run())


def test_prometheus_down_then_up() -> None:
    async def run() -> None:
        now = FINISHED + timedelta(minutes=2)
        prom = FakePrometheus(scraped_at=(FINISHED + timedelta(seconds=60)).timestamp())
        await prom.start()
        port = prom.port
        await prom.stop()  # nothing listens on the port any more
        acct, client = accountant(f"http://127.0.0.1:{port}", lambda: now)
        try:
            with pytest.raises(TemporaryError, match="unreachable"):
                await acct.account(JOB)
        finally:
            await client.close()
        prom2 = FakePrometheus(scraped_at=(FINISHED + timedelta(seconds=60)).timestamp())
        await prom2.start()
        acct, client = accountant(f"http://127.0.0.1:{prom2.port}", lambda: now)
        try:
            assert_exact(await acct.account(JOB))
        finally:
            await client.close()
            await prom2.stop()

    asyncio.run(run())


@pytest.mark.parametrize("skew_s", [-600.0, -35.0, 0.0, 35.0, 600.0, 86400.0])
def test_operator_clock_skew_waits_or_is_exact(skew_s: float) -> None:
    """Prometheus' last scrape of the node happened 20 s after the Job finished (true time).
    The operator's clock is off by ``skew_s``. Too early (its clock behind, or the last
    scrape not yet past completion + scrape interval): NotReady. Never a partial sum."""

    async def run() -> None:
        true_now = FINISHED + timedelta(seconds=90)
        prom = FakePrometheus(scraped_at=(FINISHED + timedelta(seconds=20)).timestamp())
        await prom.start()
        acct, client = accountant(f"http://127.0.0.1:{prom.port}",
                                  lambda: true_now + timedelta(seconds=skew_s))
        try:
            # a scrape 20 s after completion is not past completion + 30 s interval: wait
            with pytest.raises(NotReady):
                await acct.account(JOB)
            prom.scraped_at = (FINISHED + timedelta(seconds=65)).timestamp()
            if skew_s < -55:  # the operator's clock says the Job finished < 35 s ago
                with pytest.raises(NotReady):
                    await acct.account(JOB)
            else:
                assert_exact(await acct.account(JOB))
        finally:
            await client.close()
            await prom.stop()

    asyncio.run(run())


def test_co2e_missing_a_component_is_not_accepted() -> None:
    async def run() -> None:
        now = FINISHED + timedelta(minutes=2)
        prom = FakePrometheus(scraped_at=(FINISHED + timedelta(seconds=60)).timestamp())
        await prom.start()
        acct, client = accountant(f"http://127.0.0.1:{prom.port}", lambda: now)
        try:
            prom.fault = ("co2e", _mutate(lambda d: d["data"].update(
                result=[r for r in d["data"]["result"] if r["metric"]["component"] != "gpu"])))
            with pytest.raises(TemporaryError):
                await acct.account(JOB)
        finally:
            await client.close()
            await prom.stop()

    asyncio.run(run())
