"""Pod metadata builder (pure, tested by equality) and the cache."""

from __future__ import annotations

from typing import Any

import pytest
from carbontrack.exporter.pods import PodCache, PodMeta, meta_from_event, parse_cpu, parse_memory, pod_meta
from carbontrack.exporter.state import Owner


def job_pod(**over: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "metadata": {
            "uid": "pod-uid-1", "namespace": "ml", "name": "train-abc12",
            "labels": {"batch.kubernetes.io/job-name": "train",
                       "batch.kubernetes.io/controller-uid": "job-uid-9"},
            "ownerReferences": [{"kind": "Job", "name": "train", "uid": "job-uid-9",
                                 "controller": True}],
        },
        "spec": {"containers": [
            {"name": "main", "resources": {"requests": {"cpu": "1500m", "memory": "2Gi"}}},
            {"name": "log", "resources": {}},
        ], "initContainers": [{"name": "fetch", "resources": {"requests": {"cpu": "1"}}}]},
        "status": {
            "containerStatuses": [{"name": "main", "containerID": "containerd://abc"},
                                  {"name": "log", "containerID": "containerd://def"}],
            "initContainerStatuses": [{"name": "fetch", "containerID": "cri-o://0f0"}],
        },
    }
    pod["metadata"].update(over)
    return pod


def test_job_pod_meta() -> None:
    assert pod_meta(job_pod()) == PodMeta(
        "pod-uid-1",
        Owner("ml", "train-abc12", "Job", "train", "job-uid-9"),
        {"abc": "main", "def": "log", "0f0": "fetch"},
        {"main": (1.5, 2 << 30), "log": (0.0, 0), "fetch": (1.0, 0)},
    )


def test_owner_from_job_labels_without_owner_reference() -> None:
    m = pod_meta(job_pod(ownerReferences=None, labels={"job-name": "old", "controller-uid": "u"}))
    assert m.owner == Owner("ml", "train-abc12", "Job", "old", "u")


def test_deployment_pod_names_its_replicaset() -> None:
    m = pod_meta(job_pod(labels={}, ownerReferences=[
        {"kind": "ReplicaSet", "name": "web-7d9", "uid": "rs-1", "controller": True}]))
    assert (m.owner.owner_kind, m.owner.owner_name, m.owner.owner_uid) == (
        "ReplicaSet", "web-7d9", "rs-1")


def test_pending_pod_without_status() -> None:
    m = pod_meta({"metadata": {"uid": "u", "namespace": "n", "name": "p"}})
    assert m == PodMeta("u", Owner("n", "p"), {}, {})


@pytest.mark.parametrize(("q", "cores"), [("500m", 0.5), ("2", 2.0), ("0.25", 0.25)])
def test_parse_cpu(q: str, cores: float) -> None:
    assert parse_cpu(q) == cores


@pytest.mark.parametrize(("q", "b"), [("1Gi", 1 << 30), ("512M", 512_000_000), ("1000", 1000),
                                      ("1.5Ki", 1536)])
def test_parse_memory(q: str, b: int) -> None:
    assert parse_memory(q) == b


def test_cache_by_uid_and_name() -> None:
    c = PodCache()
    m = pod_meta(job_pod())
    c.put(m)
    assert c.get("pod-uid-1") == m and c.uid_for("ml", "train-abc12") == "pod-uid-1"
    c.delete("pod-uid-1")
    assert c.get("pod-uid-1") is None and c.uid_for("ml", "train-abc12") is None


def running(pod: dict[str, Any]) -> dict[str, Any]:
    pod["status"]["phase"] = "Running"
    return pod


@pytest.mark.parametrize("event_type", ["ADDED", "MODIFIED"])
def test_live_pod_events_keep_its_reservation(event_type: str) -> None:
    meta = meta_from_event(event_type, running(job_pod()))
    assert meta == pod_meta(running(job_pod()))
    assert meta is not None and not meta.released


def test_deleted_running_pod_is_released_but_keeps_its_labels() -> None:
    # a pod deleted while Running (eviction, kubectl delete) frees its requests at once; its
    # containers keep their names and owner so the energy of their last interval is labelled
    meta = meta_from_event("DELETED", running(job_pod()))
    assert meta == PodMeta(
        "pod-uid-1",
        Owner("ml", "train-abc12", "Job", "train", "job-uid-9"),
        {"abc": "main", "def": "log", "0f0": "fetch"},
        {"main": (1.5, 2 << 30), "log": (0.0, 0), "fetch": (1.0, 0)},
        released=True,
    )


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_finished_pod_is_released_before_and_after_deletion(phase: str) -> None:
    pod = job_pod()
    pod["status"]["phase"] = phase
    modified, deleted = meta_from_event("MODIFIED", pod), meta_from_event("DELETED", pod)
    assert modified is not None and modified.released
    assert deleted == modified


@pytest.mark.parametrize("event_type", ["BOOKMARK", "ERROR"])
def test_events_without_pod_state_change_nothing(event_type: str) -> None:
    assert meta_from_event(event_type, {"metadata": {"resourceVersion": "42"}}) is None


def test_mirror_pod_is_keyed_by_the_static_pods_uid() -> None:
    """The API's mirror of a static pod has its own metadata.uid; the cgroups carry the
    static pod's UID, which the kubelet writes into the kubernetes.io/config.mirror
    annotation. The cache keys the pod by that, so its containers get their labels."""
    static_uid = "6f1c2b9e0d8a4c7f9e3b5a1d2c4e6f80"
    mirror = {"metadata": {
        "uid": "0b7f8c1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e", "namespace": "kube-system",
        "name": "etcd-node-1",
        "annotations": {"kubernetes.io/config.mirror": static_uid,
                        "kubernetes.io/config.hash": static_uid,
                        "kubernetes.io/config.source": "file"},
        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node-1",
                             "uid": "node-uid", "controller": True}]},
        "spec": {"containers": [{"name": "etcd", "resources": {"requests": {"cpu": "100m"}}}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": "etcd", "containerID": "containerd://" + "cd" * 32}]}}
    m = pod_meta(mirror)
    assert m == PodMeta(static_uid, Owner("kube-system", "etcd-node-1", "Node", "node-1",
                                          "node-uid"),
                        {"cd" * 32: "etcd"}, {"etcd": (0.1, 0)})
    c = PodCache()
    c.put(m)
    assert c.get(static_uid) == m and c.uid_for("kube-system", "etcd-node-1") == static_uid
