"""Per-slice accounting of long-running workloads (Deployment, StatefulSet, and where their
CRDs are served LeaderWorkerSet and InferenceService): the loop, one workload at a time.

Order of writes per slice, as for Jobs: the operator's record first (key = workload UID +
slice start, added at most once: the stored entry wins on a retry), then the budget ledgers
(idempotent by key), then the workload's annotations (a copy: latest slice, running total).
Slices of a workload are recorded strictly in order, so the latest recorded slice says that
every earlier one is recorded: after a restart the operator finds it (from its own
``last-slice`` annotation, verified against the record, else by walking the records forward)
and accounts every slice missed while it was down from Prometheus with that slice's bounds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from carbontrack.core import contract
from carbontrack.core.errors import ConfigError, TemporaryError
from carbontrack.core.records import GROUP as RECORDS_GROUP
from carbontrack.core.records import PLURAL as RECORDS_PLURAL
from carbontrack.core.records import VERSION as RECORDS_VERSION
from carbontrack.core.records import RecordEntry, build_entry
from carbontrack.core.slices import NO_UNIT
from carbontrack.core.timeutil import format_time

from .accounting import NotReady
from .apiclient import ApiTransport
from .budget_book import BudgetBook
from .functional_unit import QUERY, UNIT, FunctionalUnitError, from_annotations
from .jobs import USER_ANNOTATIONS
from .kube import Conflict, Gone, KubeApi
from .ledger import LedgerEntry
from .long_running_kinds import (
    INTERMEDIATE_PLURALS,
    KINDS,
    LongRunningKind,
    WorkloadFacts,
    descendant_uids,
    workload_facts,
)
from .record_store import RecordStore
from .settings import OperatorSettings
from .slice_accounting import SliceAccountant, Units, slice_job_facts
from .slice_cursor import Latest, SliceCursor
from .slice_orphans import SliceOrphans
from .slices import EPOCH, Slice, due_slices, slice_key, slice_start
from .workload_api import WorkloadApi

log = logging.getLogger(__name__)

LAST_SLICE = contract.LAST_SLICE  # start of the latest recorded slice, epoch s (a hint)
SLICE_START = contract.SLICE_START
SLICE_END = contract.SLICE_END
CO2E_TOTAL = contract.CO2E_GRAMS_TOTAL
ENERGY_TOTAL = contract.ENERGY_KWH_TOTAL
KIND_RECHECK_S = 300.0  # how often CRDs that were absent are looked for again


class LongRunningMetrics:
    """contract.OPERATOR_SLICES_ACCOUNTED, WORKLOAD_SLICE_CO2E, WORKLOAD_FUNCTIONAL_UNITS."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(family: contract.MetricFamily) -> Counter:
            return Counter(family.name, family.help, family.labels, registry=registry)

        self.slices = counter(contract.OPERATOR_SLICES_ACCOUNTED)
        self.co2e = counter(contract.WORKLOAD_SLICE_CO2E)
        self.units = counter(contract.WORKLOAD_FUNCTIONAL_UNITS)


