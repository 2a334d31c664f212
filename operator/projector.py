"""Emissions so far and projected totals of running Jobs, written as annotations."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from carbontrack.core import contract
from carbontrack.core.errors import ConfigError, TemporaryError

from . import promql
from .jobs import EXPECTED_DURATION, JobFacts
from .kube import Gone, KubeApi
from .projection import parse_duration, project
from .prometheus import PrometheusClient, QueryError
from .timeutil import format_time

log = logging.getLogger(__name__)


class Projector:
    def __init__(self, kube: KubeApi, prometheus: PrometheusClient, clock: Callable[[], datetime],
                 scrape_interval_s: float) -> None:
        self._kube = kube
        self._prometheus = prometheus
        self._clock = clock
        self._scrape_interval_s = scrape_interval_s

    async def project_all(self, jobs: Iterable[JobFacts]) -> None:
        for job in list(jobs):
            if job.finished or job.suspended or job.deleting:
                continue
            try:
                await self.project(job)
            except (TemporaryError, Gone, QueryError, ConfigError) as err:
                log.info("no projection for Job %s/%s: %s", job.namespace, job.name, err)

    async def project(self, job: JobFacts) -> None:
        now = self._clock()
        elapsed = (now - job.lifetime_start).total_seconds()
        if elapsed <= 0:
            return
        window = elapsed + self._scrape_interval_s
        co2e = await self._prometheus.query(promql.job_totals(promql.CO2E, job.uid, window, job.kind), now)
        if not co2e:
            return  # no data yet: say nothing rather than "0 g so far"
        energy = await self._prometheus.query(promql.job_totals(promql.ENERGY, job.uid, window, job.kind), now)
        so_far = sum(s.value for s in co2e)
        kwh = sum(s.value for s in energy) / 3.6e6
        expected = job.annotations.get(EXPECTED_DURATION)
        projection = project(so_far, elapsed, parse_duration(expected) if expected else None,
                             job.completions, job.succeeded)
        annotations: dict[str, str | None] = {
            contract.CO2E_GRAMS_SO_FAR: f"{so_far:.6g}",
            contract.ENERGY_KWH_SO_FAR: f"{kwh:.6g}",
            contract.PROJECTED_AT: format_time(now),
            contract.PROJECTED_CO2E_GRAMS: (
                f"{projection.total_grams:.6g}" if projection else None
            ),
            contract.PROJECTION_BASIS: projection.basis if projection else None,
        }
        await self._kube.patch_workload(job.kind, job.namespace, job.name, job.uid,
                                        {"metadata": {"annotations": annotations}})
