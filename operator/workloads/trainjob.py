"""Kubeflow TrainJob (trainer.kubeflow.org/v1alpha1, Kubeflow Trainer v2.0.0).

Completion, from the controller (github.com/kubeflow/trainer/v2@v2.0.0):
- pkg/runtime/framework/plugins/jobset/jobset.go:291-305: the TrainJob copies its JobSet's
  ``Completed``/``Failed`` condition as ``Complete``/``Failed`` (True, with the JobSet
  condition's lastTransitionTime);
- pkg/controller/trainjob_controller.go:269-272 (isTrainJobFinished): finished = ``Complete``
  or ``Failed`` True; ``spec.suspend`` suspends the JobSet (``Suspended`` condition).
No start time in the status: the window starts at creation. Pods: Job -> JobSet -> TrainJob.
The Complete path is checked end to end with the real controller (tests/e2e/test_workloads.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..jobs import JobFacts
from .base import CrdAdapter
from .facts import build_facts, sum_counts, time_or_none, true_condition


def trainjob_facts(body: Mapping[str, Any]) -> JobFacts:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    done = true_condition(status, "Complete", "Failed")
    outcome = None if done is None else str(done["type"])
    trainer = spec.get("trainer") or {}
    nodes = int(trainer.get("numNodes", 1) or 1)
    pod = {"containers": [{"resources": dict(trainer.get("resourcesPerNode") or {})}]}
    active, succeeded, failed = sum_counts(status.get("jobsStatus") or [])
    return build_facts(
        body, kind="TrainJob", api_version="trainer.kubeflow.org/v1alpha1", outcome=outcome,
        finished_at=time_or_none((done or {}).get("lastTransitionTime")), started_at=None,
        suspended=bool(spec.get("suspend")), replicas=[(nodes, pod)],
        active=active, succeeded=succeeded, failed=failed)


TRAINJOB = CrdAdapter(group="trainer.kubeflow.org", version="v1alpha1", plural="trainjobs",
                      kind="TrainJob", report_name="Kubeflow TrainJob", read=trainjob_facts)
