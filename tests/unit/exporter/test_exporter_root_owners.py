"""Pods' owner labels lead to their root owner (exporter/owners.py) through real HTTP reads
of the owners from carbontrack.sim.fakeapiserver, with the pod watch."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from carbontrack.exporter.kubeapi import ApiClient
from carbontrack.exporter.owners import RootOwners, owner_path
from carbontrack.exporter.pods import PodCache, pod_meta
from carbontrack.exporter.podwatch import Backoff, PodWatcher
from carbontrack.exporter.state import Owner

from carbontrack.core.apiconfig import ApiEndpoint, no_credentials
from carbontrack.core.owners import OwnerRef
from carbontrack.sim.fakeapiserver import FakeApiServer

NODE = "node-1"
JOB = OwnerRef("batch/v1", "Job", "train-workers-0", "u-job")
JOBSET = OwnerRef("jobset.x-k8s.io/v1alpha2", "JobSet", "train", "u-js")
TRAINJOB = OwnerRef("trainer.kubeflow.org/v1alpha1", "TrainJob", "train", "u-tj")
RAYCLUSTER = OwnerRef("ray.io/v1", "RayCluster", "rj-raycluster", "u-rc")
RAYJOB = OwnerRef("ray.io/v1", "RayJob", "rj", "u-rj")


def ref_json(ref: OwnerRef) -> dict[str, Any]:
    return {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name, "uid": ref.uid,
            "controller": True, "blockOwnerDeletion": True}


def obj(ref: OwnerRef, controller: OwnerRef | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": ref.name, "namespace": "ml", "uid": ref.uid}
    if controller is not None:
        meta["ownerReferences"] = [ref_json(controller)]
    return {"apiVersion": ref.api_version, "kind": ref.kind, "metadata": meta}


def pod(uid: str, controller: OwnerRef | None) -> dict[str, Any]:
    md: dict[str, Any] = {"uid": uid, "namespace": "ml", "name": f"p-{uid}"}
    if controller is not None:
        md["ownerReferences"] = [ref_json(controller)]
    return {"metadata": md, "spec": {"nodeName": NODE, "containers": [{"name": "main"}]},
            "status": {"phase": "Running"}}


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as s:
        yield s


def client(server: FakeApiServer) -> ApiClient:
    port = int(server.url.rsplit(":", 1)[1])
    return ApiClient(ApiEndpoint("http", "127.0.0.1", port, "", None, no_credentials), timeout_s=10)


def serve(server: FakeApiServer, *objects: dict[str, Any]) -> None:
    for o in objects:
        ref = OwnerRef(o["apiVersion"], o["kind"], o["metadata"]["name"], o["metadata"]["uid"])
        path = owner_path("ml", ref)
        assert path is not None
        server.objects[path] = o


def owner_of(owners: RootOwners, p: dict[str, Any]) -> Owner:
    return owners.rooted(pod_meta(p), p).owner


def test_owner_paths() -> None:
    assert owner_path("ml", JOB) == "/apis/batch/v1/namespaces/ml/jobs/train-workers-0"
    assert owner_path("ml", RAYJOB) == "/apis/ray.io/v1/namespaces/ml/rayjobs/rj"
    assert owner_path("ml", OwnerRef("example.com/v1", "Widget", "w", "u")) is None


def test_trainjob_pods_lead_to_the_trainjob_with_one_read_per_level(server: FakeApiServer) -> None:
    serve(server, obj(JOB, JOBSET), obj(JOBSET, TRAINJOB), obj(TRAINJOB))
    owners = RootOwners(client(server))
    assert owner_of(owners, pod("p1", JOB)) == Owner("ml", "p-p1", "TrainJob", "train", "u-tj")
    assert owner_of(owners, pod("p2", JOB)) == Owner("ml", "p-p2", "TrainJob", "train", "u-tj")
    assert owners.reads == 3  # Job, JobSet, TrainJob once; the second pod hits the cache


def test_rayjob_and_plain_job_and_bare_pod(server: FakeApiServer) -> None:
    plain = OwnerRef("batch/v1", "Job", "plain", "u-plain")
    serve(server, obj(RAYCLUSTER, RAYJOB), obj(RAYJOB), obj(plain))
    owners = RootOwners(client(server))
    assert owner_of(owners, pod("r", RAYCLUSTER)) == Owner("ml", "p-r", "RayJob", "rj", "u-rj")
    assert owner_of(owners, pod("j", plain)) == Owner("ml", "p-j", "Job", "plain", "u-plain")
    assert owner_of(owners, pod("b", None)) == Owner("ml", "p-b")


def test_bad_chains_keep_the_last_known_owner(server: FakeApiServer) -> None:
    widget = OwnerRef("example.com/v1", "Widget", "w", "u-w")
    cyc_a = OwnerRef("batch/v1", "Job", "a", "u-a")
    cyc_b = OwnerRef("batch/v1", "Job", "b", "u-b")
    dangling = OwnerRef("batch/v1", "Job", "orphan", "u-orphan")
    unknown_above = OwnerRef("batch/v1", "Job", "under-widget", "u-uw")
    serve(server, obj(cyc_a, cyc_b), obj(cyc_b, cyc_a), obj(dangling, JOBSET), obj(unknown_above, widget))
    owners = RootOwners(client(server))
    assert owner_of(owners, pod("c", cyc_a)).owner_uid == "u-a"
    assert owner_of(owners, pod("d", dangling)).owner_uid == "u-orphan"
    assert owner_of(owners, pod("u", unknown_above)).owner_uid == "u-uw"
    assert owner_of(owners, pod("w", widget)) == Owner("ml", "p-w", "Widget", "w", "u-w")


def test_a_failing_read_is_retried_then_not_cached(server: FakeApiServer) -> None:
    serve(server, obj(JOB, JOBSET), obj(JOBSET))
    slept: list[float] = []
    owners = RootOwners(client(server), tries=2, retry_s=0.25, sleep=slept.append)
    server.fail_next(1, status=503)  # the retry succeeds
    assert owner_of(owners, pod("p", JOB)) == Owner("ml", "p-p", "JobSet", "train", "u-js")
    assert slept == [0.25]
    other = OwnerRef("batch/v1", "Job", "other", "u-other")
    serve(server, obj(other, JOBSET))
    server.fail_next(2, status=503)  # both tries fail: the direct controller, not remembered
    assert owner_of(owners, pod("q", other)) == Owner("ml", "p-q", "Job", "other", "u-other")
    assert owner_of(owners, pod("q", other)) == Owner("ml", "p-q", "JobSet", "train", "u-js")


def wait_until(what: str, cond: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := cond():
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_pod_watch_labels_pods_with_the_root_and_keeps_it(server: FakeApiServer) -> None:
    serve(server, obj(JOB, JOBSET), obj(JOBSET))
    server.add(pod("aaaaaaaa", JOB))
    cache = PodCache()
    api = client(server)
    w = PodWatcher(api, NODE, cache, backoff=Backoff(initial_s=0.01, max_s=0.05), owners=RootOwners(api))
    w.start()
    try:
        wait_until("the list", lambda: cache.get("aaaaaaaa"))
        assert cache.get("aaaaaaaa").owner.owner_kind == "JobSet"  # type: ignore[union-attr]
        server.objects.clear()  # the JobSet and its Job are deleted; the pod lingers
        server.modify({**pod("aaaaaaaa", JOB), "status": {"phase": "Succeeded"}})
        wait_until("the update", lambda: cache.get("aaaaaaaa").released)  # type: ignore[union-attr]
        assert cache.get("aaaaaaaa").owner == Owner(  # type: ignore[union-attr]
            "ml", "p-aaaaaaaa", "JobSet", "train", "u-js")
    finally:
        w.stop()
