"""Accounting one finished workload: its record first, then what is derived from it.

Two phases, which the queue (queue.py) runs one after the other:

- ``account``, inside the queue's concurrency limit: the operator's record is found (a
  crash or restart left it) or computed from Prometheus and written. The record is the
  durable truth; its ``accountedAt`` is stamped here.
- the step it returns, outside the limit: budget ledgers (group commit, budget_book.py), the
  workload's annotations (a copy of the record), the Event and the finalizer removal. These
  wait mostly on batched writes; while they held a slot, new completions queued behind them
  (docs/performance/workloads.md).

A crash between any two writes repeats only idempotent steps: the record is found and
applied again, each budget ledger is keyed by UID, and the annotations are a copy.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from carbontrack.core import contract
from carbontrack.core.records import RecordEntry, build_entry
from carbontrack.core.types import JOULES_PER_KWH
from carbontrack.core.units import format_energy as human_energy
from carbontrack.core.units import format_mass as human_mass

from .accounting import Accountant, Accounting
from .budget_book import BudgetBook
from .deferral import Deferral, record_annotations
from .enforcer import job_ref
from .finalizers import Finalizers
from .jobs import USER_ANNOTATIONS, JobFacts
from .kube import Gone, KubeApi
from .ledger import LedgerEntry
from .metrics import OperatorMetrics
from .mlflow_sync import MlflowJobLogger
from .record_store import RecordStore
from .seals import Seals

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[None]]


class Completion:
    def __init__(
        self,
        *,
        accountant: Accountant,
        records: RecordStore,
        book: BudgetBook,
        kube: KubeApi,
        deferral: Deferral,
        seals: Seals,
        finalizers: Finalizers,
        metrics: OperatorMetrics,
        clock: Callable[[], datetime],
        budgets_of: Callable[[JobFacts], set[str]],
        done: Callable[[str], None],
        job_logger: MlflowJobLogger | None = None,
    ) -> None:
        self._accountant = accountant
        self._records = records
        self._book = book
        self._kube = kube
        self._deferral = deferral
        self._seals = seals
        self._finalizers = finalizers
        self._metrics = metrics
        self._clock = clock
        self._budgets_of = budgets_of  # the budgets that count a workload (handlers.Operator)
        self._done = done  # forget a workload once accounted
        self._job_logger = job_logger  # MLflow: accounted workloads to the run they name

    async def account(self, facts: JobFacts) -> Step:
        """Phase one (raises NotReady/TemporaryError to be retried); returns phase two."""
        assert facts.finished_at is not None
        stored = await self._records.find(facts.namespace, facts.uid, facts.finished_at)
        if stored is not None:  # recorded before a crash or restart: finish what it started
            return functools.partial(self.apply, facts, stored, None)
        acc = await self._accountant.account(facts)
        stored = await self._record(acc, self._clock())
        return functools.partial(self.apply, facts, stored, acc)

    async def _record(self, acc: Accounting, now: datetime) -> RecordEntry:
        """Write the operator's record: the durable truth the budgets, the workload's
        annotations and the reports are derived from (the stored entry wins on a retry)."""
        job = acc.job
        assert job.finished_at is not None
        data = build_entry(
            uid=job.uid, namespace=job.namespace, name=job.name, kind=job.kind,
            outcome=job.outcome or "", started_at=job.lifetime_start,
            finished_at=job.finished_at, accounted_at=now,
            co2e_grams=acc.co2e_grams, energy_kwh=acc.energy_kwh, labels=job.labels,
            budgets=frozenset(self._budgets_of(job)),
            annotations={**acc.annotations(now), **record_annotations(job)},
            inputs={k: v for k, v in job.annotations.items() if k in USER_ANNOTATIONS},
            template=job.template, parallelism=job.parallelism, queries=acc.queries,
        )
        stored = await self._records.add(job.namespace, job.uid, job.finished_at, data)
        self._deferral.recorded(stored.annotations, stored.energy_kwh)
        return stored

    async def apply(self, job: JobFacts, stored: RecordEntry, acc: Accounting | None) -> None:
        """Phase two: budgets, then the workload's annotations (a copy of the record), the
        Event, then the finalizer."""
        entry = LedgerEntry(job.uid, job.name, stored.finished_at, stored.accounted_at,
                            stored.co2e_grams, stored.energy_kwh)
        for budget in list(self._book.views.values()):
            if budget.key in stored.budgets or budget.selects(job):
                await self._book.commit(budget, entry, job)
        patched: dict[str, Any] | None = None
        # Gone: deleted without our finalizer; the record, ledger and Event keep it.
        with contextlib.suppress(Gone):
            patched = await self._kube.patch_workload(job.kind, job.namespace, job.name, job.uid,
                                                      {"metadata": {"annotations": dict(stored.annotations)}})
        summary = summary_of(acc) if acc is not None else record_summary(stored)
        no_data = stored.co2e_grams is None
        await self._kube.post_event(job_ref(job), "CarbonNoData" if no_data else "CarbonAccounted",
                                    summary, warning=no_data, now=self._clock())
        if patched is not None:
            self._seals.seal(job.uid)
            if self._job_logger is not None:  # after the annotations: it logs what they say
                self._job_logger.submit(patched)
            await self._finalizers.remove(job, patched)  # the patch answer has the resourceVersion
        self._done(job.uid)
        self._metrics.jobs_accounted.labels(result="no_data" if no_data else "ok").inc()
        assert job.finished_at is not None
        self._metrics.accounting_latency.observe(
            max((stored.accounted_at - job.finished_at).total_seconds(), 0.0))
        log.info("accounted %s %s/%s: %s", job.kind, job.namespace, job.name, summary)


def record_summary(entry: RecordEntry) -> str:
    if entry.co2e_grams is None:
        return "no energy data (from the operator's record)"
    annotations = entry.annotations
    return (f"{human_mass(entry.co2e_grams)}, {human_energy((entry.energy_kwh or 0.0) * JOULES_PER_KWH)} "
            f"({annotations.get(contract.METHOD, 'unknown')}) in "
            f"{annotations.get(contract.GRID_ZONE, 'unknown zone')} (from the operator's record)")


def summary_of(acc: Accounting) -> str:
    if acc.no_data:
        return f"no energy data: {acc.no_data_reason}"
    grams, kwh = acc.co2e_grams or 0.0, acc.energy_kwh or 0.0
    intensity = (f", {acc.intensity_g_per_kwh:.0f} gCO2e/kWh" if acc.intensity_g_per_kwh else "")
    # units chosen by magnitude (core.units): a small Job reads "778 mgCO2e, 2.80 J", never 7.8e-07
    return (f"{human_mass(grams)}, {human_energy(kwh * JOULES_PER_KWH)} ({acc.method}) in "
            f"{','.join(acc.zones) or 'unknown zone'}{intensity}; "
            f"{acc.job.outcome}, {(acc.window_end - acc.window_start) / timedelta(seconds=1):.0f}s")

