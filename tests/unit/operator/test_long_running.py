"""Per-slice accounting of long-running workloads (operator/long_running.py) against a
Prometheus that answers over real HTTP from a model of counters sampled every 2 s, and the
record store's optimistic-concurrency protocol held in memory: exactly once on retry, and a
restart that catches up the missed slices with no gap and no double count."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from carbontrack.operator.functional_unit import parse_selector
from carbontrack.operator.kube import Conflict, Gone
from carbontrack.operator.long_running import (
    CO2E_TOTAL,
    LAST_SLICE,
    LongRunningAccounting,
    LongRunningMetrics,
)
from carbontrack.operator.metrics import OperatorMetrics
from carbontrack.operator.prometheus import PrometheusClient
from carbontrack.operator.record_store import RecordStore
from carbontrack.operator.settings import OperatorSettings
from carbontrack.operator.slice_accounting import SliceAccountant
from carbontrack.operator.slice_cursor import SliceCursor
from carbontrack.operator.slices import EPOCH, Slice, contiguous, parse_slice_key
from prometheus_client import CollectorRegistry

from carbontrack.core.errors import TemporaryError
from carbontrack.core.records import parse_object

UTC = timezone.utc
CREATED = datetime(2026, 12, 7, 10, 0, 20, tzinfo=UTC)
LENGTH = 60.0
G_PER_J = 0.0002


@dataclass
class Series:
    labels: dict[str, str]
    start: float  # epoch s of the first sample
    rate: float  # counter units per second
    end: float = 1e12
    gap: tuple[float, float] = (0.0, 0.0)  # no samples in (gap[0], gap[1]): an exporter down
    # the counter stops growing here (its container ended) and is still exported, flat, up
    # to ``end``: the exporter keeps a finished container's series for --retention
    frozen: float = 1e12

    def last_sample(self, t: float) -> float | None:
        last = min(math.floor(t / 2) * 2, math.floor(self.end / 2) * 2)
        if self.gap[0] < last < self.gap[1]:
            last = math.floor(self.gap[0] / 2) * 2
        return last if last >= self.start else None

    def value_at(self, t: float) -> float | None:
        """The counter's value at its last sample at or before t (samples every 2 s)."""
        last = self.last_sample(t)
        return None if last is None else self.rate * (min(last, self.frozen) - self.start)

    def sample_in(self, t: float, range_s: float) -> float | None:
        last = self.last_sample(t)
        return None if last is None or last < t - range_s else self.value_at(t)


