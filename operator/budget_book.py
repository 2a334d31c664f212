"""CarbonBudgets: the in-memory views, and the status writer (ledger, totals, Events).

Budget status is always recomputed from its ledger (budgets.compute_status) and written in
one conditional patch (resourceVersion), so the ledger and its totals change together or not
at all. Entries queue per budget and whichever refresh holds the budget's lock writes all
queued entries at once (group commit: a thousand Jobs finishing together do not mean a
thousand serial read-modify-writes). The next batch starts from the object that write
returned instead of a GET (its resourceVersion is the precondition: had anyone changed the
budget since, the write conflicts and the budget is read again); the timer's refreshes
always read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from carbontrack.core import contract
from carbontrack.core.errors import ConfigError, TemporaryError

from .budgets import BudgetSpec, StatusUpdate, compute_status, invalid_status, parse_spec
from .enforcement import BudgetView
from .jobs import JobFacts
from .kube import Conflict, Gone, KubeApi
from .ledger import Ledger, LedgerEntry
from .malformed import MalformedReporter
from .mass import format_mass
from .metrics import OperatorMetrics
from .record_store import RecordStore
from .seals import Seals
from .timeutil import parse_time

log = logging.getLogger(__name__)

BUDGET_REF = {"kind": "CarbonBudget", "apiVersion": contract.GROUP_VERSION}
JOB_REF = {"kind": "Job", "apiVersion": "batch/v1"}
Pending = tuple[LedgerEntry, JobFacts, "asyncio.Future[None]"]


def budget_view(body: dict[str, Any]) -> BudgetView:
    """What the operator keeps of a CarbonBudget object (pure)."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    try:
        spec: BudgetSpec | None = parse_spec(body.get("spec") or {})
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


