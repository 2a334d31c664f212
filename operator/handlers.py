"""The operator's behaviour, wired into a kopf registry by `build_registry`.

Design (docs/operator.md has the long form); one module per concern:
- Job watch events only *observe* (this module): they add/remove the accounting finalizer,
  note budget membership, enforce budgets (enforcer.py) and hand finished, unaccounted Jobs
  to the accounting queue (queue.py), which retries until Prometheus has scraped past the
  completion; nothing is lost on restart because the Job itself (unaccounted, held by the
  finalizer) is the durable to-do record and kopf re-lists it.
- Order of writes per Job: the operator's record (record_store.py, idempotent by UID; the
  stored entry wins on a retry), then budget ledgers (budget_book.py, idempotent, keyed by
  UID, with a resourceVersion precondition), then the Job annotations (a copy of the
  record), then the finalizer. A crash between any two only repeats idempotent steps.
- Annotations on Jobs are never trusted as accounting state: the record decides.
- Projections of running Jobs: projector.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import kopf

from carbontrack.core import contract
from carbontrack.core.errors import ConfigError, TemporaryError

from .accounting import Accountant
from .budget_book import BudgetBook
from .completion import Completion
from .deferral import Deferral, DeferralMetrics, deferral_config
from .enforcer import Enforcer
from .finalizers import Finalizers
from .jobs import FINALIZER, JobFacts
from .kopf_diffbase import NoDiffBase
from .kube import Conflict, Gone, KubeApi
from .malformed import MalformedReporter
from .metrics import OperatorMetrics
from .mlflow_sync import MlflowJobLogger
from .projector import Projector
from .prometheus import PrometheusClient
from .queue import AccountingQueue
from .record_store import RecordMark, RecordStore
from .seals import Seals
from .settings import OperatorSettings
from .workloads import JOB, Registry, WorkloadAdapter, default_registry
from .workloads.ownership import Ownership
from .write_behind import RunningWrites

log = logging.getLogger(__name__)

RECORD_REF = {"kind": "CarbonRecord", "apiVersion": contract.GROUP_VERSION}
KOPF_WORKER_IDLE_S = 0.2  # s; see configure_kopf


class Operator:
    """Job events and the accounting of one Job; composes the queue, the budget book, the
    enforcer and the projector. kopf handlers are thin wrappers around its methods."""

    def __init__(
        self,
        settings: OperatorSettings,
        kube: KubeApi,
        prometheus: PrometheusClient,
        metrics: OperatorMetrics,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Any] = asyncio.sleep,
        job_logger: MlflowJobLogger | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or default_registry()
        self.kube = kube
        self.prometheus = prometheus
        self.metrics = metrics
        self.clock = clock
        accountant = Accountant(prometheus, settings, clock)
        malformed = MalformedReporter(kube, metrics, clock)
        # The operator's own record of accounted Jobs: the only accounting state it trusts
        # (carbontrack.io/ annotations on a Job are a copy anyone with `edit` could forge).
        self.records = RecordStore(kube, on_malformed=lambda ns, name, errors: malformed.report(
            {**RECORD_REF, "name": name, "namespace": ns, "uid": ""}, "malformed_record",
            "MalformedRecordEntry", errors, "it is not counted"))
        self.seals = Seals(settings.ledger_fold_after_s)
        # phase one of accounting a finished workload runs in the queue's limit (completion.py)
        self.queue = AccountingQueue(settings, metrics, lambda facts: self.completion.account(facts), sleep)
        self.jobs = self.queue.jobs  # latest facts of Jobs not yet accounted/finished
        self.book = BudgetBook(kube, metrics, clock, self.records, self.seals, malformed,
                               on_not_exceeded=self._release_jobs)
        self.enforcer = Enforcer(kube, metrics, clock, lambda: self.book.views.values(), self._budgets_of,
                                 hold=self.registry.hold_patch)
        # which workloads are units of accounting (root owners), and Events for bad owners
        self.ownership = Ownership(kube.read_owner, kube.post_event, clock)
        self.projector = Projector(kube, prometheus, clock, settings.scrape_interval_s)
        self.finalizers = Finalizers(kube)
        # finalizer and budget membership writes of running workloads, behind their events
        self.running = RunningWrites(kube, self.finalizers, settings.finalizer)
        # deferrable Jobs held for the lowest-carbon window (missing credentials fail here)
        self.deferral = Deferral(kube, clock, deferral_config(settings), DeferralMetrics(metrics.registry))
        self.completion = Completion(
            accountant=accountant, records=self.records, book=self.book, kube=kube,
            deferral=self.deferral, seals=self.seals, finalizers=self.finalizers, metrics=metrics,
            clock=clock, budgets_of=self._budgets_of, done=self._accounted, job_logger=job_logger)
        # UIDs of unfinished Jobs seen with a pod started: suspension clears a Job's startTime
        # (Kubernetes >= 1.36), so a Job suspended after running and then deleted would look
        # never-run; this remembers that it ran (not across operator restarts)
        self._ran: set[str] = set()
        # Job UID -> budgets that selected it while it ran (relabelling does not escape them)
        self._members: dict[str, frozenset[str]] = {}
        # one object per distinct set of budget keys: thousands of workloads share a few
        self._key_sets: dict[frozenset[str], frozenset[str]] = {}

    def _accounted(self, uid: str) -> None:
        self._forget(uid)
        self.ownership.forget(uid)

    def _forget(self, uid: str) -> None:
        self.jobs.pop(uid, None)
        self.running.forget(uid)
        self._ran.discard(uid)
        self._members.pop(uid, None)
        self.enforcer.forget(uid)
        self.deferral.forget(uid)

    # ---------------------------------------------------------------- Job events
    async def on_job_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        await self.on_workload_event(JOB, event_type, body)

    async def on_workload_event(self, adapter: WorkloadAdapter, event_type: str | None,
                                body: dict[str, Any]) -> None:
        """An event of any registered kind: the same accounting for every kind; a workload
        whose root owner is another workload (a JobSet's Jobs) is left to that root."""
        if not (body.get("metadata") or {}).get("uid"):
            return
        try:
            facts = adapter.facts(body)
        except ConfigError as err:  # not an object the API server would serve: nothing to account
            log.warning("%s; ignored", err)
            return
        if not await self.ownership.is_root(facts, body, deleted=event_type == "DELETED"):
            self._forget(facts.uid)
            if FINALIZER in facts.finalizers:  # put on before its owner was known
                await self.finalizers.remove(facts, body)
            return
        ran = facts.ever_ran or facts.uid in self._ran
        # Annotations saying "accounted" are only a claim (a namespace user can write them):
        # the operator's record decides. Unfinished Jobs are never accounted, whatever they say.
        recorded = await self._recorded(facts) if facts.accounted and facts.finished else None
        if event_type == "DELETED":
            # Deleted before the finalizer went on (or finalizers are off): account from
            # the last state seen; the record, the ledger and the Event still record it.
            if facts.finished and recorded is None and (facts.outcome != "Deleted" or ran):
                self._ran.discard(facts.uid)
                self.enforcer.forget(facts.uid)
                self.queue.submit(facts)
            else:
                self._forget(facts.uid)
            return
        if recorded is not None:
            self.seals.seal(facts.uid)
            self._forget(facts.uid)
            if not recorded.matches(facts.annotations):
                await self._restore_copy(facts)
            if FINALIZER in facts.finalizers:
                await self.finalizers.remove(facts, body)
            return
        if facts.outcome == "Deleted" and not ran:
            # Deleted before any pod ran (e.g. queued suspended): nothing to account, and our
            # finalizer must not hold the deletion (the Job controller leaves deleted Jobs
            # alone, so it would never finish).
            self._forget(facts.uid)
            if FINALIZER in facts.finalizers:
                await self.finalizers.remove(facts, body)
            return
        if facts.ever_ran and not facts.finished:
            self._ran.add(facts.uid)
        self.jobs[facts.uid] = facts
        if facts.finished:
            self.running.forget(facts.uid)  # a finalizer ask from its running state is moot
            self.queue.submit(facts)
            return
        # budgets that select it while it runs count it even if relabelled (restarts: the
        # BUDGETS annotation the running writes keep)
        found = frozenset(self._budgets_of(facts))
        self._members[facts.uid] = keys = self._key_sets.setdefault(found, found)
        self.running.observe(facts, str(body["metadata"].get("resourceVersion", "")), keys)
        await self.deferral.on_job(facts)
        if self.settings.enforcement:
            await self.enforcer.enforce(facts)

    async def on_budget_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        await self.book.on_event(event_type, body)

    async def _recorded(self, facts: JobFacts) -> RecordMark | None:
        assert facts.finished_at is not None
        try:
            return await self.records.recorded(facts.namespace, facts.uid, facts.finished_at)
        except (TemporaryError, ConfigError) as err:
            # unknown: treat as unrecorded; accounting finds the record (or writes it) and
            # never adds a UID twice
            log.info("record of Job %s/%s not readable yet: %s", facts.namespace, facts.name, err)
            return None

    def _budgets_of(self, job: JobFacts) -> set[str]:
        """Budgets that count this Job: those selecting it now, those that selected it while
        it ran (memory, and the operator's annotation for restarts), same namespace only."""
        own = f"{job.namespace}/"
        keys = {b.key for b in self.book.views.values() if b.selects(job)}
        keys |= self._members.get(job.uid, frozenset())
        keys |= {k for k in job.remembered_budgets if k.startswith(own)}
        return keys

    async def _restore_copy(self, facts: JobFacts) -> None:
        """Someone changed the operator's annotations after accounting (possible where the
        admission policy is not installed): put the record's values back."""
        assert facts.finished_at is not None
        log.warning("Job %s/%s: carbontrack.io annotations differ from the operator's record; "
                    "restoring them", facts.namespace, facts.name)
        self.metrics.accounting_failures.labels(reason="forged_annotations").inc()
        with contextlib.suppress(Gone, Conflict, TemporaryError, ConfigError):
            recorded = await self.records.find(facts.namespace, facts.uid, facts.finished_at)
            if recorded is None:
                return
            await self.kube.patch_workload(facts.kind, facts.namespace, facts.name, facts.uid,
                                      {"metadata": {"annotations": dict(recorded.annotations)}})

    async def _release_jobs(self) -> None:
        if self.settings.enforcement:
            await self.enforcer.release(self.jobs)

    # ---------------------------------------------------------------- timers
    async def run_loops(self, stop: asyncio.Event) -> None:
        """Budget refresh and projection timers (own loops: kopf timers would put a kopf
        finalizer on every Job)."""
        next_budget = next_projection = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_budget:
                await self.book.refresh_all()
                next_budget = now + self.settings.budget_interval_s
            if self.settings.projection_interval_s and now >= next_projection:
                await self.projector.project_all(self.jobs.values())
                next_projection = now + self.settings.projection_interval_s
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)

    async def run_deferral(self, stop: asyncio.Event) -> None:
        """Release deferred Jobs every second, in a loop of its own: a slow budget refresh or
        projection (Prometheus, API writes) neither delays a release past its window nor,
        by failing, stops releases."""
        while not stop.is_set():
            try:
                await self.deferral.tick()
            except Exception:  # logged; the next tick tries again
                log.exception("deferral tick failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)

    async def close(self) -> None:
        await self.running.behind.close()
        await self.queue.close()
        await self.prometheus.close()


def configure_kopf(kopf_settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    """kopf's settings for this operator (applied at start-up)."""
    # Nothing of kopf's own bookkeeping on users' Jobs: no progress or diff-base
    # annotations (only event handlers are used) and no kopf finalizers.
    kopf_settings.persistence.finalizer = contract.KOPF_FINALIZER
    kopf_settings.persistence.diffbase_storage = NoDiffBase()  # no change handlers: no diffs
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.watching.server_timeout = 300
    kopf_settings.networking.request_timeout = 60
    # paged start-up lists bound the peak memory with many Jobs present (None: one page)
    kopf_settings.watching.chunk_size = ours.list_chunk_size or None
    # kopf's per-object worker keeps the object's last event (the whole parsed object, ~17 KiB
    # for a Job) while it idles for more events, 5 s by default: at start-up, with thousands of
    # workloads listed within seconds, that held most of them at once. A worker that idles
    # briefly releases it; the next event of the object starts a new worker (a task).
    kopf_settings.queueing.idle_timeout = KOPF_WORKER_IDLE_S


def _watch_workload(registry: kopf.OperatorRegistry, op: Operator, adapter: WorkloadAdapter) -> None:
    @kopf.on.event(adapter.group, adapter.version, adapter.plural, registry=registry)
    async def _workload(type: str, body: kopf.Body, **_: Any) -> None:  # kopf passes the event type as `type`
        await op.on_workload_event(adapter, type, dict(body))


def build_registry(op: Operator, login: Callable[..., Any] | None = None) -> kopf.OperatorRegistry:
    """A fresh kopf registry with the operator's handlers (no module-level globals)."""
    registry = kopf.OperatorRegistry()
    stop = asyncio.Event()
    loops: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry)
    async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, op.settings)
        loops.append(asyncio.create_task(op.run_loops(stop)))
        loops.append(asyncio.create_task(op.run_deferral(stop)))

    if login is not None:
        kopf.on.login(registry=registry)(login)

    for adapter in op.registry:  # one watch per workload kind (a kind whose CRD is absent waits)
        _watch_workload(registry, op, adapter)

    @kopf.on.event(contract.API_GROUP, contract.API_VERSION, "carbonbudgets", registry=registry)
    async def _budget(type: str, body: kopf.Body, **_: Any) -> None:  # kopf passes the event type as `type`
        await op.on_budget_event(type, dict(body))

    @kopf.on.cleanup(registry=registry)
    async def _cleanup(**_: Any) -> None:
        stop.set()
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await op.close()
        op.kube.close()

    return registry
