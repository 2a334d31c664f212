"""Kubeflow PyTorchJob (kubeflow.org/v1, training-operator v1.8.1).

Completion, from the controller (github.com/kubeflow/training-operator@v1.8.1):
- pkg/controller.v1/pytorch/pytorchjob_controller.go:380-445 (UpdateJobStatus): the job
  succeeds when the Master succeeds (or, without a Master, all Workers, or any Worker with an
  ElasticPolicy), fails when a replica fails with restartPolicy Never; both set
  ``status.completionTime`` (if unset) and then a ``Succeeded``/``Failed`` condition True.
- pkg/controller.v1/common/job.go:195-230: backoff limit / active deadline exceeded sets
  completionTime and a ``Failed`` condition.
- pkg/controller.v1/common/job.go:140-172: ``spec.runPolicy.suspend`` deletes the pods, adds a
  ``Suspended`` condition; resuming resets ``status.startTime``.
Pods are created with the PyTorchJob as their controller (no object in between).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..jobs import JobFacts
from .base import CrdAdapter
from .facts import build_facts, sum_counts, time_or_none, true_condition


def pytorchjob_facts(body: Mapping[str, Any]) -> JobFacts:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    done = true_condition(status, "Succeeded", "Failed")
    outcome = None if done is None else ("Complete" if done["type"] == "Succeeded" else "Failed")
    finished = time_or_none(status.get("completionTime")) or time_or_none((done or {}).get("lastTransitionTime"))
    roles = spec.get("pytorchReplicaSpecs") or {}
    replicas = [(int(r.get("replicas", 1) if r.get("replicas") is not None else 1),
                 (r.get("template") or {}).get("spec") or {}) for _, r in sorted(roles.items())]
    active, succeeded, failed = sum_counts((status.get("replicaStatuses") or {}).values())
    return build_facts(
        body, kind="PyTorchJob", api_version="kubeflow.org/v1", outcome=outcome,
        finished_at=finished if outcome else None, started_at=time_or_none(status.get("startTime")),
        suspended=bool((spec.get("runPolicy") or {}).get("suspend")), replicas=replicas,
        active=active, succeeded=succeeded, failed=failed)


PYTORCHJOB = CrdAdapter(group="kubeflow.org", version="v1", plural="pytorchjobs", kind="PyTorchJob",
                        report_name="Kubeflow PyTorchJob", read=pytorchjob_facts,
                        suspend_path=("spec", "runPolicy", "suspend"))