class BudgetBook:
    def __init__(self, kube: KubeApi, metrics: OperatorMetrics, clock: Callable[[], datetime],
                 records: RecordStore, seals: Seals, malformed: MalformedReporter,
                 on_not_exceeded: Callable[[], Awaitable[None]]) -> None:
        self._kube = kube
        self._metrics = metrics
        self._clock = clock
        self._records = records
        self._seals = seals
        self._malformed = malformed
        self._on_not_exceeded = on_not_exceeded  # releases held Jobs
        self.views: dict[str, BudgetView] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._pending: dict[str, list[Pending]] = {}
        self._written: dict[str, dict[str, Any]] = {}  # budget key -> the object our last write returned

    async def on_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        written = self._written.get(key)
        if written is not None and written["metadata"].get("resourceVersion") != meta.get("resourceVersion"):
            self._written.pop(key, None)  # changed by someone else (or our event is late): read it again
        if event_type == "DELETED":
            self._written.pop(key, None)
            self._metrics.forget_budget(str(meta.get("namespace")), str(meta.get("name")))
            if self.views.pop(key, None) is not None:
                await self._on_not_exceeded()
            return
        previous = self.views.get(key)
        view = budget_view(body)
        self.views[key] = view
        spec_changed = previous is None or previous.spec != view.spec
        if spec_changed or not (body.get("status") or {}).get("periodName"):
            await self.refresh(view.namespace, view.name)

    async def refresh_all(self) -> None:
        for view in list(self.views.values()):
            try:
                await self.refresh(view.namespace, view.name)
            except (TemporaryError, Gone) as err:
                log.warning("budget %s not refreshed: %s", view.key, err)

    async def commit(self, budget: BudgetView, entry: LedgerEntry, job: JobFacts) -> None:
        """Add a ledger entry to a budget (group commit, see the module docstring)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(budget.key, []).append((entry, job, done))
        with contextlib.suppress(Exception):  # the outcome for *this* entry is in `done`
            await self.refresh(budget.namespace, budget.name, only_if_pending=True)
        if not done.done():
            raise TemporaryError(f"ledger entry for {job.name} not written to {budget.key}")
        await done

    async def refresh(self, namespace: str, name: str, only_if_pending: bool = False) -> None:
        """Re-read the budget, add queued ledger entries that are new, recompute and write the
        status in one conditional patch, then post Events for what changed. With
        ``only_if_pending``, return at once when an earlier holder already wrote the queue."""
        key = f"{namespace}/{name}"
        async with self._locks.setdefault(key, asyncio.Lock()):
            batch = self._pending.pop(key, [])
            if only_if_pending and not batch:
                return
            try:
                update = await self._write(namespace, name, batch, reuse=only_if_pending)
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
            await self._on_not_exceeded()

    async def _write(self, namespace: str, name: str, batch: list[Pending], reuse: bool) -> StatusUpdate | None:
        key = f"{namespace}/{name}"
        for _ in range(10):
            try:
                written = self._written.pop(key, None)
                obj = written if reuse and written is not None else await self._kube.get_budget(namespace, name)
            except Gone:
                self.views.pop(key, None)
                self._metrics.forget_budget(namespace, name)
                return None  # deleted: nothing to count in
            now = self._clock()
            status = obj.get("status") or {}
            rv = str(obj["metadata"]["resourceVersion"])
            try:
                spec = parse_spec(obj.get("spec") or {})
            except ConfigError as err:
                self._metrics.forget_budget(namespace, name)
                await self._kube.patch_budget_status(namespace, name, invalid_status(status, str(err), now), rv)
                return None
            before, malformed = Ledger.from_status_lenient(status.get("ledger"), status.get("ledgerFolded"))
            ref = {**BUDGET_REF, "name": name, "namespace": namespace, "uid": str(obj["metadata"]["uid"])}
            await self._malformed.report(ref, "malformed_ledger", "MalformedLedgerEntry", malformed,
                                         "it is not counted in used")
            new = [(e, j) for e, j, _ in batch if e.uid not in before]
            generation = obj["metadata"].get("generation")
            earlier = [] if status.get("observedGeneration") == generation else \
                await self._earlier_in_period(key, spec, before, now)
            ledger = before.merge([*(e for e, _ in new), *earlier])
            added = {e.uid: e.to_dict() for e in [*earlier, *(e for e, _ in new)]}
            update = compute_status(spec, ledger, status, now)
            update.status["observedGeneration"] = generation
            # folding moves entries into buckets of the same window: totals do not change
            fold = ledger.fold(self._seals.foldable(update.window, ledger)) if update.window else None
            if fold is not None and not fold.ledger_patch:
                fold = None  # nothing to fold this time
            body = dict(update.status)
            if not added and fold is None and "ledger" not in body and "ledgerFolded" not in body \
                    and _unchanged(status, body):
                self._written[key] = obj
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
                answer = await self._kube.patch_budget_status(namespace, name, body, rv)
            except Conflict:
                continue
            if (answer.get("metadata") or {}).get("resourceVersion"):
                self._written[key] = answer
            self._metrics.budget_updates.inc()
            if fold is not None:
                self._metrics.ledger_entries_folded.inc(len(fold.ledger_patch))
            break
        else:
            raise TemporaryError(f"CarbonBudget {key} kept changing; will retry")
        self.views[key] = budget_view({**obj, "status": {**status, **update.status}})
        # Also when nothing was written: after a restart the gauges must reappear.
        self._metrics.set_budget(namespace, name, float(update.status["usedGrams"]),  # type: ignore[arg-type]
                                 spec.limit_grams)
        await self._notify(ref, spec, update, before, new, now)
        return update

    async def _notify(self, ref: dict[str, str], spec: BudgetSpec, update: StatusUpdate, before: Ledger,
                      new: list[tuple[LedgerEntry, JobFacts]], now: datetime) -> None:
        """Events for thresholds crossed, exceeded, recovered; and on the Job that pushed it over."""
        for note in update.notifications:
            reason = "BudgetExceeded" if note.reason == "Exceeded" else note.reason
            await self._kube.post_event(ref, reason, note.message, note.warning, now)
            if note.reason != "Exceeded" or not new:
                continue
            window = update.window
            used = before.totals(window).co2e_grams if window else 0.0
            inside = [(e, j) for e, j in new if window is None or window.contains(e.finished_at)]
            pusher = _pusher(inside, used, spec.limit_grams)
            if pusher is not None:
                entry, job = pusher
                await self._kube.post_event(
                    {**JOB_REF, "name": job.name, "namespace": job.namespace, "uid": job.uid},
                    "BudgetExceeded",
                    f"this Job's {format_mass(entry.co2e_grams or 0.0)} CO2e pushed "
                    f"CarbonBudget {ref['name']} over its limit: {note.message}", True, now,
                )

    async def _earlier_in_period(self, key: str, spec: BudgetSpec, before: Ledger,
                                 now: datetime) -> list[LedgerEntry]:
        """A budget created or edited mid-period counts the Jobs already accounted in its
        period that it selects (by their labels when accounted, or their recorded
        membership), from the operator's records; entries it has are left as they are."""
        window = spec.period.window(now)
        namespace = key.split("/", 1)[0]
        out = []
        async for rec in self._records.entries_between(namespace, window.start, window.end):
            if rec.uid in before:
                continue
            if key in rec.budgets or spec.selector.matches(rec.labels):
                out.append(LedgerEntry(rec.uid, rec.name, rec.finished_at, rec.accounted_at,
                                       rec.co2e_grams, rec.energy_kwh))
        if out:
            log.info("CarbonBudget %s: %d Jobs accounted earlier in %s counted", key, len(out), window.name)
        return out


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
