"""BudgetBook: ledger entries group-committed exactly once; a batch starts from the object the
last write returned, and a change by anyone else makes that write conflict, so the budget is
read again and its new spec decides.

The API here keeps the CarbonBudget contract the real API server enforces (a status patch
fails when the resourceVersion moved on and answers with the whole object); e2e tests run
the book against a real kube-apiserver (tests/e2e/test_operator.py, test_budgets.py).
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from carbontrack.operator.budget_book import BudgetBook
from carbontrack.operator.jobs import JobFacts
from carbontrack.operator.kube import Conflict
from carbontrack.operator.ledger import LedgerEntry
from carbontrack.operator.malformed import MalformedReporter
from carbontrack.operator.metrics import OperatorMetrics
from carbontrack.operator.record_store import RecordStore
from carbontrack.operator.seals import Seals
from prometheus_client import CollectorRegistry

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=timezone.utc)
NS = "team-a"


class BudgetServer:
    """One CarbonBudget with the API server's preconditions, and the Events posted."""

    def __init__(self, limit: str) -> None:
        self.version = 1
        self.obj: dict[str, Any] = {
            "apiVersion": "carbontrack.io/v1alpha1", "kind": "CarbonBudget",
            "metadata": {"name": "b", "namespace": NS, "uid": "budget-uid", "generation": 1,
                         "resourceVersion": "1"},
            "spec": {"limit": limit, "period": {"type": "Calendar", "calendar": "Month"}, "selector": {}},
        }
        self.calls: Counter[str] = Counter()
        self.events: list[str] = []

    def edit_spec(self, **spec: Any) -> None:
        """A user's edit: the spec, the generation and the resourceVersion change."""
        self.obj["spec"].update(spec)
        self.obj["metadata"]["generation"] += 1
        self._bump()

    def _bump(self) -> None:
        self.version += 1
        self.obj["metadata"]["resourceVersion"] = str(self.version)

    async def get_budget(self, namespace: str, name: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        self.calls["get"] += 1
        return copy.deepcopy(self.obj)

    async def patch_budget_status(self, namespace: str, name: str, status: Mapping[str, Any],
                                  resource_version: str | None) -> dict[str, Any]:
        await asyncio.sleep(0)
        self.calls["patch"] += 1
        if resource_version is not None and resource_version != self.obj["metadata"]["resourceVersion"]:
            raise Conflict(name)
        merged = self.obj.setdefault("status", {})
        for key, value in copy.deepcopy(dict(status)).items():  # JSON merge patch, maps one level deep
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {k: v for k, v in {**merged[key], **value}.items() if v is not None}
            elif value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        self._bump()
        return copy.deepcopy(self.obj)

    async def post_event(self, involved: Mapping[str, str], reason: str, message: str,
                         warning: bool, now: datetime) -> None:
        self.events.append(reason)

    async def list_records(self, namespace: str, label_selector: str, limit: int,
                           token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        return [], None


def job(uid: str) -> JobFacts:
    return JobFacts(uid=uid, namespace=NS, name=f"job-{uid}", labels={}, annotations={},
                    created_at=NOW - timedelta(minutes=10), started_at=NOW - timedelta(minutes=9),
                    finished_at=NOW - timedelta(minutes=1), outcome="Complete", deleting=False,
                    finalizers=(), suspended=False, completions=1, parallelism=1, succeeded=1,
                    active=0, gpus_per_pod=0)


def book_for(server: BudgetServer) -> BudgetBook:
    metrics = OperatorMetrics(CollectorRegistry())

    async def released() -> None:
        return None

    kube: Any = server
    return BudgetBook(kube, metrics, lambda: NOW, RecordStore(kube), Seals(3600.0),
                      MalformedReporter(kube, metrics, lambda: NOW), on_not_exceeded=released)


def entry(uid: str, grams: float) -> LedgerEntry:
    return LedgerEntry(uid, f"job-{uid}", NOW - timedelta(minutes=1), NOW, grams, grams / 400)


def test_concurrent_commits_land_once_each_and_batches_skip_the_get() -> None:
    server = BudgetServer(limit="10kg")
    book = book_for(server)

    async def go() -> None:
        await book.on_event("ADDED", copy.deepcopy(server.obj))
        view = book.views[f"{NS}/b"]
        gets = server.calls["get"]
        grams = [0.5 + i for i in range(200)]
        await asyncio.gather(*(book.commit(view, entry(f"u{i}", g), job(f"u{i}")) for i, g in enumerate(grams)))
        # every batch started from the object the previous write returned (the first from
        # the write of the refresh that the ADDED event made)
        assert server.calls["get"] == gets
        assert server.calls["patch"] < 200
        ledger = server.obj["status"]["ledger"]
        assert sorted(ledger) == sorted(f"u{i}" for i in range(200))
        assert math.isclose(float(server.obj["status"]["usedGrams"]), math.fsum(grams), rel_tol=1e-9)

    asyncio.run(go())


def test_an_edited_spec_makes_the_next_batch_reread_and_count_against_the_new_limit() -> None:
    server = BudgetServer(limit="10kg")
    book = book_for(server)

    async def go() -> None:
        await book.on_event("ADDED", copy.deepcopy(server.obj))
        view = book.views[f"{NS}/b"]
        await book.commit(view, entry("u1", 600.0), job("u1"))
        assert server.obj["status"]["exceeded"] is False
        server.edit_spec(limit="1kg")  # the watch event has not arrived yet
        gets = server.calls["get"]
        await book.commit(view, entry("u2", 600.0), job("u2"))
        assert server.calls["get"] == gets + 1  # the stale object's write conflicted
        assert server.obj["status"]["exceeded"] is True
        assert server.obj["status"]["observedGeneration"] == 2
        assert sorted(server.obj["status"]["ledger"]) == ["u1", "u2"]
        assert "BudgetExceeded" in server.events

    asyncio.run(go())


def test_a_watch_event_from_someone_else_drops_the_reused_object() -> None:
    server = BudgetServer(limit="10kg")
    book = book_for(server)

    async def go() -> None:
        await book.on_event("ADDED", copy.deepcopy(server.obj))
        view = book.views[f"{NS}/b"]
        await book.commit(view, entry("u1", 1.0), job("u1"))
        server.edit_spec(limit="2kg")
        await book.on_event("MODIFIED", copy.deepcopy(server.obj))  # spec changed: refreshed from a GET
        patches = server.calls["patch"]
        await book.commit(view, entry("u2", 1.0), job("u2"))
        assert server.calls["patch"] == patches + 1  # no conflict: the event dropped the old object
        assert sorted(server.obj["status"]["ledger"]) == ["u1", "u2"]

    asyncio.run(go())
