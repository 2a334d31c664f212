"""RayJob (ray.io/v1, KubeRay ray-operator v1.4.0).

Completion, from the controller (github.com/ray-project/kuberay/ray-operator@v1.4.0):
- apis/ray/v1/rayjob_types.go:46-66: ``status.jobDeploymentStatus`` is terminal when
  ``Complete`` or ``Failed`` (IsJobDeploymentTerminal);
- controllers/ray/rayjob_controller.go:795-802 (updateRayJobStatus): ``status.endTime`` is set
  when it turns Complete or Failed; :786 ``status.startTime`` when it leaves New;
- :485-515: a Failed RayJob with retries left (spec.backoffLimit) turns ``Retrying`` in the
  same reconcile, before the status is written, so a stored ``Failed`` is final;
- ``spec.suspend`` (Suspending -> Suspended) deletes the RayCluster.
Pods: RayCluster -> RayJob (head and workers), and the submitter Job -> RayJob.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..jobs import JobFacts
from .base import CrdAdapter
from .facts import build_facts, time_or_none


def rayjob_facts(body: Mapping[str, Any]) -> JobFacts:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    state = status.get("jobDeploymentStatus") or ""
    outcome = state if state in ("Complete", "Failed") else None
    cluster = spec.get("rayClusterSpec") or {}
    head = (((cluster.get("headGroupSpec") or {}).get("template") or {}).get("spec")) or {}
    replicas = [(1, head)] + [
        (int(g.get("replicas", 1) if g.get("replicas") is not None else 1),
         ((g.get("template") or {}).get("spec")) or {})
        for g in cluster.get("workerGroupSpecs") or []]
    return build_facts(
        body, kind="RayJob", api_version="ray.io/v1", outcome=outcome,
        finished_at=time_or_none(status.get("endTime")), started_at=time_or_none(status.get("startTime")),
        suspended=bool(spec.get("suspend")), replicas=replicas,
        succeeded=int(status.get("succeeded") or 0), failed=int(status.get("failed") or 0))


RAYJOB = CrdAdapter(group="ray.io", version="v1", plural="rayjobs", kind="RayJob",
                    report_name="RayJob", read=rayjob_facts)
