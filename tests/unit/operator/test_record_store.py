"""RecordStore: exactly once under concurrency, group commit, and a cache that never decides
alone (every write is conditional on the resourceVersion it holds).

The API here is the CarbonRecord contract the real API server enforces (create fails on an
existing name, a patch fails when the resourceVersion moved on); e2e tests run the store
against a real kube-apiserver (tests/e2e/test_operator.py, test_workloads.py).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from carbontrack.operator.kube import Conflict, Gone
from carbontrack.operator.record_store import RecordStore

from carbontrack.core.errors import TemporaryError
from carbontrack.core.records import build_entry, object_name, parse_object, record_day, shard_of

FINISHED = datetime(2026, 12, 7, 4, 0, tzinfo=timezone.utc)
NS = "team-a"


class RecordServer:
    """In-memory CarbonRecords with the API server's preconditions; counts calls. Each call
    yields to the event loop first, as a network round trip would."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.version = 0

    def _bump(self, obj: dict[str, Any]) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)

    async def get_record(self, namespace: str, name: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        self.calls["get"] += 1
        if (namespace, name) not in self.objects:
            raise Gone(name)
        return json.loads(json.dumps(self.objects[(namespace, name)]))

    async def create_record(self, body: Mapping[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        self.calls["create"] += 1
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.objects:
            raise Conflict(key[1])
        obj = json.loads(json.dumps(body))
        self._bump(obj)
        self.objects[key] = obj
        return json.loads(json.dumps(obj))

    async def add_record_entries(self, namespace: str, name: str, entries: Mapping[str, Any],
                                 resource_version: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        self.calls["patch"] += 1
        obj = self.objects.get((namespace, name))
        if obj is None:
            raise Gone(name)
        if obj["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(name)
        obj["spec"]["entries"].update(json.loads(json.dumps(entries)))
        self._bump(obj)
        return json.loads(json.dumps(obj))

    async def list_records(self, namespace: str, label_selector: str, limit: int,
                           token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        return [o for (ns, _), o in self.objects.items() if ns == namespace], None

    def entries_by_uid(self) -> Counter[str]:
        """How many stored entries each UID has, over every object and link."""
        return Counter(uid for obj in self.objects.values() for uid in parse_object(obj).entries)


def entry(uid: str, grams: float, padding: int = 0) -> dict[str, Any]:
    return build_entry(
        uid=uid, namespace=NS, name=f"job-{uid}", kind="Job", outcome="Complete",
        started_at=FINISHED - timedelta(minutes=5), finished_at=FINISHED,
        accounted_at=FINISHED + timedelta(seconds=3), co2e_grams=grams, energy_kwh=grams / 400,
        labels={"pad": "x" * padding} if padding else {}, budgets=frozenset(), annotations={},
        inputs={}, template={}, parallelism=1, queries={},
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_concurrent_adds_store_each_uid_once_in_few_writes() -> None:
    server = RecordServer()
    store = RecordStore(server)
    uids = [f"uid-{i:04d}" for i in range(400)]

    async def go() -> list[Any]:
        return await asyncio.gather(*(store.add(NS, u, FINISHED, entry(u, float(i)))
                                      for i, u in enumerate(uids)))

    stored = run(go())
    assert [e.uid for e in stored] == uids
    assert [e.co2e_grams for e in stored] == [float(i) for i in range(400)]
    assert server.entries_by_uid() == Counter({u: 1 for u in uids})
    shards = {shard_of(u) for u in uids}
    writes = server.calls["create"] + server.calls["patch"]
    # group commit: one create per shard, then the entries that queued meanwhile in one patch
    assert writes <= 2 * len(shards) < len(uids)
    assert server.calls["get"] == len(shards)  # only the first look at each (absent) object


def test_a_second_writer_wins_and_the_stale_cache_only_costs_a_retry() -> None:
    server = RecordServer()
    ours, other = RecordStore(server), RecordStore(server)

    async def go() -> tuple[Any, Any, Any]:
        await ours.add(NS, "uid-first", FINISHED, entry("uid-first", 1.0))  # caches the object
        same_shard = next(f"uid-{i}" for i in range(1000) if shard_of(f"uid-{i}") == shard_of("uid-first"))
        theirs = await other.add(NS, same_shard, FINISHED, entry(same_shard, 7.0))
        assert await ours.recorded(NS, same_shard, FINISHED) is None  # the cache does not know yet
        mine = await ours.add(NS, same_shard, FINISHED, entry(same_shard, 99.0))
        found = await ours.find(NS, same_shard, FINISHED)
        return theirs, mine, found

    theirs, mine, found = run(go())
    assert theirs.co2e_grams == mine.co2e_grams == found.co2e_grams == 7.0  # the stored entry wins
    assert all(n == 1 for n in server.entries_by_uid().values())


def test_full_objects_spill_to_links_and_every_uid_is_found() -> None:
    server = RecordServer()
    store = RecordStore(server, max_object_bytes=4_000)
    uids = [u for u in (f"uid-{i}" for i in range(600)) if shard_of(u) == 3][:30]

    async def go() -> list[Any]:
        await asyncio.gather(*(store.add(NS, u, FINISHED, entry(u, 1.0, padding=600)) for u in uids))
        fresh = RecordStore(server)  # a restarted operator: nothing cached
        return [await fresh.find(NS, u, FINISHED) for u in uids]

    found = run(go())
    assert [e.uid for e in found] == uids
    assert server.entries_by_uid() == Counter({u: 1 for u in uids})
    day = record_day(FINISHED)
    links = [k for k in server.objects if k[1].startswith(object_name(day, 3))]
    assert len(links) > 3
    for key in links:  # no object over the limit, except a lone first entry
        obj = server.objects[key]
        assert len(json.dumps(obj["spec"]["entries"], separators=(",", ":"))) <= 4_000 + 50 * len(
            obj["spec"]["entries"])


def test_a_uid_added_twice_at_once_is_stored_once() -> None:
    server = RecordServer()
    store = RecordStore(server)

    async def go() -> list[Any]:
        return await asyncio.gather(store.add(NS, "uid-x", FINISHED, entry("uid-x", 1.0)),
                                    store.add(NS, "uid-y", FINISHED, entry("uid-y", 2.0)),
                                    store.add(NS, "uid-x", FINISHED, entry("uid-x", 5.0)))

    a, _, b = run(go())
    assert a.co2e_grams == b.co2e_grams  # both calls see the one stored entry
    assert server.entries_by_uid()["uid-x"] == 1


def test_cached_lookups_read_nothing_and_a_marked_uid_reads_the_entry() -> None:
    server = RecordServer()
    store = RecordStore(server)

    async def go() -> None:
        await store.add(NS, "uid-a", FINISHED, entry("uid-a", 3.0))
        same = next(f"u{i}" for i in range(1000) if shard_of(f"u{i}") == shard_of("uid-a"))
        assert await store.find(NS, same, FINISHED) is None  # looks at the (absent) next link once
        before = server.calls["get"]
        assert await store.find(NS, same, FINISHED) is None
        assert await store.recorded(NS, "uid-a", FINISHED) is not None
        assert server.calls["get"] == before  # both answered by the cache
        got = await store.find(NS, "uid-a", FINISHED)
        assert got is not None and got.co2e_grams == 3.0
        assert server.calls["get"] == before + 1

    run(go())


def test_a_writer_that_keeps_conflicting_fails_every_waiting_add_with_a_retryable_error() -> None:
    class Busy(RecordServer):
        async def add_record_entries(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            self.calls["patch"] += 1
            raise Conflict("someone else writes all the time")

    server = Busy()
    store = RecordStore(server)
    uid = "uid-0"
    key = (NS, object_name(record_day(FINISHED), shard_of(uid)))
    server.objects[key] = {"metadata": {"name": key[1], "namespace": NS, "resourceVersion": "1"},
                           "spec": {"entries": {}}}

    same = next(f"u{i}" for i in range(1000) if shard_of(f"u{i}") == shard_of(uid))

    async def go() -> list[Any]:
        return await asyncio.gather(*(store.add(NS, u, FINISHED, entry(u, 1.0)) for u in [uid, same]),
                                    return_exceptions=True)

    results = run(go())
    assert all(isinstance(r, TemporaryError) for r in results), results
    assert server.entries_by_uid() == Counter()


def test_a_cancelled_writer_leaves_the_others_retryable() -> None:
    class Slow(RecordServer):
        async def create_record(self, body: Mapping[str, Any]) -> dict[str, Any]:
            if "uid-0" in body["spec"]["entries"]:
                await asyncio.sleep(10)  # cancelled in flight
            return await super().create_record(body)

    server = Slow()
    store = RecordStore(server)

    async def go() -> Any:
        first = asyncio.create_task(store.add(NS, "uid-0", FINISHED, entry("uid-0", 1.0)))
        await asyncio.sleep(0.01)
        same = next(f"u{i}" for i in range(1000) if shard_of(f"u{i}") == shard_of("uid-0"))
        second = asyncio.create_task(store.add(NS, same, FINISHED, entry(same, 1.0)))
        await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await asyncio.wait_for(asyncio.gather(second, return_exceptions=True), 30)

    (outcome,) = run(go())
    # the cancelled write held only its own entry: the second is written by the next holder
    assert not isinstance(outcome, BaseException) and outcome.co2e_grams == 1.0
    assert server.entries_by_uid() == Counter({outcome.uid: 1})