def matches(labels: Mapping[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for key, op, value in matchers:
        have = labels.get(key, "")
        ok = {"=": have == value, "!=": have != value,
              "=~": re.fullmatch(value, have) is not None,
              "!~": re.fullmatch(value, have) is None}[op]
        if not ok:
            return False
    return True


@dataclass
class ModelPrometheus:
    """Answers the operator's slice queries from ``series`` like Prometheus 2.x would."""

    series: dict[str, list[Series]]
    now: float
    seen: list[str] = field(default_factory=list)
    port: int = 0
    runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/query", self._route)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    def answer(self, query: str, at: float) -> list[tuple[dict[str, str], float]] | str:
        stop = re.fullmatch(r"max\(min_over_time\(\(timestamp\((.*)\) and (.*) >= max_over_time\((.*)"
                            r"\[(\d+)s\] @ ([\d.]+)\)\)\[(\d+)s:(\d+)ms\]\)\)", query)
        if stop:
            return self._stop(stop.group(1), float(stop.group(4)), float(stop.group(5)), at,
                              float(stop.group(7)) / 1000)
        m = re.fullmatch(r"(max_over_time|last_over_time|avg_over_time)\((.*)\[(\d+)s\]\)", query)
        if m:
            metric, matchers = parse_selector(m.group(2))
            for _, op, value in matchers:
                if op in ("=~", "!~"):
                    try:
                        re.compile(value)
                    except re.error as err:  # Prometheus: 400 bad_data
                        return f"invalid regular expression {value!r}: {err}"
            if metric == "carbontrack_pue":
                return [({"node": "n1"}, 1.5)]
            if metric == "carbontrack_grid_carbon_intensity_grams_per_kwh":
                return [({"node": "n1", "zone": "DE", "source": "catalogue", "basis": "location"}, 400.0)]
            out = []
            for s in self.series.get(metric, []):
                value = s.sample_in(at, float(m.group(3)))
                if value is not None and matches(s.labels, matchers):
                    out.append((dict(s.labels), value))
            return out
        if query.startswith("count by (pod_uid, component) ("):
            got = self.answer(query[len("count by (pod_uid, component) ("):-1], at)
            assert isinstance(got, list)
            return [({"pod_uid": lab["pod_uid"], "component": lab["component"]}, 1.0) for lab, _ in got]
        if query.startswith("timestamp(carbontrack_pue") or query == "max(timestamp(carbontrack_pue))":
            return [({"node": "n1"}, float(math.floor(min(at, self.now) / 2) * 2))]
        return f"unknown query {query}"

    def _stop(self, selector: str, range_s: float, pinned: float, at: float,
              step_s: float) -> list[tuple[dict[str, str], float]]:
        """Prometheus' evaluation of slice_orphans.stop_query: at each subquery step (multiples
        of the step) the series' latest sample (within the 5-minute look-back delta), kept
        where its value has reached the series' maximum over the range pinned at ``pinned``;
        the earliest such timestamp per series, the latest over the series."""
        metric, matchers = parse_selector(selector)
        stops = []
        for s in self.series.get(metric, []):
            final = s.sample_in(pinned, range_s)
            if final is None or not matches(s.labels, matchers):
                continue
            steps = range(math.floor((at - range_s) / step_s) + 1, math.floor(at / step_s) + 1)
            hits = [last for k in steps if (last := s.last_sample(k * step_s)) is not None
                    and last >= k * step_s - 300 and (s.value_at(last) or 0.0) >= final]
            if hits:
                stops.append(min(hits))
        return [({}, max(stops))] if stops else []

    async def _route(self, request: web.Request) -> web.Response:
        form = await request.post()
        query, at = str(form["query"]), float(str(form["time"]))
        self.seen.append(query)
        got = self.answer(query, at)
        if isinstance(got, str):
            return web.Response(status=400, text=json.dumps(
                {"status": "error", "errorType": "bad_data", "error": got}))
        result = [{"metric": labels, "value": [at, repr(v)]} for labels, v in got]
        return web.json_response({"status": "success",
                                  "data": {"resultType": "vector", "result": result}})


class MemoryRecords:
    """The CarbonRecord API's contract: create fails on an existing name, an entries patch
    fails when the resourceVersion moved on."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.adds = 0

    async def get_record(self, namespace: str, name: str) -> dict[str, Any]:
        if (namespace, name) not in self.objects:
            raise Gone(name)
        return json.loads(json.dumps(self.objects[(namespace, name)]))

    async def create_record(self, body: Mapping[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.objects:
            raise Conflict(key[1])
        obj = json.loads(json.dumps(body))
        obj["metadata"]["resourceVersion"] = "1"
        self.objects[key] = obj
        self.adds += len(obj["spec"]["entries"])
        return obj

    async def add_record_entries(self, namespace: str, name: str, entries: Mapping[str, Any],
                                 resource_version: str) -> dict[str, Any]:
        obj = self.objects[(namespace, name)]
        if obj["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(name)
        obj["spec"]["entries"].update(json.loads(json.dumps(entries)))
        obj["metadata"]["resourceVersion"] = str(int(resource_version) + 1)
        self.adds += len(entries)
        return obj

    async def list_records(self, namespace: str, label_selector: str, limit: int,
                           token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        return [o for (ns, _), o in self.objects.items() if ns == namespace], None

    def entries(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for obj in self.objects.values():
            out.update(parse_object(obj).entries)
        return out


class Workloads:
    def __init__(self, deployment: dict[str, Any], replicasets: list[dict[str, Any]]) -> None:
        self.deployment = deployment
        self.replicasets = replicasets
        self.fail_patches = 0
        self.patches = 0
        self.records: MemoryRecords | None = None  # what a cluster-wide list of CarbonRecords sees

    async def namespaces_with(self, group: str, version: str, plural: str, label_selector: str) -> set[str]:
        assert plural == "carbonrecords"
        return {ns for ns, _ in self.records.objects} if self.records else set()

    async def served(self, group: str, version: str, plural: str) -> bool:
        return False

    async def list(self, group: str, version: str, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        return {"deployments": [self.deployment], "replicasets": self.replicasets}.get(plural, [])

    async def patch_annotations(self, group: str, version: str, plural: str, namespace: str,
                                name: str, uid: str, annotations: Mapping[str, str]) -> None:
        if self.fail_patches:
            self.fail_patches -= 1
            raise TemporaryError("API server restarting")
        self.patches += 1
        self.deployment["metadata"].setdefault("annotations", {}).update(annotations)


class Events:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str]] = []

    async def post_event(self, involved: Mapping[str, str], reason: str, message: str,
                         warning: bool, now: datetime) -> None:
        self.posted.append((reason, message))


def deployment(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"uid": "dep-1", "namespace": "ns", "name": "llm", "labels": {"team": "a"},
                         "annotations": dict(annotations or {}),
                         "creationTimestamp": CREATED.isoformat().replace("+00:00", "Z")},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "s"}]}}}}


def model(now: float) -> ModelPrometheus:
    t0 = CREATED.timestamp()
    energy = [
        Series({"namespace": "ns", "owner_uid": "rs-1", "pod_uid": "a", "node": "n1",
                "component": "cpu", "method": "measured"}, t0 + 6, 10.0),
        Series({"namespace": "ns", "owner_uid": "rs-2", "pod_uid": "b", "node": "n1",
                "component": "cpu", "method": "measured"}, t0 + 70, 20.0, end=t0 + 150),
        # a pod whose exporter stopped for 100 s (10:02:00-10:03:40): its counter grew meanwhile
        Series({"namespace": "ns", "owner_uid": "rs-1", "pod_uid": "c", "node": "n1",
                "component": "cpu", "method": "measured"}, t0 + 10, 5.0, gap=(t0 + 100, t0 + 200)),
        # another namespace's pod with the same owner UID: never counted
        Series({"namespace": "other", "owner_uid": "rs-1", "pod_uid": "x", "node": "n1",
                "component": "cpu", "method": "measured"}, t0, 1000.0),
    ]
    co2e = [Series(s.labels, s.start, s.rate * G_PER_J, s.end, s.gap) for s in energy]
    tokens = [Series({"namespace": "ns", "pod": "llm-a", "model_name": "m"}, t0 + 6, 3.0),
              Series({"namespace": "other", "pod": "spy", "model_name": "m"}, t0, 999.0)]
    return ModelPrometheus({"carbontrack_container_energy_joules_total": energy,
                            "carbontrack_container_co2e_grams_total": co2e,
                            "vllm:generation_tokens_total": tokens}, now)


@dataclass
class Rig:
    prom: ModelPrometheus
    records: MemoryRecords
    workloads: Workloads
    events: Events
    now: list[datetime]
    clients: list[PrometheusClient] = field(default_factory=list)

    def operator(self, length: float = LENGTH, annotate: bool = True) -> LongRunningAccounting:
        """A fresh operator (nothing in memory), as after a restart. ``annotate``: the chart's
        operator.longRunning.annotate (off by default there; most tests here check the copy)."""
        url = f"http://127.0.0.1:{self.prom.port}"
        settings = OperatorSettings(prometheus_url=url, scrape_interval_s=1.0, accounting_delay_s=1.0,
                                    slice_length_s=length, annotate_long_running=annotate)
        client = PrometheusClient(url, OperatorMetrics(CollectorRegistry()), timeout_s=2.0)
        self.clients.append(client)
        clock = lambda: self.now[0]  # noqa: E731
        book = SimpleNamespace(views={})
        return LongRunningAccounting(settings, self.workloads, self.events,  # type: ignore[arg-type]
                                     SliceAccountant(client, settings, clock), RecordStore(self.records),
                                     book, LongRunningMetrics(CollectorRegistry()), clock)  # type: ignore[arg-type]

    def at(self, when: datetime) -> None:
        self.now[0] = when
        self.prom.now = when.timestamp()

    def total(self, metric: str, at: datetime) -> float:
        """The counters' value at ``at`` (what the slices must add up to)."""
        values = [s.value_at(at.timestamp()) for s in self.prom.series[metric]
                  if s.labels["namespace"] == "ns"]
        return math.fsum(v for v in values if v is not None)


def rig(annotations: dict[str, str] | None = None) -> Rig:
    rs = [{"metadata": {"uid": u, "ownerReferences": [{"uid": "dep-1", "controller": True}]}}
          for u in ("rs-1", "rs-2")]
    start = CREATED + timedelta(minutes=3)
    records = MemoryRecords()
    workloads = Workloads(deployment(annotations), rs)
    workloads.records = records
    return Rig(model(start.timestamp()), records, workloads, Events(), [start])


def slices_of(records: MemoryRecords) -> list[tuple[Slice, Any]]:
    out = []
    for key, entry in records.entries().items():
        parsed = parse_slice_key(key)
        assert parsed is not None and parsed[0] == "dep-1"
        out.append((Slice(parsed[1], entry.finished_at), entry))
    return sorted(out, key=lambda pair: pair[0])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_slices_are_recorded_once_contiguous_and_add_up_to_the_counters() -> None:
    async def go() -> None:
        r = rig()
        await r.prom.start()
        op = r.operator()
        await op.tick()
        await op.tick()  # the same slices again: nothing new
        got = slices_of(r.records)
        # created 10:00:20; at 10:03:20 the slices 10:00, 10:01, 10:02 have settled
        assert [p.start for p, _ in got] == [CREATED.replace(second=0) + timedelta(minutes=i) for i in range(3)]
        assert contiguous([p for p, _ in got]) and r.records.adds == 3
        end = got[-1][0].end
        total = math.fsum(e.co2e_grams for _, e in got)
        assert total == pytest.approx(r.total("carbontrack_container_co2e_grams_total", end), rel=1e-12)
        for piece, entry in got:  # each slice: end minus start of the counters
            expected = r.total("carbontrack_container_co2e_grams_total", piece.end) \
                - r.total("carbontrack_container_co2e_grams_total", piece.start)
            assert entry.co2e_grams == pytest.approx(expected, rel=1e-12)
        ann = r.workloads.deployment["metadata"]["annotations"]
        assert ann[LAST_SLICE] == str(int((got[-1][0].start - EPOCH).total_seconds()))
        assert float(ann[CO2E_TOTAL]) == pytest.approx(total, rel=1e-5)
        for c in r.clients:
            await c.close()

    run(go())


def test_without_annotating_nothing_is_patched_and_a_restart_resumes_from_the_records() -> None:
    """The default (no patch right on Deployments): the records alone carry the accounting, and a
    restarted operator walks them instead of reading the hint."""
    async def go() -> None:
        r = rig()
        await r.prom.start()
        await r.operator(annotate=False).tick()
        assert r.records.adds == 3 and r.workloads.patches == 0
        assert LAST_SLICE not in r.workloads.deployment["metadata"].get("annotations", {})
        r.at(CREATED + timedelta(minutes=7))
        await r.operator(annotate=False).tick()  # restart: no hint, no memory
        got = slices_of(r.records)
        assert r.records.adds == 7 and len(got) == 7 and contiguous([p for p, _ in got])
        end = got[-1][0].end
        assert math.fsum(e.co2e_grams for _, e in got) == pytest.approx(
            r.total("carbontrack_container_co2e_grams_total", end), rel=1e-9)
        assert r.workloads.patches == 0
        for c in r.clients:
            await c.close()

    run(go())


def test_a_retry_after_a_crash_between_record_and_annotation_writes_nothing_twice() -> None:
    async def go() -> None:
        r = rig()
        await r.prom.start()
        r.workloads.fail_patches = 1
        op = r.operator()
        await op.tick()  # slice 1 recorded, its annotation refused: the round stops there
        assert r.records.adds == 1 and r.workloads.patches == 0
        energy_queries = sum("energy_joules" in q for q in r.prom.seen)
        await r.operator().tick()  # a fresh operator (restart) retries
        got = slices_of(r.records)
        assert r.records.adds == 3 and len(got) == 3 and contiguous([p for p, _ in got])
        # the first slice came from its record, not from Prometheus again: 2 new slices' queries
        # (energy at both ends, pods), plus 10:01's look-back for pod b, new in that slice
        assert sum("energy_joules" in q for q in r.prom.seen) - energy_queries == 2 * 3 + 1
        for c in r.clients:
            await c.close()

    run(go())


@pytest.mark.parametrize("hint", ["", "99999999999", "not-a-number",
                                  "9" * 20, "\u00b2"])  # overflows timedelta; isdigit, not int
def test_a_restart_catches_up_the_slices_missed_while_down(hint: str) -> None:
    async def go() -> None:
        r = rig()
        await r.prom.start()
        await r.operator().tick()
        assert len(r.records.entries()) == 3
        # the operator is down for four slices; its hint is lost or forged on the way
        if hint:
            r.workloads.deployment["metadata"]["annotations"][LAST_SLICE] = hint
        else:
            r.workloads.deployment["metadata"]["annotations"].pop(LAST_SLICE)
        r.at(CREATED + timedelta(minutes=7))
        await r.operator().tick()
        got = slices_of(r.records)
        assert len(got) == 7 and r.records.adds == 7 and contiguous([p for p, _ in got])
        end = got[-1][0].end
        for metric, attr in (("carbontrack_container_co2e_grams_total", "co2e_grams"),
                             ("carbontrack_container_energy_joules_total", "energy_kwh")):
            total = math.fsum(getattr(e, attr) for _, e in got) * (3.6e6 if attr == "energy_kwh" else 1)
            assert total == pytest.approx(r.total(metric, end), rel=1e-9), metric
        # the running total on the workload is the records' sum
        cumulative = got[-1][1].data["slice"]["cumulativeCo2eGrams"]
        assert cumulative == pytest.approx(math.fsum(e.co2e_grams for _, e in got), rel=1e-12)
        for c in r.clients:
            await c.close()

    run(go())


def test_a_slice_end_that_overflows_in_utc_is_no_hint() -> None:
    """Namespace users can write the hint's slice-end: a time that is valid ISO 8601 but
    overflows in UTC falls back to the grid, and the round goes on."""
    async def go() -> None:
        r = rig()
        await r.prom.start()
        await r.operator().tick()
        r.workloads.deployment["metadata"]["annotations"]["carbontrack.io/slice-end"] = \
            "0001-01-01T00:00:00+01:00"
        r.at(CREATED + timedelta(minutes=5))
        await r.operator().tick()
        got = slices_of(r.records)
        assert len(got) == 5 and r.records.adds == 5 and contiguous([p for p, _ in got])
        for c in r.clients:
            await c.close()

    run(go())


def test_a_workload_failing_unexpectedly_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> None:
        r = rig()
        broken = deployment()
        broken["metadata"].update(uid="dep-0", name="broken")
        listed = r.workloads.list

        async def listing(group: str, version: str, plural: str, namespace: str | None) -> list[dict[str, Any]]:
            got = await listed(group, version, plural, namespace)
            return [broken, *got] if plural == "deployments" else got  # the broken one first

        real = SliceCursor.latest

        async def latest(self: SliceCursor, facts: Any, now: datetime) -> Any:
            if facts.uid == "dep-0":
                raise RuntimeError("something nobody foresaw")
            return await real(self, facts, now)

        monkeypatch.setattr(r.workloads, "list", listing)
        monkeypatch.setattr(SliceCursor, "latest", latest)
        await r.prom.start()
        await r.operator().tick()
        assert [p.start for p, _ in slices_of(r.records)] == [
            CREATED.replace(second=0) + timedelta(minutes=i) for i in range(3)]
        for c in r.clients:
            await c.close()

    run(go())


def test_functional_units_come_from_the_workloads_namespace_only() -> None:
    async def go() -> None:
        r = rig({"carbontrack.io/functional-unit": "token",
                 "carbontrack.io/functional-unit-query": 'vllm:generation_tokens_total{model_name="m"}'})
        await r.prom.start()
        await r.operator().tick()
        got = slices_of(r.records)
        counts = [e.data["slice"]["functionalUnit"]["count"] for _, e in got]
        t0 = CREATED.timestamp() + 6
        series = Series({}, t0, 3.0)

        def value(t: datetime) -> float:
            return series.value_at(t.timestamp()) or 0.0

        assert counts == [value(p.end) - value(p.start) for p, _ in got]
        assert all(e.data["inputs"]["carbontrack.io/functional-unit"] == "token" for _, e in got)
        assert r.events.posted == []
        # the unit never changes what CO2e is counted: each slice is the counters' end - start
        g = "carbontrack_container_co2e_grams_total"
        assert [e.co2e_grams for _, e in got] == pytest.approx(
            [r.total(g, p.end) - r.total(g, p.start) for p, _ in got], rel=1e-12)
        for c in r.clients:
            await c.close()

    run(go())


@pytest.mark.parametrize(("unit", "recorded", "events"), [
    (" token ", "token", set()),  # recorded as validated, not as written
    ("slice", "slice", {"FunctionalUnitInvalid"}),  # reports' name for a slice without units
])
def test_the_recorded_unit_name_is_the_validated_one(unit: str, recorded: str, events: set[str]) -> None:
    async def go() -> None:
        r = rig({"carbontrack.io/functional-unit": unit,
                 "carbontrack.io/functional-unit-query": 'vllm:generation_tokens_total{model_name="m"}'})
        await r.prom.start()
        await r.operator().tick()
        got = slices_of(r.records)
        assert len(got) == 3
        assert {e.data["inputs"]["carbontrack.io/functional-unit"] for _, e in got} == {recorded}
        assert {why for why, _ in r.events.posted} == events
        # a slice with unit data names its unit; one without counts 1 "slice"
        counts = {e.data["inputs"]["carbontrack.io/functional-units"] for _, e in got}
        assert (counts == {"1"}) == bool(events)
        for c in r.clients:
            await c.close()

    run(go())


@pytest.mark.parametrize(("query", "reason"), [
    ('vllm:generation_tokens_total{namespace="other"}', "FunctionalUnitInvalid"),
    ("sum(rate(x[5m]))", "FunctionalUnitInvalid"),
    ("no_such_counter_total", "FunctionalUnitNoData"),
    ('vllm:generation_tokens_total{model_name=~"("}', "FunctionalUnitInvalid"),  # Prometheus refuses it
])
def test_a_bad_functional_unit_gives_an_event_and_the_slice_is_still_accounted(query: str, reason: str) -> None:
    async def go() -> None:
        r = rig({"carbontrack.io/functional-unit-query": query})
        await r.prom.start()
        await r.operator().tick()
        got = slices_of(r.records)
        assert len(got) == 3 and all(e.co2e_grams and e.co2e_grams > 0 for _, e in got)
        assert all(e.data["inputs"]["carbontrack.io/functional-units"] == "1" for _, e in got)
        assert {why for why, _ in r.events.posted} == {reason}
        assert "accounted by energy only" in r.events.posted[0][1]
        for c in r.clients:
            await c.close()

    run(go())


class KServe(Workloads):
    """An InferenceService (its CRD served) whose controller made the Deployment dep-1."""

    def __init__(self) -> None:
        dep = deployment()
        dep["metadata"]["ownerReferences"] = [{"uid": "isvc-1", "controller": True}]
        super().__init__(dep, [{"metadata": {"uid": u, "ownerReferences": [{"uid": "dep-1", "controller": True}]}}
                               for u in ("rs-1", "rs-2")])
        self.isvc = {"metadata": {"uid": "isvc-1", "namespace": "ns", "name": "llm", "labels": {"team": "a"},
                                  "annotations": {},
                                  "creationTimestamp": CREATED.isoformat().replace("+00:00", "Z")},
                     "spec": {"predictor": {"model": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}}}

    async def served(self, group: str, version: str, plural: str) -> bool:
        return plural == "inferenceservices"

    async def list(self, group: str, version: str, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        if plural == "inferenceservices":
            return [self.isvc]
        return await super().list(group, version, plural, namespace)


def test_an_inference_services_deployment_is_counted_under_the_inference_service_only() -> None:
    async def go() -> None:
        r = rig()
        r.workloads = KServe()
        await r.prom.start()
        await r.operator().tick()
        keys = sorted(r.records.entries())
        assert len(keys) == 3 and all(k.startswith("isvc-1@") for k in keys)
        entries = list(r.records.entries().values())
        assert {e.data["job"]["kind"] for e in entries} == {"InferenceService"}
        assert set(entries[0].data["slice"]["ownerUids"]) == {"isvc-1", "dep-1", "rs-1", "rs-2"}
        end = max(e.finished_at for e in entries)
        assert math.fsum(e.co2e_grams for e in entries) == pytest.approx(
            r.total("carbontrack_container_co2e_grams_total", end), rel=1e-12)
        for c in r.clients:
            await c.close()

    run(go())


def test_a_deleted_workloads_last_slice_ends_when_the_deletion_is_noticed() -> None:
    async def go() -> None:
        r = rig()
        await r.prom.start()
        op = r.operator()
        await op.tick()
        assert len(r.records.entries()) == 3

        class Deleted(Workloads):
            lists = 0

            async def list(self, group: str, version: str, plural: str, ns: str | None) -> list[dict[str, Any]]:
                Deleted.lists += 1
                return [] if plural == "deployments" else await super().list(group, version, plural, ns)

        op._api = Deleted(r.workloads.deployment, r.workloads.replicasets)  # type: ignore[assignment]
        r.at(CREATED + timedelta(minutes=3, seconds=30))
        await op.tick()  # before the next grid line (+ settling): no round, nothing listed
        assert Deleted.lists == 0
        gone_at = CREATED + timedelta(minutes=3, seconds=43)  # 10:04:03, the next round
        r.at(gone_at)
        await op.tick()  # noticed; 10:03-10:04 recorded, its last slice not settled yet
        assert len(r.records.entries()) == 4 and Deleted.lists > 0
        r.at(gone_at + timedelta(seconds=3))
        await op.tick()  # a deleted workload's round is retried on the next tick
        got = slices_of(r.records)
        assert len(got) == 5 and contiguous([p for p, _ in got])
        assert got[-1][0] == Slice(CREATED.replace(second=0) + timedelta(minutes=4), gone_at)
        r.at(gone_at + timedelta(minutes=5))
        await op.tick()  # done with it: nothing more
        assert len(r.records.entries()) == 5 and "dep-1" not in op._known
        for c in r.clients:
            await c.close()

    run(go())


def test_the_slice_loop_attaches_to_the_operators_registry() -> None:
    """``attach`` takes the record store, budget book, seals and clients from the Operator:
    a renamed attribute fails here, not at the operator's start-up in a cluster."""
    from carbontrack.operator.apiclient import ApiTransport
    from carbontrack.operator.handlers import Operator, build_registry
    from carbontrack.operator.kube import KubeApi
    from carbontrack.operator.long_running import attach

    from carbontrack.core.apiconfig import ApiEndpoint, no_credentials

    transport = ApiTransport(ApiEndpoint("http", "127.0.0.1", 9, "", None, no_credentials))
    settings = OperatorSettings(prometheus_url="http://127.0.0.1:9")
    metrics = OperatorMetrics(CollectorRegistry())
    kube = KubeApi(transport)
    op = Operator(settings, kube, PrometheusClient(settings.prometheus_url, metrics), metrics,
                  lambda: CREATED)
    registry = build_registry(op)
    before = len(list(registry._activities.get_all_handlers()))
    attach(registry, op, transport)
    assert len(list(registry._activities.get_all_handlers())) == before + 2  # start-up, clean-up
    families = {m.name for m in metrics.registry.collect()}
    assert {"carbontrack_operator_slices_accounted", "carbontrack_workload_slice_co2e_grams",
            "carbontrack_workload_functional_units"} <= families
    kube.close()


@pytest.mark.parametrize("annotate", [True, False], ids=["hint", "no-hint"])
def test_a_restart_with_another_slice_length_continues_where_the_records_end(annotate: bool) -> None:
    """With the hint (annotating on) the records are found through it; without it (the
    default) the 1-minute slices are not on the new 2-minute grid, and the records are scanned:
    walking the new grid alone would account 10:00-10:03 a second time."""
    async def go() -> None:
        r = rig()
        await r.prom.start()
        await r.operator(annotate=annotate).tick()  # 60 s slices up to 10:03
        r.at(CREATED + timedelta(minutes=9))
        await r.operator(length=120, annotate=annotate).tick()  # restarted with 2-minute slices
        got = slices_of(r.records)
        assert contiguous([p for p, _ in got]) and got[2][0].end == got[3][0].start
        # 10:03-10:04 to the new grid, then on it (10:08-10:10 has not settled at 10:09)
        assert [p.seconds for p, _ in got][3:] == [60.0, 120.0, 120.0]
        end = got[-1][0].end
        assert math.fsum(e.co2e_grams for _, e in got) == pytest.approx(
            r.total("carbontrack_container_co2e_grams_total", end), rel=1e-12)
        for c in r.clients:
            await c.close()

    run(go())


def test_a_restart_on_a_grid_that_misses_the_old_slices_scans_the_records() -> None:
    """No hint (annotating off, the default) and a new length whose grid does not line up with
    the recorded 1-minute slices past the first: the walk on the new grid stops at 10:00, so the
    records are scanned; nothing is accounted twice."""
    async def go() -> None:
        r = rig()
        await r.prom.start()
        await r.operator(annotate=False).tick()  # 60 s slices 10:00-10:03
        r.at(CREATED + timedelta(minutes=9))
        await r.operator(length=90, annotate=False).tick()
        got = slices_of(r.records)
        assert contiguous([p for p, _ in got]) and got[2][0].end == got[3][0].start
        end = got[-1][0].end
        assert math.fsum(e.co2e_grams for _, e in got) == pytest.approx(
            r.total("carbontrack_container_co2e_grams_total", end), rel=1e-12)
        for c in r.clients:
            await c.close()

    run(go())


class Deleted(Workloads):
    """The Deployment deleted and its ReplicaSets garbage-collected."""

    async def list(self, group: str, version: str, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        return []


def pods_stop(r: Rig, frozen: datetime, tail_s: float = 60.0) -> None:
    """The workload's containers end at ``frozen``; the exporter keeps their final values
    exported for ``tail_s`` more (its --retention)."""
    for metric in ("carbontrack_container_energy_joules_total", "carbontrack_container_co2e_grams_total"):
        for s in r.prom.series[metric]:
            if s.labels["namespace"] == "ns":
                s.frozen = min(s.end, frozen.timestamp())
                s.end = min(s.end, frozen.timestamp() + tail_s)


def test_a_workload_deleted_while_the_operator_is_down_gets_its_tail_once() -> None:
    async def go() -> None:
        r = rig()
        await r.prom.start()
        await r.operator(annotate=False).tick()  # 10:00-10:03 recorded, then the operator stops
        assert r.records.adds == 3
        last_end = slices_of(r.records)[-1][0].end
        # deleted while it is down; its pods end at 10:05:27, their series stay flat for 60 s
        r.workloads = Deleted(r.workloads.deployment, r.workloads.replicasets)
        r.workloads.records = r.records
        stop = CREATED + timedelta(minutes=5, seconds=7)
        pods_stop(r, stop)
        r.at(CREATED + timedelta(minutes=9))
        await r.operator(annotate=False).tick()  # the restart
        got = slices_of(r.records)
        tail = [(p, e) for p, e in got if p.start >= last_end]
        assert contiguous([p for p, _ in got]) and tail[0][0].start == last_end
        # to the first sample carrying the final value (10:05:28, scraped after the pods' end at
        # 10:05:27), cut on the grid
        assert [p.end for p, _ in tail] == [last_end + timedelta(minutes=1), last_end + timedelta(minutes=2),
                                            datetime(2026, 12, 7, 10, 5, 28, tzinfo=UTC)]
        assert [e.data["slice"]["final"] for _, e in tail] == [False, False, True]
        assert {e.data["job"]["outcome"] for _, e in tail} == {"Deleted"}
        for metric, attr, scale in (("carbontrack_container_co2e_grams_total", "co2e_grams", 1.0),
                                    ("carbontrack_container_energy_joules_total", "energy_kwh", 3.6e6)):
            # the series' increase from the last slice's end to their last sample
            increase = r.total(metric, r.now[0]) - r.total(metric, last_end)
            assert increase > 0
            assert math.fsum(getattr(e, attr) for _, e in tail) * scale == pytest.approx(increase, abs=1e-9)
        adds = r.records.adds
        r.at(CREATED + timedelta(minutes=20))
        await r.operator(annotate=False).tick()  # a second restart: nothing more
        assert r.records.adds == adds == 6
        for c in r.clients:
            await c.close()

    run(go())


def test_a_restart_before_the_deleted_workloads_counters_settle_waits_for_them() -> None:
    """Restarted while the deleted workload's pods still draw energy: its final slice waits
    until the counters have stopped growing, and then takes all of it."""
    async def go() -> None:
        r = rig()
        await r.prom.start()
        await r.operator(annotate=False).tick()
        r.workloads = Deleted(r.workloads.deployment, r.workloads.replicasets)
        r.workloads.records = r.records
        stop = CREATED + timedelta(minutes=5, seconds=7)
        pods_stop(r, stop)
        r.at(stop - timedelta(seconds=1))
        op = r.operator(annotate=False)
        await op.tick()  # still growing: nothing yet
        assert r.records.adds == 3
        r.at(stop + timedelta(seconds=3))
        await op.tick()  # flat since the sample at 10:05:28 for 2 s only: not yet
        assert r.records.adds == 3
        r.at(stop + timedelta(seconds=8))
        await op.tick()  # the round is retried on each tick until it is recorded
        got = slices_of(r.records)
        assert r.records.adds == 6 and got[-1][1].data["slice"]["final"] and contiguous([p for p, _ in got])
        assert got[-1][0].end == datetime(2026, 12, 7, 10, 5, 28, tzinfo=UTC)
        g = "carbontrack_container_co2e_grams_total"
        assert math.fsum(e.co2e_grams for _, e in got) == pytest.approx(r.total(g, r.now[0]), abs=1e-9)
        for c in r.clients:
            await c.close()

    run(go())


@pytest.mark.parametrize("crash", [False, True], ids=["recorded-live", "crashed-before-the-final-slice"])
def test_a_live_deletion_then_a_restart_records_one_final_slice(crash: bool) -> None:
    """Noticed live, the final slice ends at the round that noticed it; the pods drew energy for
    20 s more. A restart finds the final slice recorded: no second one. An operator that
    crashed before recording it: the restart records it, under the key the live path uses."""
    async def go() -> None:
        r = rig()
        await r.prom.start()
        op = r.operator()
        await op.tick()
        op._api = Deleted(r.workloads.deployment, r.workloads.replicasets)  # type: ignore[assignment]
        gone_at = CREATED + timedelta(minutes=3, seconds=43)  # 10:04:03, the next round
        pods_stop(r, gone_at + timedelta(seconds=20))
        r.at(gone_at)
        await op.tick()  # noticed: 10:03-10:04 recorded, the final slice not settled yet
        assert r.records.adds == 4
        if not crash:
            r.at(gone_at + timedelta(seconds=3))
            await op.tick()
            live = slices_of(r.records)[-1]
            assert live[0].end == gone_at and live[1].data["slice"]["final"]
        r.workloads = Deleted(r.workloads.deployment, r.workloads.replicasets)
        r.workloads.records = r.records
        r.at(gone_at + timedelta(minutes=5))
        await r.operator().tick()
        got = slices_of(r.records)
        assert r.records.adds == len(got) == 5 and contiguous([p for p, _ in got])
        assert [e.data["slice"]["final"] for _, e in got] == [False] * 4 + [True]
        key = f"dep-1@{int((got[-1][0].start - EPOCH).total_seconds())}"
        assert got[-1][0].start == CREATED.replace(second=0) + timedelta(minutes=4) and key in r.records.entries()
        # the restart took the energy to the pods' end; the live path to the round that noticed
        assert got[-1][0].end == (datetime(2026, 12, 7, 10, 4, 24, tzinfo=UTC) if crash else gone_at)
        for c in r.clients:
            await c.close()

    run(go())


def test_bounded_slice_queries_give_the_same_slices_on_a_long_series_with_a_pause() -> None:
    """Forty 1-minute slices; pod a's exporter down for 5 minutes (10:10:20-10:15:20), far
    longer than the 3 s the values at a slice start are read over: each slice is still every
    series' last value at its end minus its last value at its start (what reading back to the
    creation gave), and no query but the look-back for an absent series reads past the slice."""
    async def go() -> None:
        r = rig()
        t0 = CREATED.timestamp()
        for metric in ("carbontrack_container_energy_joules_total", "carbontrack_container_co2e_grams_total"):
            r.prom.series[metric][0].gap = (t0 + 600, t0 + 900)
        await r.prom.start()
        r.at(CREATED + timedelta(minutes=40))
        await r.operator(annotate=False).tick()
        got = slices_of(r.records)
        assert len(got) == 40 and contiguous([p for p, _ in got])
        g = "carbontrack_container_co2e_grams_total"
        expected = [r.total(g, p.end) - r.total(g, p.start) for p, _ in got]
        assert [e.co2e_grams for _, e in got] == pytest.approx(expected, rel=1e-12, abs=1e-12)
        paused = [p for p, _ in got if t0 + 600 < p.start.timestamp() < t0 + 900]
        assert paused  # slices that began while pod a was not scraped
        ranges = []
        for q in r.prom.seen:
            if "container_" not in q:
                continue
            for seconds in re.findall(r"\[(\d+)s\]", q):
                if 'pod_uid=~"' in q:  # the look-back for a series absent at the slice start
                    continue
                ranges.append(int(seconds))
        assert max(ranges) <= LENGTH
        # pod a is looked back for once its samples resume (10:15:20, in the 10:15 slice)
        lookbacks = [q for q in r.prom.seen if 'pod_uid=~"a"' in q]
        assert lookbacks and all(re.search(r"\[(\d+)s\]", q) for q in lookbacks)
        for c in r.clients:
            await c.close()

    run(go())


def test_a_deleted_workload_whose_pods_keep_running_ends_when_the_restart_noticed_it() -> None:
    """Deleted with --cascade=orphan while the operator was down: its pods (and their series)
    go on. The final slice is not held open for ever: a slice length after the restart it ends
    at the restart, as a live operator's would have ended when it noticed the deletion."""
    async def go() -> None:
        r = rig()
        await r.prom.start()
        await r.operator(annotate=False).tick()
        r.workloads = Deleted(r.workloads.deployment, r.workloads.replicasets)
        r.workloads.records = r.records
        restart = CREATED + timedelta(minutes=6, seconds=10)
        r.at(restart)
        op = r.operator(annotate=False)
        await op.tick()
        r.at(restart + timedelta(seconds=30))
        await op.tick()
        assert r.records.adds == 3  # still growing: waiting
        r.at(restart + timedelta(seconds=LENGTH + 10))
        await op.tick()
        got = slices_of(r.records)
        assert got[-1][0].end == restart and got[-1][1].data["slice"]["final"] and contiguous([p for p, _ in got])
        g = "carbontrack_container_co2e_grams_total"
        assert math.fsum(e.co2e_grams for _, e in got) == pytest.approx(r.total(g, restart), rel=1e-12)
        for c in r.clients:
            await c.close()

    run(go())