class LongRunningAccounting:
    def __init__(self, settings: OperatorSettings, api: WorkloadApi, kube: KubeApi,
                 accountant: SliceAccountant, records: RecordStore, book: BudgetBook,
                 metrics: LongRunningMetrics, clock: Callable[[], datetime],
                 seal: Callable[[str], None] = lambda _key: None) -> None:
        self._settings = settings
        self._seal = seal  # a recorded slice is final: its ledger entries may be folded
        self._api = api
        self._kube = kube
        self._accountant = accountant
        self._records = records
        self._book = book
        self._metrics = metrics
        self._clock = clock
        self._kinds: list[LongRunningKind] = []
        self._kinds_checked: datetime | None = None
        self._cursor = SliceCursor(records, settings)  # the latest recorded slice per workload
        self._orphans = SliceOrphans(self._cursor, accountant.prometheus, lambda selector: api.namespaces_with(
            RECORDS_GROUP, RECORDS_VERSION, RECORDS_PLURAL, selector), settings)  # deleted while down
        self._known: dict[str, WorkloadFacts] = {}  # workloads seen, to notice a deletion
        self._owners: dict[str, set[str]] = {}  # UIDs ever seen under a workload
        self._warned: set[tuple[str, str]] = set()
        self._next_round: datetime | None = None  # None: at the next tick

    @property
    def length_s(self) -> float:
        return self._settings.slice_length_s

    async def tick(self) -> None:
        """A round when a slice may be due: at each grid line plus the settling time, and
        on every tick while a round left something to retry. Listing every workload on every
        tick would cost the API server a cluster-wide list each scrape interval for slices
        that come due once an hour."""
        now = self._clock()
        if self._next_round is not None and now < self._next_round:
            return
        retry = await self._round(now)
        self._next_round = None if retry else \
            slice_start(now, self.length_s) + timedelta(seconds=self.length_s + self._accountant.settle_s)

    async def _round(self, now: datetime) -> bool:
        """List the workloads, then account every due slice of each; True when one must be
        retried (Prometheus not caught up, an API error)."""
        await self._refresh_kinds(now)
        seen: dict[str, tuple[LongRunningKind, WorkloadFacts]] = {}
        listed: set[str] = set()  # even those not accounted (malformed): they exist
        for ns in self._settings.namespaces or (None,):
            for kind in self._kinds:
                for body in await self._api.list(kind.group, kind.version, kind.plural, ns):
                    listed.add(str((body.get("metadata") or {}).get("uid", "")))
                    try:
                        facts = workload_facts(kind, body)
                    except ConfigError as err:
                        log.warning("%s; not accounted", err)
                        continue
                    seen[facts.uid] = (kind, facts)
        for uid, gone in list(self._known.items()):
            if uid not in seen:  # deleted: its last slice ends when the deletion was noticed
                kind = next(k for k in KINDS if k.kind == gone.kind)
                ended = gone if gone.deleted_at else _with_deletion(gone, now)
                seen[uid] = (kind, ended)
        orphans, retry = await self._orphans.due(listed | set(seen), now)
        for orphan in orphans:  # deleted while the operator was down: the final slice
            seen[orphan.facts.uid] = (orphan.kind, orphan.facts)
            self._owners.setdefault(orphan.facts.uid, set()).update(orphan.owners)
        namespaces = sorted({f.namespace for _, f in seen.values()})
        objects = {ns: await self._intermediates(ns) for ns in namespaces}
        for uid, (_, facts) in seen.items():
            lws = facts.name if facts.kind == "LeaderWorkerSet" else None
            self._owners.setdefault(uid, set()).update(
                descendant_uids(objects[facts.namespace], uid, lws_name=lws))
        # A workload another one controls (an InferenceService's Deployment, a
        # LeaderWorkerSet's StatefulSets) is accounted as part of its top-level owner only.
        nested = {u for uid, owners in self._owners.items() if uid in seen for u in owners if u != uid}
        for uid, (kind, facts) in seen.items():
            if uid in nested:
                self._owners.pop(uid, None)
                continue
            self._known[uid] = facts
            owners = self._owners[uid]
            try:
                finished = await self._account_workload(kind, facts, sorted(owners))
            except NotReady as err:
                log.debug("%s %s/%s: %s", facts.kind, facts.namespace, facts.name, err)
                retry = True
                continue
            except (TemporaryError, ConfigError, Conflict) as err:
                log.warning("%s %s/%s not accounted yet: %s", facts.kind, facts.namespace, facts.name, err)
                retry = True
                continue
            except Exception:  # a bug or input nobody foresaw in one workload: the others go on
                log.exception("%s %s/%s not accounted", facts.kind, facts.namespace, facts.name)
                retry = True
                continue
            if finished:
                for table in (self._known, self._owners):
                    table.pop(uid, None)
                self._cursor.forget(uid)
                self._orphans.forget(uid)
            elif facts.deleted_at is not None:
                retry = True  # its last slice settles before the next grid line
        return retry

    async def _refresh_kinds(self, now: datetime) -> None:
        if self._kinds_checked and (now - self._kinds_checked).total_seconds() < KIND_RECHECK_S:
            return
        kinds = []
        for kind in KINDS:
            if not kind.optional or await self._api.served(kind.group, kind.version, kind.plural):
                kinds.append(kind)
        self._kinds, self._kinds_checked = kinds, now

    async def _intermediates(self, namespace: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for group, version, plural in INTERMEDIATE_PLURALS:
            out.extend(await self._api.list(group, version, plural, namespace))
        return out

    async def _account_workload(self, kind: LongRunningKind, facts: WorkloadFacts,
                                owners: Sequence[str]) -> bool:
        """Due slices in order; True once a deleted workload's last slice is recorded."""
        now = self._clock()
        latest = await self._cursor.latest(facts, now)
        first = max(facts.created_at, now - timedelta(seconds=self._settings.slice_catchup_s))
        due = due_slices(first, latest.piece.end if latest else None, now, self.length_s,
                         self._accountant.settle_s, ended_at=facts.deleted_at)
        for piece in due:
            latest = await self._account_slice(kind, facts, piece, owners, latest)
            self._cursor.moved(facts.uid, latest)
        return facts.deleted_at is not None and latest is not None \
            and latest.piece.end >= facts.deleted_at

    async def _account_slice(self, kind: LongRunningKind, facts: WorkloadFacts, piece: Slice,
                             owners: Sequence[str], previous: Latest | None) -> Latest:
        key = slice_key(facts.uid, piece.start)
        stored = await self._records.find(facts.namespace, key, piece.end)
        if stored is None:
            stored = await self._records.add(facts.namespace, key, piece.end,
                                             await self._entry(facts, piece, owners, previous))
            self._count(facts, stored)
        job = slice_job_facts(facts, piece)
        ledger = LedgerEntry(key, facts.name, stored.finished_at, stored.accounted_at,
                             stored.co2e_grams, stored.energy_kwh)
        for budget in list(self._book.views.values()):
            if budget.key in stored.budgets or budget.selects(job):
                await self._book.commit(budget, ledger, job)
        self._seal(key)
        if self._settings.annotate_long_running:
            await self._annotate(kind, facts, piece, stored)
        return Latest(piece, stored)

    async def _entry(self, facts: WorkloadFacts, piece: Slice, owners: Sequence[str],
                     previous: Latest | None) -> dict[str, Any]:
        acc = await self._accountant.account(facts, piece, owners)
        units = await self._units(facts, piece)
        now = self._clock()
        job = slice_job_facts(facts, piece)
        inputs = {k: v for k, v in facts.annotations.items() if k in USER_ANNOTATIONS}
        # the unit count of a slice is the operator's (from the user's counter), never the
        # user's number: it is written over whatever the annotations say
        if units is not None and units.count is not None:
            # the validated name (stripped, never the report's "slice"), not the raw text
            inputs[UNIT] = units.unit
            inputs[contract.FUNCTIONAL_UNITS] = repr(units.count)
        else:
            inputs[UNIT], inputs[contract.FUNCTIONAL_UNITS] = NO_UNIT, "1"
        prior = _cumulative(previous.entry) if previous else (0.0, 0.0)
        data = build_entry(
            uid=job.uid, namespace=facts.namespace, name=facts.name, kind=facts.kind,
            outcome=job.outcome or "", started_at=piece.start, finished_at=piece.end,
            accounted_at=now, co2e_grams=acc.co2e_grams, energy_kwh=acc.energy_kwh,
            labels=facts.labels, budgets=frozenset(b.key for b in self._book.views.values()
                                                   if b.selects(job)),
            annotations=acc.annotations(now), inputs=inputs, template=facts.template,
            parallelism=max(facts.replicas, 1), queries=acc.queries,
        )
        data["slice"] = {
            "workload": {"kind": facts.kind, "apiVersion": facts.api_version, "uid": facts.uid,
                         "name": facts.name, "createdAt": format_time(facts.created_at)},
            # the workload's last slice: it ended at the deletion (slice_orphans.is_final)
            "final": facts.deleted_at is not None and piece.end >= facts.deleted_at,
            "start": format_time(piece.start), "end": format_time(piece.end),
            "lengthSeconds": self.length_s,
            "ownerUids": sorted(owners),
            "cumulativeCo2eGrams": prior[0] + (acc.co2e_grams or 0.0),
            "cumulativeEnergyKwh": prior[1] + (acc.energy_kwh or 0.0),
            "functionalUnit": None if units is None else {
                "unit": units.unit or facts.annotations.get(UNIT, "unit"), "count": units.count,
                "query": units.query, "problem": units.problem},
        }
        return data

    async def _units(self, facts: WorkloadFacts, piece: Slice) -> Units | None:
        if QUERY not in facts.annotations:
            return None
        try:
            unit = from_annotations(facts.annotations, facts.namespace)
        except FunctionalUnitError as err:
            units = Units(None, "", str(err), invalid=True)
        else:
            assert unit is not None
            units = await self._accountant.units(facts, piece, unit)
        if units.problem is not None:
            await self._warn(facts, "FunctionalUnitInvalid" if units.invalid else "FunctionalUnitNoData",
                             f"{units.problem}; this slice is accounted by energy only")
        return units

    async def _warn(self, facts: WorkloadFacts, reason: str, message: str) -> None:
        if (facts.uid, message) in self._warned:
            return
        self._warned.add((facts.uid, message))
        await self._kube.post_event(facts.ref(), reason, message, True, self._clock())

    async def _annotate(self, kind: LongRunningKind, facts: WorkloadFacts, piece: Slice,
                        stored: RecordEntry) -> None:
        """A copy of the record on the workload: the latest slice, and the running total."""
        if facts.deleted_at is not None or (
                facts.annotations.get(LAST_SLICE) == _epoch(piece.start)
                and facts.annotations.get(SLICE_END) == format_time(piece.end)):
            return
        total_g, total_kwh = _cumulative(stored)
        copy = {**stored.annotations, LAST_SLICE: _epoch(piece.start),
                SLICE_START: format_time(piece.start), SLICE_END: format_time(piece.end),
                CO2E_TOTAL: f"{total_g:.6g}", ENERGY_TOTAL: f"{total_kwh:.6g}"}
        try:
            await self._api.patch_annotations(kind.group, kind.version, kind.plural, facts.namespace,
                                               facts.name, facts.uid, copy)
        except Gone:
            return

    def _count(self, facts: WorkloadFacts, stored: RecordEntry) -> None:
        self._metrics.slices.labels(result="no_data" if stored.co2e_grams is None else "ok").inc()
        labels = (facts.namespace, facts.kind, facts.name)
        self._metrics.co2e.labels(*labels).inc(stored.co2e_grams or 0.0)
        unit = (stored.data.get("slice") or {}).get("functionalUnit")
        if isinstance(unit, dict) and isinstance(unit.get("count"), (int, float)):
            self._metrics.units.labels(*labels, str(unit.get("unit"))).inc(max(unit["count"], 0.0))


def _with_deletion(facts: WorkloadFacts, at: datetime) -> WorkloadFacts:
    from dataclasses import replace

    return replace(facts, deleted_at=at)


def _epoch(at: datetime) -> str:
    return str(int((at - EPOCH).total_seconds()))


def _cumulative(entry: RecordEntry) -> tuple[float, float]:
    piece = entry.data.get("slice")
    if not isinstance(piece, dict):
        return 0.0, 0.0
    values = (piece.get("cumulativeCo2eGrams"), piece.get("cumulativeEnergyKwh"))
    return tuple(float(v) if isinstance(v, (int, float)) and math.isfinite(v) else 0.0  # type: ignore[return-value]
                 for v in values)


def attach(registry: Any, op: Any, transport: ApiTransport) -> None:
    """Run the slice loop beside the operator's kopf handlers (``registry``: the
    kopf.OperatorRegistry of ``build_registry``; ``op``: its Operator, whose record store,
    budget book, clients, clock and metrics registry the loop shares; ``transport``: the
    operator's API transport, which its owner closes)."""
    import asyncio
    import contextlib

    import kopf

    settings: OperatorSettings = op.settings
    api = WorkloadApi(transport)
    loop = LongRunningAccounting(
        settings, api, op.kube, SliceAccountant(op.prometheus, settings, op.clock), op.records,
        op.book, LongRunningMetrics(op.metrics.registry), op.clock, seal=op.seals.seal)
    tasks: list[asyncio.Task[None]] = []
    # a slice is due a scrape interval after it ends: look that often (at most every 30 s)
    interval = min(max(settings.scrape_interval_s, 1.0), 30.0)

    async def run() -> None:
        while True:
            try:
                await loop.tick()
            except (TemporaryError, Gone) as err:
                log.warning("long-running workloads not listed: %s", err)
            except Exception:  # one bad round must not end the loop; the next retries
                log.exception("slice accounting round failed")
            await asyncio.sleep(interval)

    @kopf.on.startup(registry=registry)
    async def _start(**_: Any) -> None:
        tasks.append(asyncio.create_task(run()))

    @kopf.on.cleanup(registry=registry)
    async def _stop(**_: Any) -> None:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
