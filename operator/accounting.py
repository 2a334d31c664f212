"""Accounting of one finished Job from Prometheus: pure builder + the async querying step.

The builder turns query results into an `Accounting` (and annotations); the `Accountant`
decides whether Prometheus is ready (scraped past the completion) and runs the queries.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from carbontrack import __version__
from carbontrack.core import contract
from carbontrack.core.errors import TemporaryError
from carbontrack.core.types import JOULES_PER_KWH

from . import promql
from .jobs import ACCOUNTED_AT, ACCOUNTED_UID, JobFacts
from .prometheus import PrometheusClient, Sample
from .settings import OperatorSettings
from .timeutil import format_time

# Relative uncertainty assumed per measurement method (CarbonTrack assumption, 2026, see
# docs/operator.md "Uncertainty"): counters 5 %, sampled power 10 %, models 30 %.
METHOD_UNCERTAINTY = {"measured": 0.05, "sampled": 0.10, "estimated": 0.30}
UNKNOWN_METHOD_UNCERTAINTY = 0.5


class NotReady(TemporaryError):
    """Prometheus has not yet scraped past the Job's completion; retry after ``delay_s``.
    ``exact``: the delay is known (time until the final scrape); otherwise it is a poll and
    the queue backs off so that hundreds of waiting Jobs do not flood Prometheus."""

    def __init__(self, message: str, delay_s: float, exact: bool = False) -> None:
        super().__init__(message)
        self.delay_s = delay_s
        self.exact = exact


@dataclass(frozen=True)
class Accounting:
    job: JobFacts
    window_start: datetime
    window_end: datetime
    evaluated_at: datetime
    energy_j: dict[str, float] = field(default_factory=dict)  # by component
    co2e_g: dict[str, float] = field(default_factory=dict)  # by component
    methods: dict[str, list[str]] = field(default_factory=dict)  # component -> methods
    nodes: list[str] = field(default_factory=list)
    pue: dict[str, float] = field(default_factory=dict)  # node -> average PUE
    factors: list[contract.FactorIdentity] = field(default_factory=list)
    intensity_g_per_kwh: float | None = None  # energy-weighted, per facility kWh
    gpu_hours: float = 0.0
    pods: int = 0
    uncertainty: float = 0.0
    no_data_reason: str | None = None
    queries: dict[str, str] = field(default_factory=dict)  # the PromQL used, for the record
    # zone -> (facility kWh, CO2e g): a Job on nodes in several zones gets each zone's market
    # factor applied to that zone's energy (reports/ghg.py)
    by_zone: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def no_data(self) -> bool:
        return self.no_data_reason is not None

    @property
    def energy_kwh(self) -> float | None:
        return None if self.no_data else math.fsum(self.energy_j.values()) / JOULES_PER_KWH

    @property
    def co2e_grams(self) -> float | None:
        return None if self.no_data else math.fsum(self.co2e_g.values())

    @property
    def zones(self) -> list[str]:
        return sorted({f["zone"] for f in self.factors})

    @property
    def method(self) -> str:
        return "+".join(sorted({m for ms in self.methods.values() for m in ms})) or "none"

    def report(self) -> contract.JobReport:
        base: contract.JobReport = {
            "job": {"namespace": self.job.namespace, "name": self.job.name, "uid": self.job.uid,
                    "outcome": self.job.outcome},
            "window": {"start": format_time(self.window_start), "end": format_time(self.window_end)},
            "toolVersion": __version__,
        }
        if self.no_data_reason is not None:
            base["noData"] = self.no_data_reason
            return base
        base.update(
            {
                "energyKwhByComponent": {c: _r(j / JOULES_PER_KWH) for c, j in sorted(self.energy_j.items())},
                "co2eGramsByComponent": {c: _r(g) for c, g in sorted(self.co2e_g.items())},
                "methods": {c: m for c, m in sorted(self.methods.items())},
                "gpuHours": {"value": _r(self.gpu_hours),
                             "basis": "GPU limits of the pod template x min(parallelism, pods) x "
                                      "Job wall time (upper bound)"},
                "pods": self.pods,
                "nodes": self.nodes,
                "pue": {n: _r(p) for n, p in sorted(self.pue.items())},
                "zones": self.zones,
                "intensityFactors": self.factors,
                "byZone": {z: {"facilityKwh": _r(kwh), "co2eGrams": _r(g)}
                           for z, (kwh, g) in sorted(self.by_zone.items())},
                "intensityGPerKwh": _r(self.intensity_g_per_kwh) if self.intensity_g_per_kwh else None,
                "intensityBasis": "energy-weighted over nodes and time, per facility kWh (IT x PUE)",
                "uncertainty": {"relative": _r(self.uncertainty),
                                "basis": "energy-weighted per-method assumption "
                                         "(measured 5%, sampled 10%, estimated 30%)"},
            }
        )
        return base

    def annotations(self, now: datetime) -> dict[str, str]:
        report = contract.encode_report(self.report())
        if self.no_data:
            return {
                contract.ENERGY_KWH: "no-data",
                contract.CO2E_GRAMS: "no-data",
                contract.METHOD: "none",
                ACCOUNTED_AT: format_time(now),
                ACCOUNTED_UID: self.job.uid,
                contract.REPORT: report,
            }
        kwh, grams = self.energy_kwh, self.co2e_grams
        assert kwh is not None and grams is not None
        return {
            contract.ENERGY_KWH: _fmt(kwh),
            contract.CO2E_GRAMS: _fmt(grams),
            contract.GRID_ZONE: ",".join(self.zones) or "unknown",
            contract.INTENSITY_G_PER_KWH: (
                _fmt(self.intensity_g_per_kwh) if self.intensity_g_per_kwh is not None else "unknown"
            ),
            contract.METHOD: self.method,
            ACCOUNTED_AT: format_time(now),
            ACCOUNTED_UID: self.job.uid,
            contract.REPORT: report,
        }


def _r(value: float) -> float:
    return float(f"{value:.6g}")


def _fmt(value: float) -> str:
    """Six significant figures: far finer than any measurement's uncertainty."""
    return f"{value:.6g}"


