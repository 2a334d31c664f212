"""The last slice of a long-running workload deleted while the operator was down.

A workload deleted while the operator runs is noticed at its next round and its last slice
ends then (long_running.py). One deleted while the operator is down is gone when it starts
again: nothing lists it. Its slices are in the records, though: at the first round the
namespaces' records of the catch-up window (the scan ``SliceCursor`` makes anyway) give every
workload's latest slice, and a workload that has one but is no longer listed, and whose
latest slice is not its final one, is an orphan. Its final slice runs from the end of its
latest recorded slice to the time its counters stopped growing, read from Prometheus:

- Each of its series' final value is its maximum since that end (the exporter's counters
  only grow); the stop is the latest, over its series, of the first sample that carries the
  series' final value (``stop_query``). The exporter keeps a finished container's series
  exported with that final value for ``--retention`` (600 s by default: exporter/state.py,
  "Finished containers stay in the ledger (and exported) for the retention window"), so the
  last sample is up to that much later than the stop; the first sample at the final value is
  when the pods stopped drawing energy.
- It is accounted only once the counters have not grown for ``quiet_s`` (three scrape
  intervals plus the accounting delay) and every node of its series has been scraped since:
  a pod of a deleted workload reserves nothing, so it is charged only for CPU it uses
  (exporter/attribution.py, rule 3); a terminating pod that stays idle for that long and
  then draws CPU again before it ends would have that late energy left out.
- No growth after the latest slice's end (or no series at all, once an exporter has been
  scraped past it): nothing is recorded.
- Counters that still grow a slice length after the restart (pods left running by a
  deletion with ``--cascade=orphan``): the final slice ends at the restart, when the deletion
  was noticed, as it would for a workload deleted while the operator runs.

The slice then goes through the ordinary path with the stop as the workload's deletion, so
its key is ``<uid>@<start>`` with the start where the latest recorded slice ended: the same
key an operator that noticed the deletion live gives its final slice. An entry is final
(``slice.final``) when it ends at the workload's deletion; a workload whose latest recorded
slice is final is never an orphan, so a live deletion followed by a restart records one
final slice, and a second restart records nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Set
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from carbontrack.core.errors import ConfigError
from carbontrack.core.records import MONTH_LABEL, RECORD_LABEL, days_between

from . import promql
from .functional_unit import QUERY, UNIT
from .long_running_kinds import KINDS, LongRunningKind, WorkloadFacts, workload_facts
from .prometheus import PrometheusClient
from .settings import OperatorSettings
from .slice_accounting import owner_selector
from .slice_cursor import Latest, SliceCursor

QUIET_SCRAPES = 3  # scrape intervals without growth (plus the accounting delay) before the stop counts

NamespacesWithRecords = Callable[[str], Awaitable[set[str]]]  # label selector -> namespaces


@dataclass(frozen=True)
class Orphan:
    kind: LongRunningKind
    facts: WorkloadFacts  # deleted_at: when its counters stopped growing
    owners: tuple[str, ...]


def is_final(entry_data: Mapping[str, Any]) -> bool:
    """The entry is the workload's last slice (it ended at the workload's deletion). Entries
    written before ``final`` existed: the slice of a deleted workload."""
    piece = entry_data.get("slice")
    if isinstance(piece, Mapping) and "final" in piece:
        return piece["final"] is True
    job = entry_data.get("job")
    return isinstance(job, Mapping) and job.get("outcome") == "Deleted"


def stop_query(metric: str, selector: str, range_s: float, step_s: float, at: datetime) -> str:
    """The latest over the series of the first sample at each series' final value within the
    range before ``at`` (evaluate at ``at``). The subquery's step is shorter than a scrape, so
    a step falls between any two samples: ``timestamp`` gives the sample's own time."""
    sel = f"{metric}{{{selector}}}"
    window = promql.range_seconds(range_s)
    step = f"{max(math.floor(step_s * 1000), 1)}ms"
    return (f"max(min_over_time((timestamp({sel}) and {sel} >= max_over_time({sel}[{window}] "
            f"@ {at.timestamp():.3f}))[{window}:{step}]))")


def orphan_facts(latest: Latest, earliest: datetime) -> tuple[LongRunningKind, WorkloadFacts] | None:
    """The workload as its latest record describes it (None: not a long-running kind's)."""
    data = latest.entry.data
    piece = data.get("slice")
    workload = piece.get("workload") if isinstance(piece, Mapping) else None
    if not isinstance(workload, Mapping):
        return None
    kind = next((k for k in KINDS if k.kind == workload.get("kind")), None)
    if kind is None:
        return None
    inputs = data.get("inputs")
    query = inputs.get(QUERY) if isinstance(inputs, Mapping) else None
    # the unit query goes on with the final slice; the unit name as the records validated it
    annotations = {QUERY: query} if isinstance(query, str) else {}
    unit = piece.get("functionalUnit") if isinstance(piece, Mapping) else None
    if annotations and isinstance(unit, Mapping) and isinstance(unit.get("unit"), str):
        annotations[UNIT] = unit["unit"]
    created = workload.get("createdAt")
    spec: dict[str, Any] = {"replicas": data.get("parallelism", 1)}
    nested = spec
    for key in kind.template_path[:-1]:
        nested = nested.setdefault(key, {})
    nested[kind.template_path[-1]] = dict(data.get("template") or {})
    body = {"metadata": {"uid": workload.get("uid"), "namespace": latest.entry.namespace,
                         "name": workload.get("name", latest.entry.name),
                         "labels": dict(latest.entry.labels), "annotations": annotations,
                         "creationTimestamp": created if isinstance(created, str) else
                         earliest.isoformat()},
            "spec": spec}
    try:
        return kind, workload_facts(kind, body)
    except ConfigError:  # a record edited by hand: nothing to reconstruct the workload from
        return None


