"""Weights & Biases: a run's energy and CO2e in the run summary (``carbontrack/...`` keys,
grouped in one panel section), with factors and provenance as string entries.

- ``WandbLogger`` plugs into the tracker, ``track(loggers=[WandbLogger()])``: each finished run
  updates the active W&B run's summary (``wandb.run``), or a run object passed in.
- ``log_accounted_job(job)`` is for the operator: a Job that names a W&B run (annotation
  ``carbontrack.io/wandb-run-id``, or env ``WANDB_RUN_ID`` on its pod template) gets its
  accounted line added to that run's summary (resumed with ``resume="allow"``; project from
  ``WANDB_PROJECT`` on the pod template unless given). Works offline (``WANDB_MODE=offline``).

``wandb`` is the optional extra ``carbontrack[wandb]``; it is imported when used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from carbontrack.core.errors import ConfigError

from .mlflow_log import _pod_env, line_metrics, line_tags, result_metrics, result_tags
from .sources_cluster import ANN_WANDB, IdentityKeys, Skipped, job_to_line

PREFIX = "carbontrack/"


def _wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise ConfigError("W&B logging needs the wandb package: pip install 'carbontrack[wandb]'") from None
    return wandb


def _summary(metrics: Mapping[str, float], tags: Mapping[str, str]) -> dict[str, Any]:
    # Same names as the MLflow metrics, with W&B's section separator.
    out: dict[str, Any] = {}
    for k, v in {**tags, **metrics}.items():
        out[PREFIX + k.split(".", 1)[1]] = v
    return out


def result_summary(result: Any) -> dict[str, Any]:
    return _summary(result_metrics(result), result_tags(result))


class WandbLogger:
    """Tracker hook; ``run`` is injectable, by default the active ``wandb.run``."""

    def __init__(self, run: Any = None):
        self._run = run

    def on_result(self, result: Any) -> None:
        run = self._run if self._run is not None else _wandb().run
        if run is None:
            raise ConfigError("no active W&B run to log to: call wandb.init() first or pass WandbLogger(run=...)")
        run.summary.update(result_summary(result))

    def __repr__(self) -> str:
        return "WandbLogger()"


def job_run_id(job: Mapping[str, Any]) -> str:
    ann = (job.get("metadata") or {}).get("annotations") or {}
    return str(ann.get(ANN_WANDB) or _pod_env(job, "WANDB_RUN_ID"))


def log_accounted_job(
    job: Mapping[str, Any],
    project: str | None = None,
    entity: str | None = None,
    directory: str | None = None,
    keys: IdentityKeys | None = None,
) -> str | None:
    """Add an accounted Job (API JSON dict) to the summary of the W&B run it names; returns
    the run id, or None when the Job names no run."""
    run_id = job_run_id(job)
    if not run_id:
        return None
    line = job_to_line(job, keys or IdentityKeys())
    if isinstance(line, Skipped):
        raise ConfigError(f"Job {line.namespace}/{line.job} cannot be logged to W&B: {line.reason}")
    wandb = _wandb()
    run = wandb.init(
        id=run_id,
        resume="allow",
        project=project or _pod_env(job, "WANDB_PROJECT") or None,
        entity=entity or _pod_env(job, "WANDB_ENTITY") or None,
        dir=directory,
    )
    try:
        run.summary.update(_summary(line_metrics(line), line_tags(line)))
    finally:
        run.finish()
    return run_id
