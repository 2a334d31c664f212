"""MLflow: a run's energy and CO2e as metrics, its factors and provenance as tags.

Two entry points:

- ``MlflowLogger`` plugs into the tracker, ``track(loggers=[MlflowLogger()])``: each finished
  run is logged to the active MLflow run (or ``MLFLOW_RUN_ID``, or a run id given here).
- ``log_accounted_job(job)`` is for the operator: a Job that names an MLflow run (annotation
  ``carbontrack.io/mlflow-run-id``, or env ``MLFLOW_RUN_ID`` on its pod template) gets its
  accounted line logged there; the tracking server is the one the pod used
  (``MLFLOW_TRACKING_URI`` on the pod template) unless one is injected.

``mlflow`` is the optional extra ``carbontrack[mlflow]``; it is imported when used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from carbontrack.core.errors import ConfigError, TemporaryError

from .model import LineItem
from .sources_cluster import ANN_MLFLOW, IdentityKeys, Skipped, job_to_line

PREFIX = "carbontrack."


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise ConfigError("MLflow logging needs the mlflow package: pip install 'carbontrack[mlflow]'") from None
    return mlflow


def result_metrics(result: Any) -> dict[str, float]:
    """Metrics of a tracker ``RunResult`` (units in the names)."""
    m = {
        "energy_kwh": float(result.energy_kwh),
        "facility_energy_kwh": float(result.facility_energy_kwh),
        "co2e_g": float(result.co2e_grams),
        "duration_s": float(result.duration_s),
        "pue": float(result.pue),
        "uncertainty": float(result.uncertainty),
    }
    for comp, joules in result.energy_j.items():
        m[f"{comp}_energy_kwh"] = float(joules) / 3.6e6
    if result.intensity_g_per_kwh is not None:
        m["intensity_g_per_kwh"] = float(result.intensity_g_per_kwh)
    if result.market_based_co2e_grams is not None:
        m["market_co2e_g"] = float(result.market_based_co2e_grams)
    return {PREFIX + k: v for k, v in m.items()}


def result_tags(result: Any) -> dict[str, str]:
    factors = list(result.factors)
    return {
        PREFIX + k: v
        for k, v in {
            "run_id": str(result.run_id),
            "zone": str(result.zone),
            "method": str(result.method),
            "scope": str(result.scope),
            "intensity_source": "; ".join(sorted({f.source for f in factors})),
            "intensity_basis": "; ".join(sorted({f.basis for f in factors})),
            "intensity_year": "; ".join(sorted({str(f.year) for f in factors if f.year is not None})),
            "version": str(result.carbontrack_version),
        }.items()
        if v
    }


def line_metrics(line: LineItem) -> dict[str, float]:
    """Metrics of an accounted Job (a report line)."""
    m: dict[str, float] = {
        "energy_kwh": line.it_energy_kwh,
        "facility_energy_kwh": line.facility_energy_kwh,
        "co2e_g": line.location_kgco2e * 1000.0,
        "cpu_energy_kwh": line.cpu_kwh,
        "dram_energy_kwh": line.dram_kwh,
        "gpu_energy_kwh": line.gpu_kwh,
        "other_energy_kwh": line.other_kwh,
        "gpu_hours": line.gpu_hours,
        "pue": line.pue,
        "intensity_g_per_kwh": line.intensity_g_per_kwh,
        "duration_s": line.duration_h * 3600.0,
    }
    if line.uncertainty is not None:
        m["uncertainty"] = line.uncertainty
    return {PREFIX + k: v for k, v in m.items()}


def line_tags(line: LineItem) -> dict[str, str]:
    return {
        PREFIX + k: v
        for k, v in {
            "job": f"{line.namespace}/{line.job}",
            "job_uid": line.job_uid,
            "cluster": line.cluster,
            "zone": line.grid_zone,
            "method": line.energy_method,
            "intensity_source": line.intensity_source,
            "intensity_basis": line.intensity_basis,
            "intensity_year": str(line.intensity_year or ""),
            "status": line.status,
            "version": line.tool_version,
        }.items()
        if v
    }


def log_to_run(client: Any, run_id: str, metrics: Mapping[str, float], tags: Mapping[str, str]) -> None:
    """One ``log_batch`` call: metrics and tags land together or not at all."""
    from mlflow.entities import Metric, RunTag
    from mlflow.exceptions import MlflowException

    ts = int(time.time() * 1000)
    try:
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), ts, 0) for k, v in sorted(metrics.items())],
            tags=[RunTag(k, v) for k, v in sorted(tags.items())],
        )
    except MlflowException as err:
        code = getattr(err, "error_code", "")
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "INVALID_STATE"):
            raise ConfigError(f"MLflow refused to log to run {run_id}: {err.message}") from None
        raise TemporaryError(f"MLflow failed to log to run {run_id}: {err.message}") from None


class MlflowLogger:
    """Tracker hook. ``client`` (an ``MlflowClient``) and ``run_id`` are injectable; by
    default the active run of the ``mlflow`` module, else env ``MLFLOW_RUN_ID``."""

    def __init__(self, client: Any = None, run_id: str | None = None):
        self._client = client
        self._run_id = run_id

    def _target(self) -> tuple[Any, str]:
        mlflow = _mlflow()
        run_id = self._run_id
        if run_id is None:
            active = mlflow.active_run()
            run_id = active.info.run_id if active is not None else os.environ.get("MLFLOW_RUN_ID")
        if not run_id:
            raise ConfigError(
                "no MLflow run to log to: start one (mlflow.start_run()), set MLFLOW_RUN_ID, "
                "or pass MlflowLogger(run_id=...)"
            )
        client = self._client if self._client is not None else mlflow.MlflowClient()
        return client, run_id

    def on_result(self, result: Any) -> None:
        client, run_id = self._target()
        log_to_run(client, run_id, result_metrics(result), result_tags(result))

    def __repr__(self) -> str:
        return f"MlflowLogger(run_id={self._run_id!r})"


def _pod_env(job: Mapping[str, Any], name: str) -> str:
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    for c in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        for e in c.get("env") or []:
            if e.get("name") == name and e.get("value"):
                return str(e["value"])
    return ""


def job_run_id(job: Mapping[str, Any]) -> str:
    """The MLflow run a Job names: annotation first, then MLFLOW_RUN_ID on its pod template."""
    ann = (job.get("metadata") or {}).get("annotations") or {}
    return str(ann.get(ANN_MLFLOW) or _pod_env(job, "MLFLOW_RUN_ID"))


def log_accounted_job(
    job: Mapping[str, Any],
    client: Any = None,
    tracking_uri: str | None = None,
    keys: IdentityKeys | None = None,
) -> str | None:
    """Log an accounted Job (API JSON dict) to the MLflow run it names; returns the run id,
    or None when the Job names no run. Raises ConfigError for a Job not accounted yet."""
    run_id = job_run_id(job)
    if not run_id:
        return None
    line = job_to_line(job, keys or IdentityKeys())
    if isinstance(line, Skipped):
        raise ConfigError(f"Job {line.namespace}/{line.job} cannot be logged to MLflow: {line.reason}")
    if client is None:
        uri = tracking_uri or _pod_env(job, "MLFLOW_TRACKING_URI") or None
        client = _mlflow().MlflowClient(tracking_uri=uri)
    log_to_run(client, run_id, line_metrics(line), line_tags(line))
    return run_id
