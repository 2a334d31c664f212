"""Log accounted Jobs to the MLflow run they name (issue 8), off the accounting path.

A Job names a run with the annotation ``carbontrack.io/mlflow-run-id`` or ``MLFLOW_RUN_ID``
on its pod template; the line logged is the reports package's (`log_accounted_job`), so the
operator and `carbontrack report sync-trackers` write the same metrics and tags.

At most once per accounting: logged right after the annotations are written, in a worker
thread (MLflow's client is blocking and retries for minutes when the server is down), and
never awaited by accounting. A failure is logged and counted, never retried here:
`carbontrack report sync-trackers` fills gaps from the annotations.

The tracking server is the operator's (``--mlflow-tracking-uri``), not the one the pod's
env names: the operator must not send data to whatever URL a Job's author wrote.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from carbontrack.core import contract

from .metrics import OperatorMetrics

log = logging.getLogger(__name__)

# (job API dict, tracking URI) -> run id logged to, or None when the Job names no run.
LogFn = Callable[[Mapping[str, Any], str], "str | None"]


def _log_with_reports(job: Mapping[str, Any], tracking_uri: str) -> str | None:
    # Imported here: mlflow (and carbontrack.reports) are only needed when configured.
    from carbontrack.reports.mlflow_log import log_accounted_job

    run_id: str | None = log_accounted_job(job, tracking_uri=tracking_uri)
    return run_id


def names_a_run(job: Mapping[str, Any]) -> bool:
    """Cheap pre-check (no import) so Jobs without a run never start a thread."""
    meta = job.get("metadata") or {}
    if (meta.get("annotations") or {}).get(contract.MLFLOW_RUN_ID):
        return True
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    return any(e.get("name") == "MLFLOW_RUN_ID" and e.get("value")
               for c in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
               for e in c.get("env") or [])


class MlflowJobLogger:
    """``submit(job)`` schedules one log of an accounted Job and returns at once."""

    def __init__(self, tracking_uri: str, metrics: OperatorMetrics,
                 log_fn: LogFn = _log_with_reports) -> None:
        self._uri = tracking_uri
        self._metrics = metrics
        self._log_fn = log_fn
        self._tasks: set[asyncio.Task[None]] = set()  # strong refs until done

    def submit(self, job: Mapping[str, Any]) -> None:
        if not names_a_run(job):
            return
        task = asyncio.get_running_loop().create_task(self.log(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def log(self, job: Mapping[str, Any]) -> None:
        meta = job.get("metadata") or {}
        name = f"{meta.get('namespace')}/{meta.get('name')}"
        try:
            run_id = await asyncio.to_thread(self._log_fn, job, self._uri)
        except Exception as err:  # never let MLflow break accounting: log and count
            self._metrics.mlflow_logs.labels(result="failed").inc()
            log.warning("Job %s: energy and CO2e not logged to MLflow (%s): %s",
                        name, self._uri, str(err).splitlines()[0] if str(err) else type(err).__name__)
            return
        if run_id is not None:
            self._metrics.mlflow_logs.labels(result="ok").inc()
            log.info("Job %s: energy and CO2e logged to MLflow run %s", name, run_id)

    async def drain(self) -> None:
        """Wait for scheduled logs (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
