"""Workload adapters (operator/workloads/): each kind's manifest -> JobFacts, by equality,
in the shapes their real controllers write (sources cited in each adapter module)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from carbontrack.operator.jobs import JobFacts, job_facts
from carbontrack.operator.workloads import JOB, CrdAdapter, Registry, default_registry
from carbontrack.operator.workloads.jobset import JOBSET
from carbontrack.operator.workloads.pytorchjob import PYTORCHJOB
from carbontrack.operator.workloads.rayjob import RAYJOB
from carbontrack.operator.workloads.trainjob import TRAINJOB

from carbontrack.core.errors import ConfigError

T0 = "2026-12-07T01:00:00Z"
T1 = "2026-12-07T01:05:00Z"
T2 = "2026-12-07T01:09:30Z"
GPU_POD = {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}
CPU_POD = {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}],
           "nodeSelector": {"pool": "cpu"}}


def t(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(timezone.utc)


def meta(**extra: Any) -> dict[str, Any]:
    return {"name": "w", "namespace": "ns", "uid": "u1", "creationTimestamp": T0,
            "labels": {"team": "a"}, "annotations": {"carbontrack.io/budgets": "ns/b", "other": "x"},
            **extra}


def expected(kind: str, api_version: str, **fields: Any) -> JobFacts:
    base: dict[str, Any] = dict(
        uid="u1", namespace="ns", name="w", labels={"team": "a"},
        annotations={"carbontrack.io/budgets": "ns/b"}, created_at=t(T0), started_at=None,
        finished_at=None, outcome=None, deleting=False, finalizers=(), suspended=False,
        completions=None, parallelism=1, succeeded=0, active=0, gpus_per_pod=0, failed=0,
        template={}, kind=kind, api_version=api_version)
    base.update(fields)
    return JobFacts(**base)


def pytorchjob(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": meta(),
            "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": {"spec": GPU_POD}},
                                             "Worker": {"replicas": 3, "template": {"spec": CPU_POD}}},
                     **spec},
            "status": status}


TEMPLATE_2 = {"nodeSelector": {}, "containers": [
    {"resources": {"limits": {"nvidia.com/gpu": "2"}}}, {"resources": {"requests": {"cpu": "1"}}}]}


def test_pytorchjob_succeeded_at_completion_time() -> None:
    status = {"startTime": T1, "completionTime": T2,
              "conditions": [{"type": "Created", "status": "True", "lastTransitionTime": T0},
                             {"type": "Running", "status": "False", "lastTransitionTime": T2},
                             {"type": "Succeeded", "status": "True", "lastTransitionTime": T2}],
              "replicaStatuses": {"Master": {"succeeded": 1}, "Worker": {"succeeded": 3}}}
    assert PYTORCHJOB.facts(pytorchjob(status)) == expected(
        "PyTorchJob", "kubeflow.org/v1", started_at=t(T1), finished_at=t(T2), outcome="Complete",
        parallelism=4, succeeded=4, gpus_per_pod=2, template=TEMPLATE_2)


def test_pytorchjob_failed_running_and_suspended() -> None:
    failed = PYTORCHJOB.facts(pytorchjob({"startTime": T1, "completionTime": T2, "conditions": [
        {"type": "Failed", "status": "True", "lastTransitionTime": T2}],
        "replicaStatuses": {"Worker": {"failed": 1, "active": 2}}}))
    assert (failed.outcome, failed.finished_at, failed.failed, failed.active) == ("Failed", t(T2), 1, 2)
    running = PYTORCHJOB.facts(pytorchjob({"startTime": T1, "conditions": [
        {"type": "Running", "status": "True", "lastTransitionTime": T1}]}))
    assert (running.outcome, running.finished, running.ever_ran) == (None, False, True)
    held = PYTORCHJOB.facts(pytorchjob({}, runPolicy={"suspend": True}))
    assert (held.suspended, held.ever_ran) == (True, False)
    deleted = PYTORCHJOB.facts({**pytorchjob({"startTime": T1}),
                                "metadata": meta(deletionTimestamp=T2, finalizers=["carbontrack.io/accounting"])})
    assert (deleted.outcome, deleted.finished_at, deleted.deleting, deleted.finalizers) == (
        "Deleted", t(T2), True, ("carbontrack.io/accounting",))


def jobset(status: dict[str, Any], suspend: bool = False) -> dict[str, Any]:
    rjob = {"name": "workers", "replicas": 2,
            "template": {"spec": {"parallelism": 2, "template": {"spec": GPU_POD}}}}
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": meta(),
            "spec": {"replicatedJobs": [rjob], "suspend": suspend}, "status": status}


def test_jobset_completed_condition_time() -> None:
    status = {"terminalState": "Completed", "conditions": [
        {"type": "StartupPolicyCompleted", "status": "True", "lastTransitionTime": T1},
        {"type": "Completed", "status": "True", "lastTransitionTime": T2}],
        "replicatedJobsStatus": [{"name": "workers", "succeeded": 2, "active": 0, "failed": 0}]}
    assert JOBSET.facts(jobset(status)) == expected(
        "JobSet", "jobset.x-k8s.io/v1alpha2", finished_at=t(T2), outcome="Complete", parallelism=4,
        succeeded=2, gpus_per_pod=2, template={"nodeSelector": {}, "containers": [
            {"resources": {"limits": {"nvidia.com/gpu": "2"}}}]})


def test_jobset_failed_and_suspended() -> None:
    failed = JOBSET.facts(jobset({"conditions": [{"type": "Failed", "status": "True", "lastTransitionTime": T2}]}))
    assert (failed.outcome, failed.finished_at) == ("Failed", t(T2))
    held = JOBSET.facts(jobset({"conditions": [{"type": "Suspended", "status": "True",
                                                "lastTransitionTime": T1}]}, suspend=True))
    assert (held.outcome, held.suspended) == (None, True)


def test_trainjob_complete_and_failed() -> None:
    body = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": meta(),
            "spec": {"runtimeRef": {"name": "torch-distributed"},
                     "trainer": {"numNodes": 3, "resourcesPerNode": {"limits": {"nvidia.com/gpu": "1"}}}},
            "status": {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": T2}],
                       "jobsStatus": [{"name": "node", "succeeded": 1}]}}
    assert TRAINJOB.facts(body) == expected(
        "TrainJob", "trainer.kubeflow.org/v1alpha1", finished_at=t(T2), outcome="Complete",
        parallelism=3, succeeded=1, gpus_per_pod=1,
        template={"nodeSelector": {}, "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]})
    body["status"] = {"conditions": [{"type": "Failed", "status": "True", "lastTransitionTime": T1}]}
    assert TRAINJOB.facts(body).outcome == "Failed"


def rayjob(status: dict[str, Any]) -> dict[str, Any]:
    cluster = {"headGroupSpec": {"template": {"spec": CPU_POD}},
               "workerGroupSpecs": [{"groupName": "gpu", "replicas": 2, "template": {"spec": GPU_POD}}]}
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": meta(),
            "spec": {"entrypoint": "python x.py", "rayClusterSpec": cluster}, "status": status}


def test_rayjob_terminal_deployment_status_and_end_time() -> None:
    status = {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "startTime": T1,
              "endTime": T2, "succeeded": 1, "failed": 0}
    assert RAYJOB.facts(rayjob(status)) == expected(
        "RayJob", "ray.io/v1", started_at=t(T1), finished_at=t(T2), outcome="Complete", parallelism=3,
        succeeded=1, gpus_per_pod=2, template={"nodeSelector": {"pool": "cpu"}, "containers": [
            {"resources": {"requests": {"cpu": "1"}}}, {"resources": {"limits": {"nvidia.com/gpu": "2"}}}]})
    for state in ("Running", "Retrying", "Suspended", "Initializing"):
        assert RAYJOB.facts(rayjob({"jobDeploymentStatus": state, "startTime": T1})).outcome is None
    failed = RAYJOB.facts(rayjob({"jobDeploymentStatus": "Failed", "startTime": T1, "endTime": T2}))
    assert (failed.outcome, failed.finished_at) == ("Failed", t(T2))
    # terminal without an end time: cannot be placed in a period yet, so not finished
    assert RAYJOB.facts(rayjob({"jobDeploymentStatus": "Complete"})).finished is False


def test_job_adapter_is_job_facts() -> None:
    body = {"metadata": meta(), "spec": {"template": {"spec": GPU_POD}},
            "status": {"startTime": T1, "completionTime": T2, "succeeded": 1,
                       "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": T2}]}}
    assert JOB.facts(body) == job_facts(body)
    assert (JOB.facts(body).kind, JOB.api_version) == ("Job", "batch/v1")


def test_hold_and_release_patches() -> None:
    assert JOB.hold_patch() == {"spec": {"suspend": True}}
    assert JOB.release_patch() == {"spec": {"suspend": False}}
    assert PYTORCHJOB.hold_patch() == {"spec": {"runPolicy": {"suspend": True}}}
    assert RAYJOB.release_patch() == {"spec": {"suspend": False}}


def test_malformed_body_is_a_config_error_naming_the_workload() -> None:
    bad = pytorchjob({"replicaStatuses": {"Worker": {"active": "many"}}})
    with pytest.raises(ConfigError, match="PyTorchJob ns/w is malformed"):
        PYTORCHJOB.facts(bad)
    negative = rayjob({})
    negative["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = -1
    with pytest.raises(ConfigError, match="RayJob ns/w has a negative count"):
        RAYJOB.facts(negative)


def test_registry_kinds_and_errors() -> None:
    registry = default_registry()
    assert [a.kind for a in registry] == ["Job", "JobSet", "PyTorchJob", "TrainJob", "RayJob"]
    assert registry.get("ray.io", "RayJob") is RAYJOB
    assert registry.get("ray.io", "RayCluster") is None
    with pytest.raises(KeyError, match="known: Job, JobSet, PyTorchJob, RayJob, TrainJob"):
        registry.by_kind("Widget")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(JOB)
    with pytest.raises(ValueError, match=r"missing from carbontrack\.core\.owners\.KINDS"):
        Registry([CrdAdapter("example.com", "v1", "widgets", "Widget", "Widget", read=job_facts)])
