"""The operator's behaviour, wired into a kopf registry by `build_registry`.

Design (docs/operator.md has the long form):
- Job watch events only *observe*: they add/remove the accounting finalizer, enforce
  budgets and hand finished, unaccounted Jobs to an in-process queue. The queue accounts
  each Job UID at most once at a time, retrying with backoff until Prometheus has scraped
  past the completion; nothing is lost on restart because the Job itself (unaccounted,
  held by the finalizer) is the durable to-do record and kopf re-lists it.
- Order of writes per Job: budget ledgers first (idempotent, keyed by UID, with a
  resourceVersion precondition), then the Job annotations, then the finalizer. A crash
  between any two only repeats idempotent steps: no double counting.
- Budget status is always recomputed from its ledger (budgets.compute_status).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import kopf

from carbontrack.core.errors import ConfigError, TemporaryError
from carbontrack.core.records import RecordEntry, build_entry

from . import promql
from .accounting import Accountant, Accounting, NotReady
from .budgets import BudgetSpec, compute_status, invalid_status, parse_spec
from .enforcement import BudgetView, to_resume, to_suspend
from .jobs import (
    BUDGETS,
    EXPECTED_DURATION,
    FINALIZER,
    SUSPENDED_BY,
    USER_ANNOTATIONS,
    JobFacts,
    job_facts,
)
from .kube import Conflict, Gone, KubeApi
from .ledger import Ledger, LedgerEntry, bucket_start
from .mass import format_mass
from .metrics import OperatorMetrics
from .mlflow_sync import MlflowJobLogger
from .period import Window
from .projection import parse_duration, project
from .prometheus import PrometheusClient, QueryError
from .record_store import RecordStore
from .settings import OperatorSettings
from .timeutil import format_time, parse_time

log = logging.getLogger(__name__)

JOB_REF = {"kind": "Job", "apiVersion": "batch/v1"}
RECORD_REF = {"kind": "CarbonRecord", "apiVersion": "carbontrack.io/v1alpha1"}
BUDGET_REF = {"kind": "CarbonBudget", "apiVersion": "carbontrack.io/v1alpha1"}


class Operator:
    """All state and behaviour; kopf handlers are thin wrappers around its methods."""

    def __init__(
        self,
        settings: OperatorSettings,
        kube: KubeApi,
        prometheus: PrometheusClient,
        metrics: OperatorMetrics,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Any] = asyncio.sleep,
        job_logger: MlflowJobLogger | None = None,
    ) -> None:
        self.settings = settings
        self.job_logger = job_logger  # MLflow: accounted Jobs to the run they name; None = off
        self.kube = kube
        self.prometheus = prometheus
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep
        self.accountant = Accountant(prometheus, settings, clock)
        self.budgets: dict[str, BudgetView] = {}
        self.jobs: dict[str, JobFacts] = {}  # latest facts of Jobs not yet accounted/finished
        self._queue: dict[str, asyncio.Task[None]] = {}
        self._budget_locks: dict[str, asyncio.Lock] = {}
        self._pending: dict[str, list[tuple[LedgerEntry, JobFacts, asyncio.Future[None]]]] = {}
        self._semaphore = asyncio.Semaphore(settings.max_concurrent_accountings)
        self._stopping = False
        self._malformed_reported: dict[str, tuple[str, ...]] = {}  # budget key -> messages
        # Job UID -> monotonic time its accounting annotation was seen: from then on the Job
        # is never accounted again, so its ledger entries may be folded (ledger.py)
        # (forgotten an hour after folding was due: _seal keeps it bounded)
        self._sealed: dict[str, float] = {}
        self._seal_check = 1024
        # UIDs of unfinished Jobs seen with a pod started: suspension clears a Job's startTime
        # (Kubernetes >= 1.36), so a Job suspended after running and then deleted would look
        # never-run; this remembers that it ran (not across operator restarts)
        self._ran: set[str] = set()
        # The operator's own record of accounted Jobs: the only accounting state it trusts
        # (carbontrack.io/ annotations on a Job are a copy anyone with `edit` could forge).
        self.records = RecordStore(kube, on_malformed=self._report_malformed_record)
        # Job UID -> budgets that selected it while it ran (relabelling does not escape them)
        self._members: dict[str, set[str]] = {}
        # UIDs of held Jobs whose hold was announced (Event); forgotten when they end
        self._held_noted: set[str] = set()

    # ---------------------------------------------------------------- Job events
    async def on_job_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        if not (body.get("metadata") or {}).get("uid"):
            return
        facts = job_facts(body)
        ran = facts.ever_ran or facts.uid in self._ran
        # Annotations saying "accounted" are only a claim (a namespace user can write them):
        # the operator's record decides. Unfinished Jobs are never accounted, whatever they say.
        recorded = await self._recorded(facts) if facts.accounted and facts.finished else None
        if event_type == "DELETED":
            self.jobs.pop(facts.uid, None)
            self._ran.discard(facts.uid)
            # Deleted before the finalizer went on (or finalizers are off): account from
            # the last state seen; the record, the ledger and the Event still record it.
            self._held_noted.discard(facts.uid)
            if facts.finished and recorded is None and (facts.outcome != "Deleted" or ran):
                self._submit(facts)
            else:
                self._members.pop(facts.uid, None)
            return
        if recorded is not None:
            self._seal(facts.uid)
            self._ran.discard(facts.uid)
            self.jobs.pop(facts.uid, None)
            self._members.pop(facts.uid, None)
            self._held_noted.discard(facts.uid)
            if _copy_differs(facts, recorded):
                await self._restore_copy(facts, recorded)
            if FINALIZER in facts.finalizers:
                await self._remove_finalizer(facts, body)
            return
        if facts.outcome == "Deleted" and not ran:
            # Deleted before any pod ran (e.g. queued suspended): nothing to account, and our
            # finalizer must not hold the deletion (the Job controller leaves deleted Jobs
            # alone, so it would never finish).
            self.jobs.pop(facts.uid, None)
            self._members.pop(facts.uid, None)
            if FINALIZER in facts.finalizers:
                await self._remove_finalizer(facts, body)
            return
        if facts.ever_ran and not facts.finished:
            self._ran.add(facts.uid)
        self.jobs[facts.uid] = facts
        if facts.finished:
            self._submit(facts)
            return
        if self.settings.finalizer and FINALIZER not in facts.finalizers and not facts.deleting:
            await self._add_finalizer(facts, body)
        await self._remember_budgets(facts)
        if self.settings.enforcement:
            await self._enforce(facts)

    async def _recorded(self, facts: JobFacts) -> RecordEntry | None:
        assert facts.finished_at is not None
        try:
            return await self.records.find(facts.namespace, facts.uid, facts.finished_at)
        except (TemporaryError, ConfigError) as err:
            # unknown: treat as unrecorded; accounting finds the record (or writes it) and
            # never adds a UID twice
            log.info("record of Job %s/%s not readable yet: %s", facts.namespace, facts.name, err)
            return None

    def _budgets_of(self, job: JobFacts) -> set[str]:
        """Budgets that count this Job: those selecting it now, those that selected it while
        it ran (memory, and the operator's annotation for restarts), same namespace only."""
        own = f"{job.namespace}/"
        keys = {b.key for b in self.budgets.values() if b.selects(job)}
        keys |= self._members.get(job.uid, set())
        keys |= {k for k in job.remembered_budgets if k.startswith(own)}
        return keys

    async def _remember_budgets(self, job: JobFacts) -> None:
        """Note which budgets select a running Job, so that relabelling it later does not
        take it out of them (written to the operator-owned BUDGETS annotation: restarts)."""
        keys = self._budgets_of(job)
        self._members[job.uid] = keys
        if keys <= job.remembered_budgets:
            return
        try:
            await self.kube.patch_job(job.namespace, job.name, job.uid,
                                      {"metadata": {"annotations": {BUDGETS: ",".join(sorted(keys))}}})
        except (Gone, Conflict, TemporaryError) as err:
            log.info("budget membership not written to Job %s/%s yet: %s", job.namespace, job.name, err)

    async def _restore_copy(self, facts: JobFacts, recorded: RecordEntry) -> None:
        """Someone changed the operator's annotations after accounting (possible where the
        admission policy is not installed): put the record's values back."""
        log.warning("Job %s/%s: carbontrack.io annotations differ from the operator's record; "
                    "restoring them", facts.namespace, facts.name)
        self.metrics.accounting_failures.labels(reason="forged_annotations").inc()
        with contextlib.suppress(Gone, Conflict, TemporaryError):
            await self.kube.patch_job(facts.namespace, facts.name, facts.uid,
                                      {"metadata": {"annotations": dict(recorded.annotations)}})

    async def _add_finalizer(self, facts: JobFacts, body: dict[str, Any]) -> None:
        finalizers = [*facts.finalizers, FINALIZER]
        rv = str(body["metadata"].get("resourceVersion", ""))
        try:
            await self.kube.set_job_finalizers(facts.namespace, facts.name, facts.uid, finalizers, rv)
        except (Conflict, Gone, TemporaryError) as err:
            log.info("finalizer not added to Job %s/%s yet: %s", facts.namespace, facts.name, err)

    async def _remove_finalizer(self, facts: JobFacts, body: dict[str, Any] | None = None) -> None:
        for _ in range(5):
            if body is None:
                try:
                    body = await self.kube.get_job(facts.namespace, facts.name)
                except Gone:
                    return
            meta = body.get("metadata") or {}
            if meta.get("uid") != facts.uid:
                return
            current = list(meta.get("finalizers") or [])
            if FINALIZER not in current:
                return
            remaining = [f for f in current if f != FINALIZER]
            try:
                await self.kube.set_job_finalizers(
                    facts.namespace, facts.name, facts.uid, remaining, str(meta.get("resourceVersion"))
                )
                return
            except Conflict:
                body = None  # re-read and try again
            except Gone:
                return

    # ---------------------------------------------------------------- accounting queue
    def _submit(self, facts: JobFacts) -> None:
        task = self._queue.get(facts.uid)
        self.jobs[facts.uid] = facts  # the task reads the latest facts on each try
        if task is not None and not task.done():
            return
        self._queue[facts.uid] = asyncio.create_task(self._account_until_done(facts.uid))
        self.metrics.pending_jobs.set(len(self._queue))

    async def _account_until_done(self, uid: str) -> None:
        delay = self.settings.retry_initial_s
        poll = self.settings.scrape_interval_s  # grows while Prometheus is not ready for the Job
        try:
            while not self._stopping:
                facts = self.jobs.get(uid)
                if facts is None:
                    return
                try:
                    async with self._semaphore:
                        assert facts.finished_at is not None
                        stored = await self.records.find(facts.namespace, uid, facts.finished_at)
                        if stored is not None:  # recorded before a crash or restart: finish it
                            await self._apply_record(facts, stored, None)
                        else:
                            await self._apply(await self.accountant.account(facts))
                    return
                except NotReady as wait:
                    if wait.exact:
                        await self.sleep(max(wait.delay_s, 0.05))
                    else:
                        await self.sleep(max(poll, 0.05))
                        # Grow gently up to a few scrape intervals: a late series is usually
                        # one or two scrapes late, and waiting Jobs must not flood Prometheus.
                        poll = min(poll * 1.5, 5 * self.settings.scrape_interval_s,
                                   self.settings.retry_max_s)
                except TemporaryError as err:
                    self.metrics.accounting_failures.labels(reason="temporary").inc()
                    log.warning("accounting Job %s/%s postponed %.0fs: %s",
                                facts.namespace, facts.name, delay, err)
                    await self.sleep(delay)
                    delay = min(delay * 2, self.settings.retry_max_s)
                except (QueryError, Conflict) as err:
                    self.metrics.accounting_failures.labels(reason=type(err).__name__.lower()).inc()
                    log.error("accounting Job %s/%s failed: %s", facts.namespace, facts.name, err)
                    await self.sleep(delay)
                    delay = min(delay * 2, self.settings.retry_max_s)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not kill the queue silently: log, count, retry later
            self.metrics.accounting_failures.labels(reason="internal").inc()
            log.exception("accounting of Job UID %s crashed; retrying later", uid)
            await self.sleep(self.settings.retry_max_s)
            self._queue.pop(uid, None)
            facts = self.jobs.get(uid)
            if facts is not None:
                self._submit(facts)
            return
        finally:
            if self._queue.get(uid) is asyncio.current_task():
                self._queue.pop(uid, None)
            self.metrics.pending_jobs.set(len(self._queue))

    async def _apply(self, acc: Accounting) -> None:
        job = acc.job
        stored = await self._record(acc, self.clock())
        await self._apply_record(job, stored, acc)

    async def _record(self, acc: Accounting, now: datetime) -> RecordEntry:
        """Write the operator's record first: it is the durable truth the budgets, the Job's
        annotations and the reports are derived from (the stored entry wins on a retry)."""
        job = acc.job
        assert job.finished_at is not None
        data = build_entry(
            uid=job.uid, namespace=job.namespace, name=job.name, kind="Job",
            outcome=job.outcome or "", started_at=job.lifetime_start,
            finished_at=job.finished_at, accounted_at=now,
            co2e_grams=acc.co2e_grams, energy_kwh=acc.energy_kwh, labels=job.labels,
            budgets=frozenset(self._budgets_of(job)), annotations=acc.annotations(now),
            inputs={k: v for k, v in job.annotations.items() if k in USER_ANNOTATIONS},
            template=job.template, parallelism=job.parallelism, queries=acc.queries,
        )
        return await self.records.add(job.namespace, job.uid, job.finished_at, data)

    async def _apply_record(self, job: JobFacts, stored: RecordEntry, acc: Accounting | None) -> None:
        """Budgets, then the Job's annotations (a copy of the record), then the finalizer."""
        entry = LedgerEntry(job.uid, job.name, stored.finished_at, stored.accounted_at,
                            stored.co2e_grams, stored.energy_kwh)
        for budget in list(self.budgets.values()):
            if budget.key in stored.budgets or budget.selects(job):
                await self._commit_entry(budget, entry, job)
        patched: dict[str, Any] | None = None
        # Gone: deleted without our finalizer; the record, ledger and Event keep it.
        with contextlib.suppress(Gone):
            patched = await self.kube.patch_job(job.namespace, job.name, job.uid,
                                                {"metadata": {"annotations": dict(stored.annotations)}})
        summary = _summary(acc) if acc is not None else _record_summary(stored)
        no_data = stored.co2e_grams is None
        await self.kube.post_event(self._job_ref(job), "CarbonNoData" if no_data else "CarbonAccounted",
                                   summary, warning=no_data, now=self.clock())
        if patched is not None:
            self._seal(job.uid)
            if self.job_logger is not None:  # after the annotations: it logs what they say
                self.job_logger.submit(patched)
            await self._remove_finalizer(job, patched)  # the patch answer has the resourceVersion
        self.jobs.pop(job.uid, None)
        self._ran.discard(job.uid)
        self._members.pop(job.uid, None)
        self._held_noted.discard(job.uid)
        self.metrics.jobs_accounted.labels(result="no_data" if no_data else "ok").inc()
        assert job.finished_at is not None
        self.metrics.accounting_latency.observe(
            max((stored.accounted_at - job.finished_at).total_seconds(), 0.0))
        log.info("accounted Job %s/%s: %s", job.namespace, job.name, summary)

    async def _report_malformed_record(self, namespace: str, name: str,
                                       errors: list[ConfigError]) -> None:
        """A hand-edited record entry is never counted and never crashes the operator: say
        once (until the set of bad entries changes) which entry is wrong."""
        key = f"record:{namespace}/{name}"
        messages = tuple(sorted(str(e) for e in errors))
        if self._malformed_reported.get(key, ()) == messages:
            return
        self._malformed_reported[key] = messages
        for message in messages:
            self.metrics.accounting_failures.labels(reason="malformed_record").inc()
            log.error("CarbonRecord %s/%s: %s", namespace, name, message)
            await self.kube.post_event({**RECORD_REF, "name": name, "namespace": namespace, "uid": ""},
                                       "MalformedRecordEntry", f"{message}; it is not counted",
                                       True, self.clock())

    @staticmethod
    def _job_ref(job: JobFacts) -> dict[str, str]:
        return {**JOB_REF, "name": job.name, "namespace": job.namespace, "uid": job.uid}

    # ---------------------------------------------------------------- budgets
    def _seal(self, uid: str) -> None:
        now = time.monotonic()
        self._sealed.setdefault(uid, now)
        if len(self._sealed) >= self._seal_check:  # bounded with or without budgets to fold
            horizon = self.settings.ledger_fold_after_s + 3600.0
            for old in [u for u, at in self._sealed.items() if now - at > horizon]:
                del self._sealed[old]
            self._seal_check = max(1024, 2 * len(self._sealed))

    def _foldable(self, window: Window, ledger: Ledger) -> list[str]:
        """UIDs of entries to fold now: sealed long enough, inside a window whose buckets are
        each wholly inside or outside it (so totals stay exact): the start on a bucket
        boundary, and the end too unless the window slides (it then ends now, after every
        finished Job, and only moves later)."""
        if not self._sealed:
            return []
        if bucket_start(window.start) != window.start or (
                not window.sliding and bucket_start(window.end) != window.end):
            return []
        now = time.monotonic()
        after = self.settings.ledger_fold_after_s
        return [e.uid for e in ledger.entries()
                if window.contains(e.finished_at) and now - self._sealed.get(e.uid, now + 1) >= after]

    async def on_budget_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        if event_type == "DELETED":
            self.metrics.forget_budget(str(meta.get("namespace")), str(meta.get("name")))
            old = self.budgets.pop(key, None)
            if old is not None:
                await self._release_jobs()
            return
        previous = self.budgets.get(key)
        view = self._view(body)
        self.budgets[key] = view
        spec_changed = previous is None or previous.spec != view.spec
        status = body.get("status") or {}
        if spec_changed or not status.get("periodName"):
            await self.refresh_budget(view.namespace, view.name)

    def _view(self, body: dict[str, Any]) -> BudgetView:
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        try:
            spec = parse_spec(body.get("spec") or {})
        except ConfigError:
            spec = None
        exceeded_at = status.get("exceededAt")
        return BudgetView(
            namespace=str(meta.get("namespace")),
            name=str(meta.get("name")),
            uid=str(meta.get("uid")),
            spec=spec,
            exceeded=bool(status.get("exceeded")),
            exceeded_at=parse_time(exceeded_at) if isinstance(exceeded_at, str) else None,
            used=str(status.get("used", "")),
            period_name=str(status.get("periodName", "")),
        )

    async def refresh_all_budgets(self) -> None:
        for view in list(self.budgets.values()):
            try:
                await self.refresh_budget(view.namespace, view.name)
            except (TemporaryError, Gone) as err:
                log.warning("budget %s not refreshed: %s", view.key, err)

    async def _commit_entry(self, budget: BudgetView, entry: LedgerEntry, job: JobFacts) -> None:
        """Add a ledger entry to a budget. Entries queue per budget and whichever refresh
        holds the budget's lock writes all queued entries in one status patch (group commit:
        a thousand Jobs finishing together do not mean a thousand serial read-modify-writes)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(budget.key, []).append((entry, job, done))
        with contextlib.suppress(Exception):  # the outcome for *this* entry is in `done`
            await self.refresh_budget(budget.namespace, budget.name, only_if_pending=True)
        if not done.done():
            raise TemporaryError(f"ledger entry for {job.name} not written to {budget.key}")
        await done

    async def refresh_budget(self, namespace: str, name: str, only_if_pending: bool = False) -> None:
        """Re-read the budget, add queued ledger entries that are new, recompute and write the
        status in one conditional patch, then post Events for what changed. With
        ``only_if_pending``, return at once when an earlier holder already wrote the queue."""
        key = f"{namespace}/{name}"
        lock = self._budget_locks.setdefault(key, asyncio.Lock())
        async with lock:
            batch = self._pending.pop(key, [])
            if only_if_pending and not batch:
                return
            try:
                update = await self._write_budget(namespace, name, batch)
            except asyncio.CancelledError:
                for _, _, done in batch:
                    done.cancel()
                raise
            except Exception as err:
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(err)
                raise
            for _, _, done in batch:
                if not done.done():
                    done.set_result(None)
        if update is not None and not update.exceeded:
            await self._release_jobs()

    async def _write_budget(
        self, namespace: str, name: str, batch: list[tuple[LedgerEntry, JobFacts, Any]]
    ) -> Any:
        key = f"{namespace}/{name}"
        for _ in range(10):
            try:
                obj = await self.kube.get_budget(namespace, name)
            except Gone:
                self.budgets.pop(key, None)
                self.metrics.forget_budget(namespace, name)
                return None  # deleted: nothing to count in
            now = self.clock()
            status = obj.get("status") or {}
            rv = str(obj["metadata"]["resourceVersion"])
            try:
                spec = parse_spec(obj.get("spec") or {})
            except ConfigError as err:
                self.metrics.forget_budget(namespace, name)
                await self.kube.patch_budget_status(namespace, name,
                                                    invalid_status(status, str(err), now), rv)
                return None
            before, malformed = Ledger.from_status_lenient(status.get("ledger"), status.get("ledgerFolded"))
            await self._report_malformed(namespace, name, obj, malformed, now)
            new = [(e, j) for e, j, _ in batch if e.uid not in before]
            generation = obj["metadata"].get("generation")
            earlier = [] if status.get("observedGeneration") == generation else \
                await self._earlier_in_period(namespace, name, spec, before, now)
            ledger = before.merge([*(e for e, _ in new), *earlier])
            added = {e.uid: e.to_dict() for e in [*earlier, *(e for e, _ in new)]}
            update = compute_status(spec, ledger, status, now)
            update.status["observedGeneration"] = generation
            # folding moves entries into buckets of the same window: totals do not change
            fold = ledger.fold(self._foldable(update.window, ledger)) if update.window else None
            if fold is not None and not fold.ledger_patch:
                fold = None  # nothing to fold this time
            body = dict(update.status)
            if not added and fold is None and "ledger" not in body and "ledgerFolded" not in body \
                    and _unchanged(status, body):
                break  # nothing new: no write, no watch event, no Events
            pruned = body.get("ledger")
            if added or fold is not None:
                body["ledger"] = {**added, **(fold.ledger_patch if fold else {}),
                                  **(pruned if isinstance(pruned, dict) else {})}
            if fold is not None:
                pruned_folded = body.get("ledgerFolded")
                body["ledgerFolded"] = {**fold.folded_patch,
                                        **(pruned_folded if isinstance(pruned_folded, dict) else {})}
            try:
                await self.kube.patch_budget_status(namespace, name, body, rv)
            except Conflict:
                continue
            self.metrics.budget_updates.inc()
            if fold is not None:
                self.metrics.ledger_entries_folded.inc(len(fold.ledger_patch))
            break
        else:
            raise TemporaryError(f"CarbonBudget {key} kept changing; will retry")
        meta = obj["metadata"]
        self.budgets[key] = self._view({**obj, "status": {**status, **update.status}})
        # Also when nothing was written: after a restart the gauges must reappear.
        self.metrics.set_budget(namespace, name, float(update.status["usedGrams"]),  # type: ignore[arg-type]
                                spec.limit_grams)
        ref = {**BUDGET_REF, "name": name, "namespace": namespace, "uid": str(meta["uid"])}
        for note in update.notifications:
            reason = "BudgetExceeded" if note.reason == "Exceeded" else note.reason
            await self.kube.post_event(ref, reason, note.message, note.warning, now)
            if note.reason == "Exceeded" and new:
                window = update.window
                used = before.totals(window).co2e_grams if window else 0.0
                inside = [(e, j) for e, j in new if window is None or window.contains(e.finished_at)]
                pusher = _pusher(inside, used, spec.limit_grams)
                if pusher is not None:
                    entry, job = pusher
                    await self.kube.post_event(
                        self._job_ref(job), "BudgetExceeded",
                        f"this Job's {format_mass(entry.co2e_grams or 0.0)} CO2e pushed "
                        f"CarbonBudget {name} over its limit: {note.message}", True, now,
                    )
        return update

    async def _earlier_in_period(self, namespace: str, name: str, spec: BudgetSpec,
                                 before: Ledger, now: datetime) -> list[LedgerEntry]:
        """A budget created or edited mid-period counts the Jobs already accounted in its
        period that it selects (by their labels when accounted, or their recorded
        membership), from the operator's records; entries it has are left as they are."""
        window = spec.period.window(now)
        key = f"{namespace}/{name}"
        out = []
        async for rec in self.records.entries_between(namespace, window.start, window.end):
            if rec.uid in before:
                continue
            if key in rec.budgets or spec.selector.matches(rec.labels):
                out.append(LedgerEntry(rec.uid, rec.name, rec.finished_at, rec.accounted_at,
                                       rec.co2e_grams, rec.energy_kwh))
        if out:
            log.info("CarbonBudget %s: %d Jobs accounted earlier in %s counted", key, len(out),
                     window.name)
        return out

    async def _report_malformed(self, namespace: str, name: str, obj: dict[str, Any],
                                errors: list[ConfigError], now: datetime) -> None:
        """A malformed ledger entry cannot be fixed by retrying: count the valid ones, and
        say once per budget (until the set of bad entries changes) which entry to fix."""
        key = f"{namespace}/{name}"
        messages = tuple(sorted(str(e) for e in errors))
        if self._malformed_reported.get(key, ()) == messages:
            return
        self._malformed_reported[key] = messages
        for message in messages:
            self.metrics.accounting_failures.labels(reason="malformed_ledger").inc()
            log.error("CarbonBudget %s: %s", key, message)
            ref = {**BUDGET_REF, "name": name, "namespace": namespace,
                   "uid": str(obj["metadata"]["uid"])}
            await self.kube.post_event(ref, "MalformedLedgerEntry",
                                       f"{message}; it is not counted in used", True, now)

    # ---------------------------------------------------------------- enforcement
    async def _enforce(self, facts: JobFacts) -> None:
        budgets = list(self.budgets.values())
        blocker = to_suspend(facts, budgets)
        if blocker is not None:
            await self._suspend(facts, blocker)
        elif to_resume(facts, budgets, self._budgets_of(facts)):
            await self._resume(facts)
        elif facts.suspended and SUSPENDED_BY in facts.annotations and facts.uid not in self._held_noted:
            # held at admission (the chart's MutatingAdmissionPolicy): say why, once
            self._held_noted.add(facts.uid)
            self.metrics.jobs_suspended.inc()
            await self.kube.post_event(
                self._job_ref(facts), "SuspendedByCarbonBudget",
                f"held at admission: CarbonBudget {facts.annotations[SUSPENDED_BY]} is exceeded; "
                "the Job resumes when the period resets or the limit is raised", True, self.clock())

    async def _suspend(self, job: JobFacts, budget: BudgetView) -> None:
        try:
            await self.kube.patch_job(job.namespace, job.name, job.uid, {
                "metadata": {"annotations": {SUSPENDED_BY: budget.key}},
                "spec": {"suspend": True},
            })
        except (Gone, Conflict, TemporaryError) as err:
            log.warning("could not suspend Job %s/%s: %s", job.namespace, job.name, err)
            return
        self.metrics.jobs_suspended.inc()
        self._held_noted.add(job.uid)
        limit = budget.spec.limit_text if budget.spec else "?"
        await self.kube.post_event(
            self._job_ref(job), "SuspendedByCarbonBudget",
            f"suspended: CarbonBudget {budget.name} is exceeded ({budget.used} of {limit} in "
            f"{budget.period_name}); the Job resumes when the period resets or the limit is raised",
            True, self.clock(),
        )

    async def _resume(self, job: JobFacts) -> None:
        try:
            await self.kube.patch_job(job.namespace, job.name, job.uid, {
                "metadata": {"annotations": {SUSPENDED_BY: None}},
                "spec": {"suspend": False},
            })
        except (Gone, Conflict, TemporaryError) as err:
            log.warning("could not resume Job %s/%s: %s", job.namespace, job.name, err)
            return
        self.metrics.jobs_resumed.inc()
        self._held_noted.discard(job.uid)
        await self.kube.post_event(
            self._job_ref(job), "ResumedByCarbonBudget",
            f"resumed: the CarbonBudget that suspended it ({job.annotations.get(SUSPENDED_BY)}) "
            "allows new Jobs again", False, self.clock(),
        )

    async def _release_jobs(self) -> None:
        if not self.settings.enforcement:
            return
        budgets = list(self.budgets.values())
        for job in list(self.jobs.values()):
            if to_resume(job, budgets, self._budgets_of(job)):
                await self._resume(job)
                self.jobs[job.uid] = _unsuspended(job)

    # ---------------------------------------------------------------- projections
    async def project_running_jobs(self) -> None:
        for job in list(self.jobs.values()):
            if job.finished or job.suspended or job.deleting:
                continue
            try:
                await self._project(job)
            except (TemporaryError, Gone, QueryError, ConfigError) as err:
                log.info("no projection for Job %s/%s: %s", job.namespace, job.name, err)

    async def _project(self, job: JobFacts) -> None:
        now = self.clock()
        start = job.lifetime_start
        elapsed = (now - start).total_seconds()
        if elapsed <= 0:
            return
        window = elapsed + self.settings.scrape_interval_s
        co2e = await self.prometheus.query(promql.job_totals(promql.CO2E, job.uid, window), now)
        if not co2e:
            return  # no data yet: say nothing rather than "0 g so far"
        energy = await self.prometheus.query(promql.job_totals(promql.ENERGY, job.uid, window), now)
        so_far = sum(s.value for s in co2e)
        kwh = sum(s.value for s in energy) / 3.6e6
        expected = job.annotations.get(EXPECTED_DURATION)
        projection = project(so_far, elapsed, parse_duration(expected) if expected else None,
                             job.completions, job.succeeded)
        annotations: dict[str, str | None] = {
            "carbontrack.io/co2e-grams-so-far": f"{so_far:.6g}",
            "carbontrack.io/energy-kwh-so-far": f"{kwh:.6g}",
            "carbontrack.io/projected-at": format_time(now),
            "carbontrack.io/projected-co2e-grams": (
                f"{projection.total_grams:.6g}" if projection else None
            ),
            "carbontrack.io/projection-basis": projection.basis if projection else None,
        }
        await self.kube.patch_job(job.namespace, job.name, job.uid,
                                  {"metadata": {"annotations": annotations}})

    async def run_loops(self, stop: asyncio.Event) -> None:
        """Budget refresh and projection timers (own loops: kopf timers would put a kopf
        finalizer on every Job)."""
        next_budget = next_projection = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_budget:
                await self.refresh_all_budgets()
                next_budget = now + self.settings.budget_interval_s
            if self.settings.projection_interval_s and now >= next_projection:
                await self.project_running_jobs()
                next_projection = now + self.settings.projection_interval_s
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)

    async def close(self) -> None:
        self._stopping = True
        tasks = list(self._queue.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.prometheus.close()


def _pusher(
    new: list[tuple[LedgerEntry, JobFacts]], used_before: float, limit: float
) -> tuple[LedgerEntry, JobFacts] | None:
    """The Job whose entry (in finishing order) took the total to the limit."""
    total = used_before
    for entry, job in sorted(new, key=lambda pair: pair[0].finished_at):
        total += entry.co2e_grams or 0.0
        if total >= limit:
            return entry, job
    return None


def _unchanged(previous: dict[str, Any], new: dict[str, Any]) -> bool:
    """Same status apart from the refresh time (conditions keep their transition times)."""
    volatile = ("lastUpdate",)
    return all(previous.get(k) == v for k, v in new.items() if k not in volatile)


def _unsuspended(job: JobFacts) -> JobFacts:
    from dataclasses import replace

    annotations = {k: v for k, v in job.annotations.items() if k != SUSPENDED_BY}
    return replace(job, suspended=False, annotations=annotations)


def _copy_differs(facts: JobFacts, recorded: RecordEntry) -> bool:
    return any(facts.annotations.get(k) != v for k, v in recorded.annotations.items())


def _record_summary(entry: RecordEntry) -> str:
    if entry.co2e_grams is None:
        return "no energy data (from the operator's record)"
    annotations = entry.annotations
    return (f"{format_mass(entry.co2e_grams)} CO2e, {entry.energy_kwh or 0.0:.4g} kWh "
            f"({annotations.get('carbontrack.io/method', 'unknown')}) in "
            f"{annotations.get('carbontrack.io/grid-zone', 'unknown zone')} (from the operator's record)")


def _summary(acc: Accounting) -> str:
    if acc.no_data:
        return f"no energy data: {acc.no_data_reason}"
    grams, kwh = acc.co2e_grams or 0.0, acc.energy_kwh or 0.0
    intensity = (f", {acc.intensity_g_per_kwh:.0f} gCO2e/kWh" if acc.intensity_g_per_kwh else "")
    return (f"{format_mass(grams)} CO2e, {kwh:.4g} kWh ({acc.method}) in "
            f"{','.join(acc.zones) or 'unknown zone'}{intensity}; "
            f"{acc.job.outcome}, {(acc.window_end - acc.window_start) / timedelta(seconds=1):.0f}s")


def configure_kopf(kopf_settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    """kopf's settings for this operator (applied at start-up)."""
    # Nothing of kopf's own bookkeeping on users' Jobs: no progress or diff-base
    # annotations (only event handlers are used) and no kopf finalizers.
    kopf_settings.persistence.finalizer = "carbontrack.io/kopf"
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.watching.server_timeout = 300
    kopf_settings.networking.request_timeout = 60
    # paged start-up lists bound the peak memory with many Jobs present (None: one page)
    kopf_settings.watching.chunk_size = ours.list_chunk_size or None


def build_registry(op: Operator, login: Callable[..., Any] | None = None) -> kopf.OperatorRegistry:
    """A fresh kopf registry with the operator's handlers (no module-level globals)."""
    registry = kopf.OperatorRegistry()
    stop = asyncio.Event()
    loops: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry)
    async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, op.settings)
        loops.append(asyncio.create_task(op.run_loops(stop)))

    if login is not None:
        kopf.on.login(registry=registry)(login)

    @kopf.on.event("batch", "v1", "jobs", registry=registry)
    async def _job(type: str, body: kopf.Body, **_: Any) -> None:  # kopf passes the event type as `type`
        await op.on_job_event(type, dict(body))

    @kopf.on.event("carbontrack.io", "v1alpha1", "carbonbudgets", registry=registry)
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
