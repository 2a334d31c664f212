"""Accounting of one slice of a long-running workload from Prometheus.

The exporter's counters never reset, so a series' energy in a slice [a, b) is its last value
at b minus its last value at a (0 where the series began inside the slice), taken series by
series; summed over slices this telescopes to the total over the span, exactly (no
extrapolation as in ``increase()``). The per-(node, component, method) sums then go through
the same builder as a Job's (``accounting.build_accounting``), so a slice's record has the
same shape as a Job's.

Every query is bounded to the slice: the values at b are read over [a, b], the values at a
over the ``START_LOOKBACK_SCRAPES`` scrape intervals before a (a live series has a sample
there). A series present at b but absent from that window either began inside the slice or
paused (an exporter down, a failed scrape) for longer than the window; only those series
are looked up again, by matchers naming their own label values, back to the workload's
creation: a paused series is never counted again from zero, however long it was absent,
and a new one finds nothing before a (its samples all lie in the slice). A workload running
for months thus costs each slice its own samples, plus the history of the rare series that
paused across the slice start.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from carbontrack.core.errors import TemporaryError

from . import promql
from .accounting import Accounting, NotReady, build_accounting
from .functional_unit import FunctionalUnit, increase
from .jobs import JobFacts
from .long_running_kinds import WorkloadFacts
from .prometheus import PrometheusClient, QueryError, Sample
from .settings import OperatorSettings
from .slices import Slice, slice_key


def owner_selector(namespace: str, owner_uids: Sequence[str]) -> str:
    uids = "|".join(promql._regex_escape(u) for u in sorted(owner_uids))
    return f'namespace="{promql.escape_label(namespace)}",owner_uid=~"{uids}"'


def series_at(metric: str, selector: str, range_s: float) -> str:
    """Each series' last value within the range (max: the exporter's counters only grow)."""
    return f"max_over_time({metric}{{{selector}}}[{promql.range_seconds(range_s)}])"


def narrowing(series: Sequence[Mapping[str, str]]) -> str:
    """Matchers that select at least ``series`` (and few others): for every label they all
    carry, the alternation of their values. Empty when they share no label."""
    common = set.intersection(*(set(labels) for labels in series)) - {"__name__"} if series else set()
    return ",".join(f'{key}=~"{"|".join(promql._regex_escape(v) for v in sorted({s[key] for s in series}))}"'
                    for key in sorted(common))


def absent_from(at_end: Sequence[Sample], at_start: Sequence[Sample]) -> list[Mapping[str, str]]:
    """The label sets of the series at the end that have no value at the start."""
    have = {frozenset(s.labels.items()) for s in at_start}
    return [s.labels for s in at_end if frozenset(s.labels.items()) not in have]


def only(samples: Sequence[Sample], wanted: Sequence[Mapping[str, str]]) -> list[Sample]:
    keys = {frozenset(labels.items()) for labels in wanted}
    return [s for s in samples if frozenset(s.labels.items()) in keys]


def slice_samples(at_end: Sequence[Sample], at_start: Sequence[Sample]) -> list[Sample]:
    """Per (node, component, method): the sum over series of end - start (pure). A
    counter that went down is an inconsistency to wait out, never a negative amount."""
    before = {frozenset(s.labels.items()): s.value for s in at_start}
    sums: dict[tuple[str, str, str], float] = defaultdict(float)
    for s in at_end:
        delta = s.value - before.get(frozenset(s.labels.items()), 0.0)
        if delta < 0:
            raise TemporaryError(f"counter went down within a slice: {s.labels}")
        key = (s.labels.get("node", ""), s.labels.get("component", "other"), s.labels.get("method", ""))
        sums[key] += delta
    return [Sample({"node": n, "component": c, "method": m}, v) for (n, c, m), v in sorted(sums.items())]


def slice_job_facts(workload: WorkloadFacts, piece: Slice) -> JobFacts:
    """A slice seen through the Job-shaped facts the shared builder and budgets read."""
    return JobFacts(
        uid=slice_key(workload.uid, piece.start), namespace=workload.namespace, name=workload.name,
        labels=workload.labels, annotations={}, created_at=piece.start, started_at=piece.start,
        finished_at=piece.end, outcome="Running" if workload.deleted_at is None else "Deleted",
        deleting=False, finalizers=(), suspended=False, completions=None,
        parallelism=max(workload.replicas, 1), succeeded=0, active=workload.replicas,
        gpus_per_pod=workload.gpus_per_pod, template=workload.template,
        kind=workload.kind, api_version=workload.api_version,
    )


@dataclass(frozen=True)
class Units:
    count: float | None  # None: no data or an error (see ``problem``)
    query: str = ""
    problem: str | None = None  # what the workload's owner should fix
    invalid: bool = False  # the query itself is unusable (else: it had no data)
    unit: str = ""  # the validated unit name (FunctionalUnit.unit), recorded with the count


START_LOOKBACK_SCRAPES = 3  # the window before a slice in which a live series has a sample


class SliceAccountant:
    def __init__(self, prometheus: PrometheusClient, settings: OperatorSettings,
                 clock: Callable[[], datetime]) -> None:
        self._prom = prometheus
        self._settings = settings
        self._clock = clock

    @property
    def prometheus(self) -> PrometheusClient:
        return self._prom

    @property
    def settle_s(self) -> float:
        return self._settings.scrape_interval_s + self._settings.accounting_delay_s

    async def account(self, workload: WorkloadFacts, piece: Slice,
                      owner_uids: Sequence[str]) -> Accounting:
        now = self._clock()
        final_scrape = piece.end + timedelta(seconds=self._settings.scrape_interval_s)
        if now < final_scrape + timedelta(seconds=self._settings.accounting_delay_s):
            raise NotReady("waiting for the slice's final scrape",
                           (final_scrape - now).total_seconds() + self._settings.accounting_delay_s,
                           exact=True)
        sel = owner_selector(workload.namespace, owner_uids)
        near = self.start_lookback_s
        queries = {"energy": series_at(promql.ENERGY, sel, piece.seconds),
                   "energyBefore": series_at(promql.ENERGY, sel, near),
                   "co2e": series_at(promql.CO2E, sel, piece.seconds),
                   "co2eBefore": series_at(promql.CO2E, sel, near)}
        energy_end = await self._prom.query(queries["energy"], piece.end)
        facts = slice_job_facts(workload, piece)
        if not energy_end:
            # "no data" only once Prometheus has scraped an exporter past the slice: an
            # exporter that is down must not turn a slice's energy into a permanent nothing
            latest = await self._prom.query(promql.any_freshness(), now)
            if not latest or latest[0].value < final_scrape.timestamp():
                raise NotReady("no exporter scraped since the slice ended",
                               self._settings.scrape_interval_s)
            return Accounting(job=facts, window_start=piece.start, window_end=piece.end,
                              evaluated_at=now, queries=queries,
                              no_data_reason=f"no {promql.ENERGY} series of this workload's pods "
                                             "in the slice")
        nodes = sorted({s.labels.get("node", "") for s in energy_end})
        fresh = await self._prom.query(promql.node_freshness(nodes), now)
        scraped = {s.labels.get("node", ""): s.value for s in fresh}
        stale = [n for n in nodes if scraped.get(n, 0.0) < final_scrape.timestamp()]
        if stale:
            raise NotReady(f"node(s) {', '.join(stale)} not scraped since the slice ended",
                           self._settings.scrape_interval_s / 2)
        energy_start = await self._before(promql.ENERGY, sel, workload, piece, energy_end, queries)
        co2e_end = await self._prom.query(queries["co2e"], piece.end)
        co2e_start = await self._before(promql.CO2E, sel, workload, piece, co2e_end, queries)
        queries.update({"pue": promql.node_pue(nodes, piece.seconds),
                        "intensity": promql.node_intensity(nodes, piece.seconds),
                        "pods": f"count by (pod_uid, component) ({queries['energy']})"})
        pue = await self._prom.query(queries["pue"], piece.end)
        intensity = await self._prom.query(queries["intensity"], piece.end)
        pods = await self._prom.query(queries["pods"], piece.end)
        acc = build_accounting(facts, piece.start, now, slice_samples(energy_end, energy_start),
                               slice_samples(co2e_end, co2e_start), pue, intensity, pods)
        return replace(acc, queries=queries)

    @property
    def start_lookback_s(self) -> float:
        return max(START_LOOKBACK_SCRAPES * self._settings.scrape_interval_s, 1.0)

    async def _before(self, metric: str, sel: str, workload: WorkloadFacts, piece: Slice,
                      at_end: Sequence[Sample], queries: dict[str, str]) -> list[Sample]:
        """Each series' last value at the slice start: within the few scrape intervals before
        it, and for the series absent there (new in the slice, or paused longer) back to the
        workload's creation, those series only."""
        name = "energy" if metric == promql.ENERGY else "co2e"
        found = await self._prom.query(queries[f"{name}Before"], piece.start)
        absent = absent_from(at_end, found)
        if not absent:
            return list(found)
        narrow = narrowing(absent)
        far = series_at(metric, f"{sel},{narrow}" if narrow else sel,
                        max(self._since_creation_s(workload, piece), self.start_lookback_s))
        queries[f"{name}BeforeAbsent"] = far
        return [*found, *only(await self._prom.query(far, piece.start), absent)]

    def _since_creation_s(self, workload: WorkloadFacts, piece: Slice) -> float:
        """From the workload's creation (less a scrape: a first sample may predate it)."""
        since = workload.created_at - timedelta(seconds=self._settings.scrape_interval_s)
        return max((piece.start - since).total_seconds(), 1.0)

    async def units(self, workload: WorkloadFacts, piece: Slice, unit: FunctionalUnit) -> Units:
        """The functional units of the slice; a problem is reported, never raised: energy is
        accounted whatever the user's query does."""
        ns = workload.namespace
        query = unit.at_end(ns, piece.seconds)
        try:
            end = await self._prom.query(query, piece.end)
            # a unit counter may predate the workload (a serving pod's sidecar, a shared
            # gateway): its value before the slice is looked up at least a slice back, and
            # for a series absent there (new, or paused longer) back to the creation
            near = max(piece.seconds, self.start_lookback_s)
            start = await self._prom.query(unit.at_start(ns, near), piece.start)
            absent = absent_from(end, start)
            if absent:
                far = max(self._since_creation_s(workload, piece), near)
                start = [*start, *only(await self._prom.query(
                    unit.at_start(ns, far, narrowing(absent)), piece.start), absent)]
        except QueryError as err:
            return Units(None, query, f"Prometheus refused the functional-unit query: {err}", True)
        if not end:
            return Units(None, query, f"the functional-unit query {unit.selector(ns)} has no data "
                                      "in this slice")
        count = increase([(s.labels, s.value) for s in end], [(s.labels, s.value) for s in start])
        return Units(count, query, unit=unit.unit)