def build_accounting(
    job: JobFacts,
    window_start: datetime,
    now: datetime,
    energy: Sequence[Sample],
    co2e: Sequence[Sample],
    pue: Sequence[Sample],
    intensity: Sequence[Sample],
    pods: Sequence[Sample],
) -> Accounting:
    """Pure: query results -> Accounting. Raises TemporaryError on inconsistent inputs."""
    assert job.finished_at is not None
    energy_j: dict[str, float] = defaultdict(float)
    node_energy: dict[str, float] = defaultdict(float)
    method_energy: dict[str, float] = defaultdict(float)
    methods: dict[str, set[str]] = defaultdict(set)
    for s in energy:
        if s.value < 0:
            raise TemporaryError(f"negative energy counter for Job {job.uid}: {s.labels}")
        comp = s.labels.get("component", "other")
        energy_j[comp] += s.value
        node_energy[s.labels.get("node", "")] += s.value
        method_energy[s.labels.get("method", "")] += s.value
        methods[comp].add(s.labels.get("method", "unknown"))
    co2e_g: dict[str, float] = defaultdict(float)
    node_co2e: dict[str, float] = defaultdict(float)
    for s in co2e:
        if s.value < 0:
            raise TemporaryError(f"negative CO2e counter for Job {job.uid}: {s.labels}")
        co2e_g[s.labels.get("component", "other")] += s.value
        node_co2e[s.labels.get("node", "")] += s.value
    if energy and not co2e and math.fsum(energy_j.values()) > 0:
        raise TemporaryError(f"Job {job.uid} has energy but no CO2e series yet")
    # A component with energy but no CO2e series (a partial answer, a scrape that carried
    # the energy counter but not yet the CO2e one) would under-count the Job's CO2e if summed
    # as-is: wait for it like for an empty CO2e answer, never write a smaller number.
    lacking = sorted(c for c, j in energy_j.items() if j > 0 and c not in co2e_g)
    if lacking:
        raise TemporaryError(
            f"Job {job.uid} has energy but no CO2e series for component(s) {', '.join(lacking)} yet")
    nodes = sorted(node_energy)
    pue_by_node = {s.labels.get("node", ""): s.value for s in pue}
    missing = [n for n in nodes if n not in pue_by_node]
    if missing:
        raise TemporaryError(f"no PUE gauge for node(s) {', '.join(missing)} yet")
    factors = sorted(
        (
            contract.FactorIdentity(node=s.labels.get("node", ""), zone=s.labels.get("zone", ""),
                                    source=s.labels.get("source", ""), basis=s.labels.get("basis", ""))
            for s in intensity
        ),
        key=lambda f: (f["node"], f["zone"], f["source"], f["basis"]),
    )
    facility_kwh = math.fsum(node_energy[n] * pue_by_node[n] for n in nodes) / JOULES_PER_KWH
    zone_of = {f["node"]: f["zone"] for f in factors if f["zone"]}
    by_zone: dict[str, tuple[float, float]] = {}
    for n in nodes:
        if n in zone_of:
            kwh, g = by_zone.get(zone_of[n], (0.0, 0.0))
            by_zone[zone_of[n]] = (kwh + node_energy[n] * pue_by_node[n] / JOULES_PER_KWH, g + node_co2e[n])
    total_co2e = math.fsum(co2e_g.values())
    intensity_value = total_co2e / facility_kwh if facility_kwh > 0 else None
    pod_uids = {s.labels.get("pod_uid", "") for s in pods}
    total_j = math.fsum(energy_j.values())
    uncertainty = (
        math.fsum(e * METHOD_UNCERTAINTY.get(m, UNKNOWN_METHOD_UNCERTAINTY)
                  for m, e in method_energy.items()) / total_j
        if total_j > 0 else 0.0
    )
    wall_h = max((job.finished_at - window_start).total_seconds(), 0.0) / 3600
    gpu_hours = job.gpus_per_pod * min(job.parallelism, max(len(pod_uids), 1)) * wall_h
    return Accounting(
        job=job,
        window_start=window_start,
        window_end=job.finished_at,
        evaluated_at=now,
        energy_j=dict(energy_j),
        co2e_g=dict(co2e_g),
        methods={c: sorted(m) for c, m in methods.items()},
        nodes=nodes,
        pue=pue_by_node,
        factors=factors,
        intensity_g_per_kwh=intensity_value,
        gpu_hours=gpu_hours if job.gpus_per_pod else 0.0,
        pods=len(pod_uids),
        uncertainty=uncertainty,
        by_zone=by_zone,
    )


