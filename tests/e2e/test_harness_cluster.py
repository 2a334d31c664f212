"""The local cluster behaves like a real one where our components depend on it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from carbontrack.devcluster.workloads import sim_job

pytestmark = pytest.mark.e2e


def test_version_and_nodes(cluster: Any, core_v1: Any) -> None:
    status, body = cluster.https_get("/version")
    assert status == 200 and json.loads(body)["gitVersion"] == "v1.36.3"
    nodes = {n.metadata.name: n for n in core_v1.list_node().items}
    gpu = nodes["sim-gpu-0"]
    assert gpu.metadata.labels["topology.kubernetes.io/region"] == "eu-west-1"
    assert gpu.metadata.labels["node.kubernetes.io/instance-type"] == "p4d.24xlarge"
    assert gpu.spec.provider_id == "aws:///eu-west-1a/i-0c0ffee000000001"
    assert gpu.status.allocatable["nvidia.com/gpu"] == "8"
    assert all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
               for n in nodes.values())


def test_nodes_renew_their_leases_like_kubelets(core_v1: Any, api_client: Any, wait_for: Any) -> None:
    """kwok renews each node's Lease every ~10 s. Without it (kwok's flag left unset) only a
    node-status heartbeat came, every ~55 s, past the controller-manager's 50 s grace: every
    node went NotReady about once a minute, got the not-ready/unreachable taints, and the
    scheduler left pods Pending meanwhile (in the 5,000-Job bench, 34 Jobs' pods for 10 min)."""
    from datetime import datetime, timezone

    from kubernetes import client

    leases = client.CoordinationV1Api(api_client)
    nodes = [n.metadata.name for n in core_v1.list_node().items]
    first = {n: leases.read_namespaced_lease(n, "kube-node-lease").spec for n in nodes}
    assert all(spec.lease_duration_seconds == 40 and spec.holder_identity for spec in first.values())

    def renewed() -> bool:
        return all(leases.read_namespaced_lease(n, "kube-node-lease").spec.renew_time > first[n].renew_time
                   for n in nodes)

    wait_for("every node lease renewed", renewed, 25)
    now = datetime.now(timezone.utc)
    for n in nodes:
        assert (now - leases.read_namespaced_lease(n, "kube-node-lease").spec.renew_time).total_seconds() < 20
        node = core_v1.read_node(n)
        # the node lifecycle's taints (not-ready, unreachable); sim-amd-0's amd.com/gpu taint
        # is the one AMD's device plugin docs suggest, set by the harness on purpose
        lifecycle = [t for t in node.spec.taints or [] if t.key.startswith("node.kubernetes.io/")]
        assert not lifecycle, f"{n} is tainted: {lifecycle}"


def test_failing_job_pod_fails_and_its_cgroup_comes_and_goes(
    namespace: str, batch_v1: Any, core_v1: Any, simulator: Any, wait_for: Any,
) -> None:
    batch_v1.create_namespaced_job(
        namespace, sim_job("boom", run_seconds=4, cpu_cores=1, fail=True, node="sim-cpu-0"))

    def running_pod() -> Any:
        pods = core_v1.list_namespaced_pod(namespace, label_selector="job-name=boom").items
        return pods[0] if pods and pods[0].status.phase == "Running" else None

    pod = wait_for("the pod to run", running_pod, 30)
    uid = pod.metadata.uid
    tree = simulator.nodes["sim-cpu-0"].cgroups
    # record() takes the simulator's lock: the tree is complete once the pod is recorded
    wait_for("the pod's cgroup to appear", lambda: simulator.record(uid), 10)
    cgroup_dir = tree.container_dir(uid, "train")
    assert cgroup_dir.is_dir()
    # the kubelet's part: the container's runtime id is posted to the pod status
    cid = wait_for("the containerID in the pod status", lambda: core_v1.read_namespaced_pod(
        pod.metadata.name, namespace).status.container_statuses[0].container_id, 10)
    assert cid == f"containerd://{tree.pods[uid].containers['train'].id}"
    # ServiceAccount admission ran: the pod has its projected token volume
    assert any(v.projected is not None for v in pod.spec.volumes or [])

    def failed() -> bool:
        job = batch_v1.read_namespaced_job("boom", namespace)
        return any(c.type == "Failed" and c.status == "True" for c in job.status.conditions or [])

    wait_for("the Job controller to mark the Job Failed", failed, 40)
    done = core_v1.read_namespaced_pod(pod.metadata.name, namespace)
    assert done.status.phase == "Failed"
    term = done.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (1, "Error")
    assert done.status.container_statuses[0].container_id == cid  # kept through the stage
    wait_for("the pod's cgroup to go", lambda: not cgroup_dir.exists(), 10)
    rec = simulator.record(uid)
    assert rec.ended - rec.started == pytest.approx(4.0, abs=2.5)
    # the simulator accrues energy per tick (0.5 s, later under load): start and end each
    # fall inside a tick, so the joules are 8 W x run time to within about a tick's energy
    tick_j = 8.0 * 1 * max(simulator.tick_s, 0.5) * 2
    assert rec.joules["cpu"] == pytest.approx(8.0 * 1 * (rec.ended - rec.started), abs=tick_j)
    assert rec.joules["cpu"] > 0


def test_prometheus_scrapes_every_exporter(prometheus: Any, exporters: Any, wait_for: Any) -> None:
    def all_up() -> dict[str, str] | None:
        health = prometheus.targets_health()
        want = {f"{e.url}/metrics" for e in exporters.values()}
        return health if want <= set(health) and all(health[t] == "up" for t in want) else None

    wait_for("every exporter target up", all_up, 30)
    result = prometheus.query('carbontrack_source_up{source="rapl"}')
    assert {r["metric"]["node"]: r["value"][1] for r in result} == {n: "1" for n in exporters}
