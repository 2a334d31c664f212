"""A finished pod holds no reservation: its lingering cgroup gets no idle energy.

After a pod Succeeds or Fails (or is deleted) the kubelet keeps its cgroup a little while
(cleanup lag) and the exporter still reads it, with no new CPU use. The scheduler has already
released the pod's requests, so under ``--idle-policy reserved`` the idle share must not go
to it. Seen in the e2e chart test: on a 2-core node with 0 W idle, a 1-core Job sharing the
node with a busy 1-core pod was charged 1.09x its simulated joules, because for the ~1.5 s
its cgroup lingered half of the half-busy node's energy counted as idle and a quarter of it
went to the finished Job by its 1-core request.
"""

from __future__ import annotations

from typing import Any

import pytest
from carbontrack.exporter.pods import PodMeta, pod_meta
from carbontrack.exporter.state import Owner

GIB = 1 << 30
A = "0a0a0a0a-1111-2222-3333-444444444444"  # long-running, busy 4 cores
J = "0b0b0b0b-1111-2222-3333-444444444444"  # the Job pod: busy 4 cores, then finishes
OWNER_J = Owner("ml", "job-x", "Job", "x", "job-uid-x")


def meta(node: Any, uid: str, owner: Owner, phase: str) -> PodMeta:
    """The pod as the watch delivers it, through the real builder."""
    pod = node.tree.pods[uid]
    return pod_meta({
        "metadata": {"uid": uid, "namespace": owner.namespace, "name": owner.pod,
                     "ownerReferences": [{"kind": owner.owner_kind, "name": owner.owner_name,
                                          "uid": owner.owner_uid, "controller": True}]},
        "spec": {"containers": [{"name": "main", "resources": {"requests": {
            "cpu": "4", "memory": "8Gi"}}}]},
        "status": {"phase": phase, "containerStatuses": [
            {"name": c.name, "containerID": f"containerd://{c.id}"}
            for c in pod.containers.values() if not c.pause]},
    })


def step(node: Any, seconds: float, busy: dict[str, float], joules: float) -> None:
    node.now += seconds
    node.rapl(joules, 0.0, 0.0, 0.0)
    for uid, cpu_s in busy.items():
        node.tree.advance_cpu(uid, "main", cpu_s)


def test_finished_pod_lingering_cgroup_gets_no_reserved_idle(make_node: Any) -> None:
    node = make_node()  # 8 CPUs
    node.add_pod(A, "guaranteed", {"main": (4.0, 8 * GIB)}, owner=("Job", "a", "uid-a"))
    node.tree.add_pod(J, "guaranteed", {"main": (4.0, 8 * GIB)})
    node.pods.put(meta(node, J, OWNER_J, "Running"))
    eng = node.engine()  # idle policy reserved
    assert eng.collect() is None  # baseline
    # both busy: 8 of 8 CPUs, all 80 J active, half each
    step(node, 1.0, {A: 4.0, J: 4.0}, 80.0)
    r = eng.collect()
    assert r is not None
    assert r.containers[(J, "main")] == {"cpu": pytest.approx(40.0)}

    # J Succeeded; its cgroup lingers with no new CPU use. A alone: busy 4 of 8 -> 40 J,
    # 20 J active (A's) and 20 J idle, of which A's 4-core request takes 4/8.
    node.pods.put(meta(node, J, OWNER_J, "Succeeded"))
    step(node, 1.0, {A: 4.0}, 40.0)
    r = eng.collect()
    assert r is not None
    assert r.containers.get((J, "main"), {}).get("cpu", 0.0) == 0.0  # was 10 J (4/8 of idle)
    assert r.containers[(A, "main")] == {"cpu": pytest.approx(20.0 + 20.0 * 4 / 8)}
    assert r.unallocated["cpu"] == pytest.approx(10.0)  # spare capacity's idle share
    assert sum(c["cpu"] for c in r.containers.values()) + r.unallocated["cpu"] == (
        pytest.approx(40.0, rel=1e-12))
    # the Job's total is exactly what its busy cores drew
    assert eng.ledger.containers[(J, "main")].joules == {("cpu", "measured"): pytest.approx(40.0)}


def test_running_pod_with_no_cpu_use_keeps_its_reserved_idle(make_node: Any) -> None:
    """The reservation rule itself is unchanged for a pod that still holds its requests."""
    node = make_node()
    node.add_pod(A, "guaranteed", {"main": (4.0, 8 * GIB)}, owner=("Job", "a", "uid-a"))
    node.tree.add_pod(J, "guaranteed", {"main": (4.0, 8 * GIB)})
    node.pods.put(meta(node, J, OWNER_J, "Running"))
    eng = node.engine()
    eng.collect()
    step(node, 1.0, {A: 4.0}, 40.0)
    r = eng.collect()
    assert r is not None
    assert r.containers[(J, "main")] == {"cpu": pytest.approx(20.0 * 4 / 8)}
    assert r.unallocated["cpu"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(("phase", "released"), [
    ("Pending", False), ("Running", False), ("Unknown", False), (None, False),
    ("Succeeded", True), ("Failed", True),
])
def test_pod_meta_released_by_phase(phase: str | None, released: bool) -> None:
    pod: dict[str, Any] = {"metadata": {"uid": "u", "namespace": "n", "name": "p"}}
    if phase is not None:
        pod["status"] = {"phase": phase}
    assert pod_meta(pod) == PodMeta("u", Owner("n", "p"), {}, {}, released=released)