class Accountant:
    """Runs the queries for one Job; raises NotReady/TemporaryError when it must wait."""

    def __init__(
        self,
        prometheus: PrometheusClient,
        settings: OperatorSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self._prom = prometheus
        self._settings = settings
        self._clock = clock

    def ready_at(self, job: JobFacts) -> datetime:
        assert job.finished_at is not None
        return job.finished_at + timedelta(
            seconds=self._settings.scrape_interval_s + self._settings.accounting_delay_s
        )

    async def account(self, job: JobFacts) -> Accounting:
        if job.finished_at is None:
            raise ValueError(f"Job {job.namespace}/{job.name} has not finished")
        now = self._clock()
        ready = self.ready_at(job)
        if now < ready:
            raise NotReady("waiting for the final scrape", (ready - now).total_seconds(), exact=True)
        # One scrape interval of margin before the start: the first sample of a pod may
        # predate the Job's recorded startTime by up to a scrape.
        start = job.lifetime_start - timedelta(seconds=self._settings.scrape_interval_s)
        window_s = (now - start).total_seconds()
        queries = {"energy": promql.job_totals(promql.ENERGY, job.uid, window_s, job.kind)}
        energy = await self._prom.query(queries["energy"], now)
        if not energy:
            return replace(await self._no_data(job, start, now), queries=queries)
        nodes = sorted({s.labels.get("node", "") for s in energy})
        fresh = await self._prom.query(promql.node_freshness(nodes), now)
        scraped = {s.labels.get("node", ""): s.value for s in fresh}
        final_scrape = ready.timestamp() - self._settings.accounting_delay_s
        stale = [n for n in nodes if scraped.get(n, 0.0) < final_scrape]
        if stale:
            raise NotReady(
                f"node(s) {', '.join(stale)} not scraped since the Job finished",
                self._settings.scrape_interval_s / 2,
            )
        queries.update({
            "co2e": promql.job_totals(promql.CO2E, job.uid, window_s, job.kind),
            "pue": promql.node_pue(nodes, window_s),
            "intensity": promql.node_intensity(nodes, window_s),
            "pods": promql.job_pods(job.uid, window_s, job.kind),
        })
        co2e = await self._prom.query(queries["co2e"], now)
        pue = await self._prom.query(queries["pue"], now)
        intensity = await self._prom.query(queries["intensity"], now)
        pods = await self._prom.query(queries["pods"], now)
        accounting = build_accounting(job, job.lifetime_start, now, energy, co2e, pue, intensity, pods)
        return replace(accounting, queries=queries)

    async def _no_data(self, job: JobFacts, start: datetime, now: datetime) -> Accounting:
        assert job.finished_at is not None
        give_up = job.finished_at + timedelta(seconds=self._settings.no_data_after_s)
        latest = await self._prom.query(promql.any_freshness(), now)
        final_scrape = self.ready_at(job).timestamp() - self._settings.accounting_delay_s
        scraped_after = bool(latest) and latest[0].value >= final_scrape
        if now < give_up:
            raise NotReady("no energy series for this Job yet", min(
                (give_up - now).total_seconds(), self._settings.scrape_interval_s))
        reason = (
            f"no {promql.ENERGY} series with owner_kind={job.kind}, owner_uid={job.uid} in Prometheus"
            + ("" if scraped_after else "; no carbontrack exporter scraped since the Job finished")
        )
        return Accounting(job=job, window_start=job.lifetime_start, window_end=job.finished_at,
                          evaluated_at=now, no_data_reason=reason)
