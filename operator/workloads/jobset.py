"""JobSet (jobset.x-k8s.io/v1alpha2, sigs.k8s.io/jobset v0.8.2).

Completion, from the controller (sigs.k8s.io/jobset@v0.8.2):
- pkg/controllers/jobset_controller.go:995-1025 (setJobSetCompletedCondition): a
  ``Completed`` condition True and ``status.terminalState: Completed`` when the success
  policy is met;
- pkg/controllers/failure_policy.go:259 (setJobSetFailedCondition): a ``Failed`` condition
  True and ``terminalState: Failed``;
- ``spec.suspend`` suspends its Jobs and sets a ``Suspended`` condition.
The conditions are metav1.Conditions: the finish time is the condition's lastTransitionTime.
The status has no start time: the window starts at creation. Pods belong to Jobs whose
controller is the JobSet (and a TrainJob's JobSet has the TrainJob as its controller).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..jobs import JobFacts
from .base import CrdAdapter
from .facts import build_facts, sum_counts, time_or_none, true_condition


def jobset_facts(body: Mapping[str, Any]) -> JobFacts:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    done = true_condition(status, "Completed", "Failed")
    outcome = None if done is None else ("Complete" if done["type"] == "Completed" else "Failed")
    replicas = []
    for rjob in spec.get("replicatedJobs") or []:
        job_spec = (rjob.get("template") or {}).get("spec") or {}
        pods = int(rjob.get("replicas", 1) or 1) * int(job_spec.get("parallelism", 1) or 1)
        replicas.append((pods, (job_spec.get("template") or {}).get("spec") or {}))
    active, succeeded, failed = sum_counts(status.get("replicatedJobsStatus") or [])
    return build_facts(
        body, kind="JobSet", api_version="jobset.x-k8s.io/v1alpha2", outcome=outcome,
        finished_at=time_or_none((done or {}).get("lastTransitionTime")), started_at=None,
        suspended=bool(spec.get("suspend")), replicas=replicas,
        active=active, succeeded=succeeded, failed=failed)


JOBSET = CrdAdapter(group="jobset.x-k8s.io", version="v1alpha2", plural="jobsets", kind="JobSet",
                    report_name="JobSet", read=jobset_facts)
