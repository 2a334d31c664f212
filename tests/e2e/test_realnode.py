"""A real worker node (kubelet + containerd + runc + bridge CNI on this machine) beside the
kwok nodes: it joins and becomes Ready, runs pods from locally built images, its pods reach
the API server, and its teardown leaves the host exactly as it found it.

No real node here (not root, a package missing, the kubelet not built) is an error, not a
skip: these tests are the proof that CarbonTrack works where users run it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL = {"carbontrack.io/node-kind": "real"}


@pytest.fixture(scope="module")
def realstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from carbontrack.devcluster.binaries import ensure_all
    from carbontrack.devcluster.process import install_cleanup
    from carbontrack.devcluster.stack import start_stack

    state = tmp_path_factory.mktemp("realnode")
    binaries = ensure_all(root=REPO_ROOT, log=state / "build.log")
    stack = start_stack(state, binaries, real_node=True)
    unregister = install_cleanup(stack.stop)
    try:
        yield stack
    finally:
        stack.stop()
        unregister()


@pytest.fixture(scope="module")
def core(realstack: Any) -> Iterator[Any]:
    from kubernetes import client

    from carbontrack.devcluster.kube import api_client

    with api_client(realstack.cluster.kubeconfig) as api:
        yield client.CoreV1Api(api)


@pytest.fixture
def ns(request: pytest.FixtureRequest, core: Any) -> Iterator[str]:
    name = "rn-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40]
    name = name.strip("-")
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def _debian_ref() -> str:
    from carbontrack.devcluster.binaries import cache_dir
    from carbontrack.devcluster.imagebuild import ImageBuilder

    return ImageBuilder(cache_dir() / "images", Path(os.devnull)).debian().ref


def _pod(name: str, command: list[str], image: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": REAL,
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never",
                            "command": command}],
        },
    }


def _phase(core: Any, ns: str, name: str) -> str:
    return str(core.read_namespaced_pod(name, ns).status.phase)


def test_real_node_joins_ready_beside_the_kwok_nodes(realstack: Any, core: Any) -> None:
    nodes = {n.metadata.name: n for n in core.list_node().items}
    real = nodes["real-node-0"]
    assert real.metadata.labels["carbontrack.io/node-kind"] == "real"
    assert real.metadata.labels["topology.kubernetes.io/region"] == "eu-west-1"
    assert real.status.node_info.kubelet_version == "v1.36.3"
    assert real.status.node_info.container_runtime_version.startswith("containerd://1.6.")
    ready = {n: any(c.type == "Ready" and c.status == "True" for c in v.status.conditions)
             for n, v in nodes.items()}
    assert ready == {"real-node-0": True, "sim-gpu-0": True, "sim-small-0": True,
                     "sim-cpu-0": True}
    addresses = {a.type: a.address for a in real.status.addresses}
    assert addresses["InternalIP"] == realstack.real_node.address
    # the apiserver advertises the address pods reach it at, not loopback
    eps = core.read_namespaced_endpoints("kubernetes", "default")
    assert [a.ip for s in eps.subsets for a in s.addresses] == [realstack.real_node.address]


def test_pod_runs_on_the_real_node_and_reaches_the_apiserver(
    realstack: Any, core: Any, ns: str
) -> None:
    from carbontrack.devcluster.wait import wait_for

    # in-cluster config the way client libraries do it: Service env vars + the SA token
    script = (
        "import json, os, ssl, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "ctx = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "host = os.environ['KUBERNETES_SERVICE_HOST']\n"
        "req = urllib.request.Request(f'https://{host}/version', headers={\n"
        "    'Authorization': 'Bearer ' + open(sa + '/token').read()})\n"
        "print(host, json.load(urllib.request.urlopen(req, context=ctx))['gitVersion'])\n"
        "print('cgroup', open('/proc/self/cgroup').read().replace(chr(10), ' '))\n"
    )
    core.create_namespaced_pod(ns, _pod("hello", ["python3.11", "-c", script], _debian_ref()))
    phase = wait_for("pod hello to end", lambda: (p := _phase(core, ns, "hello")) in
                     ("Succeeded", "Failed") and p, 90)
    log = core.read_namespaced_pod_log("hello", ns)  # apiserver -> kubelet on InternalIP
    assert phase == "Succeeded", log
    assert log.splitlines()[0] == "10.96.0.1 v1.36.3"
    pod = core.read_namespaced_pod("hello", ns)
    assert pod.spec.node_name == "real-node-0"
    assert pod.status.pod_ip.startswith("10.88.0.")
    # a real cgroup of the kubelet's cgroupfs layout (v1): kubepods/besteffort/pod<uid>/<id>
    cid = pod.status.container_statuses[0].container_id.removeprefix("containerd://")
    assert f":/kubepods/besteffort/pod{pod.metadata.uid}/{cid}" in log


def test_teardown_restores_the_host(realstack: Any) -> None:
    """Last in this module: stops the real node and compares the host with the snapshot
    taken before it started (mounts and their propagation, iptables, cgroups, sysctls,
    network devices, directories) and checks that no process of it is left."""
    from carbontrack.devcluster import hostchanges
    from carbontrack.devcluster.realnode import _shim_pids

    node = realstack.real_node
    pids = [p.pid for p in node.processes]
    socket = node.containerd.socket
    t0 = time.monotonic()
    problems = node.stop()
    took = time.monotonic() - t0
    assert problems == []
    assert node.before.differences(hostchanges.take()) == []
    assert [p for p in pids if Path(f"/proc/{p}").exists()] == []
    assert _shim_pids(socket) == []
    assert took < 30
