"""`carbontrack report sync-trackers`: log accounted Jobs to the MLflow / W&B runs they name.

The operator annotates a finished Job; it does not import the reports package (layering),
so this small loop closes the gap: it lists accounted Jobs that name a run (annotation
``carbontrack.io/mlflow-run-id`` / ``wandb-run-id``, or ``MLFLOW_RUN_ID`` / ``WANDB_RUN_ID`` on
the pod template), logs each once, and records that with an annotation
(``carbontrack.io/mlflow-logged-at`` / ``wandb-logged-at``). The mark is written after the log
call succeeds: a crash in between re-logs the same values (same metric, step 0), it never
loses them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from carbontrack.core import contract
from carbontrack.core.errors import CarbonTrackError, ConfigError

from . import mlflow_log, wandb_log
from .sources_cluster import ANN_ACCOUNTED, ANN_ENERGY, IdentityKeys

LOGGED = {"mlflow": contract.MLFLOW_LOGGED_AT, "wandb": contract.WANDB_LOGGED_AT}


@dataclass(frozen=True)
class Pending:
    namespace: str
    name: str
    tracker: str  # "mlflow" | "wandb"
    run_id: str


def pending(jobs: Sequence[Mapping[str, Any]], trackers: Sequence[str]) -> list[Pending]:
    """Pure: which (Job, tracker) pairs still need logging."""
    out = []
    for job in jobs:
        meta = job.get("metadata") or {}
        ann = meta.get("annotations") or {}
        if ANN_ACCOUNTED not in ann or ann.get(ANN_ENERGY, "no-data") == "no-data":
            continue
        for tracker in trackers:
            run_id = (mlflow_log.job_run_id if tracker == "mlflow" else wandb_log.job_run_id)(job)
            if run_id and LOGGED[tracker] not in ann:
                out.append(Pending(str(meta.get("namespace")), str(meta.get("name")), tracker, run_id))
    return out


def mark_patch(tracker: str, now: datetime) -> dict[str, Any]:
    return {"metadata": {"annotations": {LOGGED[tracker]: now.isoformat().replace("+00:00", "Z")}}}


class TrackerSync:
    def __init__(
        self,
        api_client: Any,
        keys: IdentityKeys,
        mlflow_uri: str | None,
        wandb_project: str | None,
        trackers: Sequence[str],
        progress: Callable[[str], None],
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        from kubernetes import client

        self._batch = client.BatchV1Api(api_client)
        self._serialize = api_client.sanitize_for_serialization
        self._keys, self._mlflow_uri, self._wandb_project = keys, mlflow_uri, wandb_project
        self._trackers, self._progress, self._clock = list(trackers), progress, clock

    def once(self, namespaces: Sequence[str]) -> int:
        """One pass; returns how many runs were logged. A failing run is reported and
        retried on the next pass, it does not stop the others."""
        targets: list[str | None] = list(namespaces) or [None]
        jobs = []
        for ns in targets:
            page = self._batch.list_namespaced_job(ns) if ns else self._batch.list_job_for_all_namespaces()
            jobs += [self._serialize(j) for j in page.items]
        by_key = {(j["metadata"]["namespace"], j["metadata"]["name"]): j for j in jobs}
        done = 0
        for p in pending(jobs, self._trackers):
            job = by_key[(p.namespace, p.name)]
            try:
                if p.tracker == "mlflow":
                    mlflow_log.log_accounted_job(job, tracking_uri=self._mlflow_uri, keys=self._keys)
                else:
                    wandb_log.log_accounted_job(job, project=self._wandb_project, keys=self._keys)
            except CarbonTrackError as err:
                self._progress(f"sync: {p.tracker} run {p.run_id} of Job {p.namespace}/{p.name} failed: {err}")
                continue
            self._batch.patch_namespaced_job(p.name, p.namespace, mark_patch(p.tracker, self._clock()))
            self._progress(f"sync: Job {p.namespace}/{p.name} logged to {p.tracker} run {p.run_id}")
            done += 1
        return done


def main(argv: list[str], api_client_factory: Callable[[str | None, str | None], Any]) -> int:
    p = argparse.ArgumentParser(
        prog="carbontrack report sync-trackers",
        description="Log accounted Jobs to the MLflow / W&B runs they name (once per Job and tracker).",
    )
    p.add_argument("--kubeconfig")
    p.add_argument("--context")
    p.add_argument("--namespace", "-n", action="append", default=[])
    p.add_argument("--tracker", action="append", choices=("mlflow", "wandb"), default=[],
                   help="which trackers (repeatable; default mlflow)")
    p.add_argument("--mlflow-tracking-uri", help="default: MLFLOW_TRACKING_URI on the Job's pod template")
    p.add_argument("--wandb-project", help="default: WANDB_PROJECT on the Job's pod template")
    p.add_argument("--interval", type=float, default=0.0, help="repeat every N seconds (0: one pass)")
    p.add_argument("--team-label", default="team")
    p.add_argument("--model-label", default=contract.MODEL_LABEL)
    p.add_argument("--cluster-name", default="")
    p.add_argument("--quiet", "-q", action="store_true")
    args = p.parse_args(argv)
    if args.interval < 0:
        raise ConfigError("--interval must be >= 0 seconds")

    def progress(msg: str) -> None:
        if not args.quiet:
            import sys

            print(msg, file=sys.stderr, flush=True)

    sync = TrackerSync(
        api_client_factory(args.kubeconfig, args.context),
        IdentityKeys(args.model_label, args.team_label, args.cluster_name),
        args.mlflow_tracking_uri, args.wandb_project, args.tracker or ["mlflow"], progress,
    )
    while True:
        n = sync.once(args.namespace)
        progress(f"sync: {n} run(s) logged")
        if args.interval <= 0:
            return 0
        time.sleep(args.interval)
