"""Root-owner resolution (carbontrack.core.owners, operator/workloads/roots.py): the walk by
hand, every bad input, and the async driver."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from carbontrack.operator.workloads import needs_walk, resolve_root

from carbontrack.core.owners import (
    CYCLE,
    DANGLING,
    TOO_DEEP,
    UNKNOWN_KIND,
    OwnerRef,
    Resolution,
    RootWalk,
    controller_ref,
)

JOB = OwnerRef("batch/v1", "Job", "train-0", "u-job")
JOBSET = OwnerRef("jobset.x-k8s.io/v1alpha2", "JobSet", "train", "u-js")
TRAINJOB = OwnerRef("trainer.kubeflow.org/v1alpha1", "TrainJob", "train", "u-tj")
RAYCLUSTER = OwnerRef("ray.io/v1", "RayCluster", "rc", "u-rc")
RAYJOB = OwnerRef("ray.io/v1", "RayJob", "rj", "u-rj")
CRONJOB = OwnerRef("batch/v1", "CronJob", "nightly", "u-cron")
WIDGET = OwnerRef("example.com/v1", "Widget", "w", "u-w")


def body(ref: OwnerRef, controller: OwnerRef | None = None, namespace: str = "ns") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": ref.name, "uid": ref.uid, "namespace": namespace}
    if controller is not None:
        meta["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Other", "name": "x", "uid": "u-other"},  # not the controller
            {"apiVersion": controller.api_version, "kind": controller.kind, "name": controller.name,
             "uid": controller.uid, "controller": True}]
    return {"apiVersion": ref.api_version, "kind": ref.kind, "metadata": meta}


def walk(start: OwnerRef, objects: Mapping[str, Mapping[str, Any]]) -> tuple[Resolution, list[str]]:
    reads: list[str] = []
    w = RootWalk(start)
    while (ref := w.pending) is not None:
        reads.append(ref.uid)
        w.feed(objects.get(ref.name + "/" + ref.kind))
    assert w.result is not None
    return w.result, reads


def objs(*bodies: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{b['metadata']['name']}/{b['kind']}": b for b in bodies}


def test_controller_ref_is_the_one_marked_controller() -> None:
    assert controller_ref(body(JOB, JOBSET)["metadata"]) == JOBSET
    assert controller_ref(body(JOB)["metadata"]) is None
    assert controller_ref({"ownerReferences": [{"kind": "Job", "controller": False}]}) is None


def test_plain_job_is_its_own_root() -> None:
    assert walk(JOB, objs(body(JOB))) == (Resolution(JOB, (JOB,)), ["u-job"])


def test_trainjob_chain_job_jobset_trainjob() -> None:
    result, reads = walk(JOB, objs(body(JOB, JOBSET), body(JOBSET, TRAINJOB), body(TRAINJOB)))
    assert result == Resolution(TRAINJOB, (JOB, JOBSET, TRAINJOB))
    assert reads == ["u-job", "u-js", "u-tj"]


def test_raycluster_leads_to_rayjob() -> None:
    result, _ = walk(RAYCLUSTER, objs(body(RAYCLUSTER, RAYJOB), body(RAYJOB)))
    assert result == Resolution(RAYJOB, (RAYCLUSTER, RAYJOB))


def test_cronjob_is_a_boundary_not_a_root() -> None:
    result, reads = walk(JOB, objs(body(JOB, CRONJOB)))
    assert result == Resolution(JOB, (JOB,))
    assert reads == ["u-job"]  # the CronJob is never read


def test_unknown_controller_kind_stops_below_it_with_a_reason() -> None:
    result, _ = walk(JOB, objs(body(JOB, WIDGET)))
    assert (result.root, result.reason) == (JOB, UNKNOWN_KIND)
    assert result.chain == (JOB, WIDGET)
    assert result.message is not None and "Widget w (example.com/v1, uid u-w)" in result.message
    assert "accounted as Job train-0" in result.message


def test_unknown_start_kind_is_the_root_with_a_reason() -> None:
    result, reads = walk(WIDGET, {})
    assert (result.root, result.reason, reads) == (WIDGET, UNKNOWN_KIND, [])


def test_cycle_ends_at_the_start() -> None:
    other = OwnerRef("batch/v1", "Job", "train-1", "u-job1")
    result, _ = walk(JOB, objs(body(JOB, other), body(other, JOB)))
    assert (result.root, result.reason) == (JOB, CYCLE)
    assert result.message == ("ownerReference cycle: Job train-0 -> Job train-1 -> Job train-0; "
                              "accounted as Job train-0")


def test_dangling_controller_ends_at_the_object_naming_it() -> None:
    result, _ = walk(JOB, objs(body(JOB, JOBSET)))
    assert (result.root, result.reason) == (JOB, DANGLING)
    assert result.message == ("JobSet train (jobset.x-k8s.io/v1alpha2, uid u-js), the controller of "
                              "Job train-0, does not exist")


def test_namesake_with_another_uid_is_dangling() -> None:
    impostor = body(OwnerRef(JOBSET.api_version, "JobSet", "train", "u-new"))
    result, _ = walk(JOB, objs(body(JOB, JOBSET), impostor))
    assert (result.root, result.reason) == (JOB, DANGLING)


def test_missing_start_is_dangling_on_itself() -> None:
    result, _ = walk(JOB, {})
    assert (result.root, result.reason) == (JOB, DANGLING)


def test_too_deep_chain_stops() -> None:
    chain = [OwnerRef("batch/v1", "Job", f"j{i}", f"u{i}") for i in range(12)]
    bodies = objs(*[body(chain[i], chain[i + 1]) for i in range(11)], body(chain[11]))
    result, _ = walk(chain[0], bodies)
    assert result.reason == TOO_DEEP
    assert result.root == chain[8] and len(result.chain) == 9


def test_async_driver_feeds_the_workload_itself_without_a_read() -> None:
    reads: list[tuple[str, str]] = []
    store = objs(body(JOBSET, TRAINJOB), body(TRAINJOB))

    async def read(namespace: str, ref: OwnerRef) -> Mapping[str, Any] | None:
        reads.append((namespace, ref.kind))
        return store.get(ref.name + "/" + ref.kind)

    job = body(JOB, JOBSET)
    assert needs_walk(job) and not needs_walk(body(JOB))
    result = asyncio.run(resolve_root(job, read))
    assert result == Resolution(TRAINJOB, (JOB, JOBSET, TRAINJOB))
    assert reads == [("ns", "JobSet"), ("ns", "TrainJob")]