class SliceOrphans:
    """Finds the orphans once, at the first round, and settles each on later rounds."""

    def __init__(self, cursor: SliceCursor, prometheus: PrometheusClient,
                 namespaces_with_records: NamespacesWithRecords, settings: OperatorSettings) -> None:
        self._cursor = cursor
        self._prom = prometheus
        self._namespaces_with_records = namespaces_with_records
        self._settings = settings
        self._pending: dict[str, Latest] | None = None  # None: not looked for yet
        self._noticed: datetime | None = None  # when the orphans were found

    @property
    def quiet_s(self) -> float:
        return QUIET_SCRAPES * self._settings.scrape_interval_s + self._settings.accounting_delay_s

    def forget(self, uid: str) -> None:
        if self._pending is not None:
            self._pending.pop(uid, None)

    async def due(self, listed: Set[str], now: datetime) -> tuple[list[Orphan], bool]:
        """The orphans whose final slice can be accounted now (their facts carry the stop as
        the deletion), and whether one must be looked at again on the next tick."""
        if self._pending is None:
            self._pending, self._noticed = await self._find(listed, now), now
        due, waiting = [], False
        for uid, latest in list(self._pending.items()):
            if uid in listed:  # it exists (again listed): the ordinary rounds account it
                del self._pending[uid]
                continue
            found = orphan_facts(latest, now - timedelta(seconds=self._settings.slice_catchup_s))
            if found is None:
                del self._pending[uid]
                continue
            kind, facts = found
            owners = tuple(sorted(str(u) for u in (latest.entry.data.get("slice") or {}).get("ownerUids") or ())) \
                or (uid,)
            stop = await self._stop(facts, owners, latest.piece.end, now)
            if stop is None:
                waiting = True
            elif stop <= latest.piece.end:
                del self._pending[uid]  # nothing drawn after its latest slice: nothing to record
            else:
                due.append(Orphan(kind, replace(facts, deleted_at=stop), owners))
        return due, waiting

    async def _find(self, listed: Set[str], now: datetime) -> dict[str, Latest]:
        namespaces = set(self._settings.namespaces)
        if not namespaces:  # every namespace: those holding records of the catch-up window
            first = now - timedelta(seconds=self._settings.slice_catchup_s)
            months = sorted({d[:7] for d in days_between(first, now)})
            namespaces = await self._namespaces_with_records(
                f"{RECORD_LABEL}=jobs,{MONTH_LABEL} in ({','.join(months)})")
        pending: dict[str, Latest] = {}
        for ns in sorted(namespaces):
            for uid, latest in (await self._cursor.recorded(ns, now)).items():
                if uid not in listed and not is_final(latest.entry.data):
                    pending[uid] = latest
        return pending

    async def _stop(self, facts: WorkloadFacts, owners: tuple[str, ...], after: datetime,
                    now: datetime) -> datetime | None:
        """When the workload's counters stopped growing; ``after`` (or earlier) when they did
        not grow after it; None while that cannot be told yet."""
        interval = self._settings.scrape_interval_s
        if now < after + timedelta(seconds=self.quiet_s):
            return None
        sel = owner_selector(facts.namespace, owners)
        # from a few scrapes before the latest slice's end: a series flat since before it
        # finds its stop there, not at its first sample after the end
        range_s = (now - after).total_seconds() + 3 * interval
        finals = await self._prom.query(
            f"max_over_time({promql.ENERGY}{{{sel}}}[{promql.range_seconds(range_s)}])", now)
        if not finals:
            latest = await self._prom.query(promql.any_freshness(), now)
            scraped = latest[0].value if latest else 0.0
            return after if scraped >= (after + timedelta(seconds=interval)).timestamp() else None
        got = await self._prom.query(stop_query(promql.ENERGY, sel, range_s, interval / 2, now), now)
        if not got:
            return None
        stop = datetime.fromtimestamp(got[0].value, after.tzinfo)
        if stop <= after:
            return after
        ready = (stop + timedelta(seconds=self.quiet_s)).timestamp()
        if now.timestamp() >= ready:
            nodes = sorted({s.labels.get("node", "") for s in finals})
            fresh = {s.labels.get("node", ""): s.value
                     for s in await self._prom.query(promql.node_freshness(nodes), now)}
            # an exporter not scraped since: its series may be flat only because unscraped
            return None if any(fresh.get(n, 0.0) < ready for n in nodes) else stop
        noticed = self._noticed or now
        if now >= noticed + timedelta(seconds=self._settings.slice_length_s + self.quiet_s):
            # still drawing energy a slice after the restart (pods left running by a deletion
            # with --cascade=orphan, whose ReplicaSet no kind here accounts): the final slice
            # ends when the deletion was noticed, as for a workload deleted while the operator runs
            return max(noticed, after)
        return None

