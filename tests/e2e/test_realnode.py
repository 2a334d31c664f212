"""A real worker node (kubelet + containerd + runc + bridge CNI on this machine) beside the
kwok nodes: it joins and becomes Ready, runs pods from locally built images, its pods reach
the API server, and its teardown leaves the host exactly as it found it.

No real node here (not root, a package missing, the kubelet not built) is an error, not a
skip: these tests are the proof that CarbonTrack works where users run it.
"""

from __future__ import annotations

import contextlib
import os
import re
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
    from carbontrack.devcluster.imagebuild import EXPORTER, OPERATOR
    from carbontrack.devcluster.process import install_cleanup
    from carbontrack.devcluster.stack import start_stack

    state = tmp_path_factory.mktemp("realnode")
    binaries = ensure_all(root=REPO_ROOT, log=state / "build.log")
    stack = start_stack(state, binaries, real_node=True, real_node_images=(EXPORTER, OPERATOR))
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

    return str(ImageBuilder(cache_dir() / "images", Path(os.devnull)).debian().ref)


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
                     "sim-cpu-0": True, "sim-amd-0": True}
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


RELEASE, RELEASE_NS = "ct", "carbontrack"


def _helm(realstack: Any, *args: str) -> str:
    import subprocess

    from carbontrack.devcluster.binaries import bin_dir

    state = Path(realstack.cluster.kubeconfig).parent
    env = {**os.environ, "KUBECONFIG": str(realstack.cluster.kubeconfig),
           **{f"HELM_{k}_HOME": str(state / f"helm-{k.lower()}") for k in ("CACHE", "CONFIG", "DATA")}}
    r = subprocess.run([str(bin_dir() / "helm"), *args], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _ready_pods(core: Any, selector: str) -> dict[str, Any]:
    """Ready pods of the release on the real node, by component."""
    out = {}
    for p in core.list_namespaced_pod(RELEASE_NS, label_selector=selector).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        if p.spec.node_name == "real-node-0" and ready and p.metadata.deletion_timestamp is None:
            out[p.metadata.labels["app.kubernetes.io/component"]] = p
    return out


def _wait_chart_ready(core: Any, generation: dict[str, str] | None = None) -> dict[str, Any]:
    from carbontrack.devcluster.wait import wait_for

    def ready() -> dict[str, Any] | None:
        pods = _ready_pods(core, f"app.kubernetes.io/instance={RELEASE}")
        if set(pods) != {"exporter", "operator"}:
            return None
        if generation and any(pods[c].metadata.name == n for c, n in generation.items()):
            return None  # still the pods from before the upgrade
        return pods

    pods: dict[str, Any] = wait_for(
        "the chart's exporter and operator pods Ready on real-node-0", ready, 120)
    return pods


@pytest.fixture(scope="module")
def chart(realstack: Any, core: Any) -> Iterator[dict[str, Any]]:
    """`helm install` of charts/carbontrack with only the image references changed, by digest
    as a release pins them (and the operator pinned to the real node: the kwok nodes would
    take it otherwise)."""
    core.create_namespace({"metadata": {"name": RELEASE_NS, "labels": {
        "pod-security.kubernetes.io/enforce": "privileged"}}})  # the exporter's hostPaths
    node = realstack.real_node
    sets = []
    for c in ("exporter", "operator"):
        repo = node.images[c].rsplit(":", 1)[0]
        sets += ["--set", f"{c}.image.repository={repo}", "--set", f"{c}.image.digest={node.digests[c]}"]
    _helm(realstack, "install", RELEASE, str(REPO_ROOT / "charts" / "carbontrack"), "-n",
          RELEASE_NS, *sets, "--set-json",
          'operator.nodeSelector={"carbontrack.io/node-kind":"real"}')
    yield _wait_chart_ready(core)


def test_chart_exporter_and_operator_run_ready_on_the_real_node(
    realstack: Any, chart: dict[str, Any]
) -> None:
    exporter, operator = chart["exporter"], chart["operator"]
    node = realstack.real_node
    c = exporter.spec.containers[0]
    # referenced by the digest containerd recorded at import (image.digest), and running
    assert c.image == f"{node.images['exporter'].rsplit(':', 1)[0]}@{node.digests['exporter']}"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", node.digests["exporter"])
    assert not exporter.spec.host_pid and not exporter.spec.host_network  # false is omitted
    assert not c.security_context.privileged
    assert c.security_context.read_only_root_filesystem is True
    assert c.security_context.capabilities.drop == ["ALL"]
    sys_mount = next(m for m in c.volume_mounts if m.mount_path == "/host/sys")
    assert sys_mount.read_only is True
    o = operator.spec.containers[0]
    assert o.image == f"{node.images['operator'].rsplit(':', 1)[0]}@{node.digests['operator']}"
    assert operator.spec.security_context.run_as_non_root is True
    assert [s.restart_count for s in operator.status.container_statuses] == [0]
    assert [s.restart_count for s in exporter.status.container_statuses] == [0]


def _metrics(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _sum(m: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **want: str) -> float:
    return sum(v for (n, labels), v in m.items()
               if n == name and all((k, val) in labels for k, val in want.items()))


BURN_THREADS, BURN_SECONDS, TAIL_SECONDS = 2, 8, 7


def test_cpu_burning_job_is_measured_and_annotated(
    realstack: Any, core: Any, chart: dict[str, Any]
) -> None:
    """A Job burning BURN_THREADS cores for BURN_SECONDS on the real node: its series carry
    its labels; its CPU energy is what the estimate model gives for the CPU time its cgroup
    measured; containers + unallocated = node in every exporter interval; the chart's
    operator annotates it with CO2e."""
    from kubernetes import client

    from carbontrack.devcluster.kube import api_client
    from carbontrack.devcluster.podtargets import annotated_targets
    from carbontrack.devcluster.wait import wait_for
    from carbontrack.sources.estimate import CpuEstimateSource

    prom = realstack.prometheus
    old = {c: p.metadata.name for c, p in chart.items()}
    # the exporter needs a grid zone for CO2e, the operator the harness's Prometheus
    _helm(realstack, "upgrade", RELEASE, str(REPO_ROOT / "charts" / "carbontrack"), "-n",
          RELEASE_NS, "--reuse-values", "--set", "exporter.provider=aws", "--set",
          "exporter.region=eu-west-1", "--set", f"operator.prometheusUrl={prom.url}",
          "--set", "operator.scrapeIntervalSeconds=1")
    pods = _wait_chart_ready(core, old)
    exporter_url = f"http://{pods['exporter'].status.pod_ip}:9875/metrics"
    # the real exporter pod is scraped as the chart's prometheus.io annotations ask
    prom.set_targets("carbontrack-exporter", {
        **{e.url.removeprefix("http://"): {} for e in realstack.exporters.values()},
        **annotated_targets(core.list_pod_for_all_namespaces().items, {"real-node-0"})})
    ns = "burn"
    core.create_namespace({"metadata": {"name": ns}})
    script = (f"for i in $(seq {BURN_THREADS}); do timeout {BURN_SECONDS} sh -c "
              f"'while :; do :; done' & done; wait; sleep {TAIL_SECONDS}")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "burn"}, "spec": {
        "backoffLimit": 0, "template": {"spec": {**_pod("x", ["sh", "-c", script],
                                                         _debian_ref())["spec"]}}}}
    with api_client(realstack.cluster.kubeconfig) as api:
        batch: Any = client.BatchV1Api(api)
        batch.create_namespaced_job(ns, job)
        pod = wait_for("the burn pod running", lambda: next(
            (p for p in core.list_namespaced_pod(ns, label_selector="job-name=burn").items
             if p.status.container_statuses and p.status.container_statuses[0].state.running),
            None), 60)
        cid = pod.status.container_statuses[0].container_id.removeprefix("containerd://")
        usage = Path("/sys/fs/cgroup/cpuacct/kubepods/besteffort/"
                     f"pod{pod.metadata.uid}/{cid}/cpuacct.usage")
        cpu_s = 0.0
        deltas: list[dict[str, float]] = []
        before = _metrics(exporter_url)
        while _phase(core, ns, pod.metadata.name) not in ("Succeeded", "Failed"):
            with contextlib.suppress(OSError):  # the last reading before the cgroup goes
                cpu_s = int(usage.read_text()) / 1e9
            now = _metrics(exporter_url)
            if now != before:
                deltas.append({k: _sum(now, n, component="cpu") - _sum(before, n, component="cpu")
                               for k, n in (("node", "carbontrack_node_energy_joules_total"),
                                            ("containers", "carbontrack_container_energy_joules_total"),
                                            ("unallocated",
                                             "carbontrack_unallocated_energy_joules_total"))})
                before = now
            time.sleep(0.5)
        assert _phase(core, ns, pod.metadata.name) == "Succeeded"
        assert cpu_s > 0.5 * BURN_THREADS * BURN_SECONDS * 0.5  # it did burn (2 shared cores)
        # conservation on real data, interval by interval
        assert len(deltas) >= 2
        for d in deltas:
            assert d["containers"] + d["unallocated"] == pytest.approx(d["node"], rel=1e-9, abs=1e-9)
        m = _metrics(exporter_url)
        series = [dict(labels) for (n, labels) in m
                  if n == "carbontrack_container_energy_joules_total"
                  and ("pod", pod.metadata.name) in labels and ("component", "cpu") in labels]
        # the sandbox's pause process has a cgroup of its own: the exporter names it POD
        assert sorted(({k: s[k] for k in ("namespace", "pod", "container", "owner_kind",
                                          "owner_name")} for s in series),
                      key=lambda s: s["container"]) == [
            {"namespace": ns, "pod": pod.metadata.name, "container": c, "owner_kind": "Job",
             "owner_name": "burn"} for c in ("POD", "main")]
        energy = _sum(m, "carbontrack_container_energy_joules_total", pod=pod.metadata.name,
                      container="main", component="cpu")
        # BestEffort: no idle share; each busy CPU second costs between the model's idle and
        # full-load watts per vCPU (the node's utilisation in that interval decides where)
        model = CpuEstimateSource(Path("/proc")).power_model
        assert cpu_s * model.min_watts_per_vcpu * 0.95 <= energy
        assert energy <= cpu_s * model.max_watts_per_vcpu * 1.05
        annotations = wait_for("the operator's CO2e annotation on Job burn", lambda: (
            a := batch.read_namespaced_job("burn", ns).metadata.annotations or {})
            .get("carbontrack.io/co2e-grams") and a, 120)
        assert float(annotations["carbontrack.io/co2e-grams"]) > 0


def test_static_pod_is_attributed_with_its_mirror_pods_labels(
    realstack: Any, core: Any, chart: dict[str, Any]
) -> None:
    """A pod from the kubelet's manifest directory: its cgroups carry the static pod's
    32-hex-digit UID, the API shows a mirror pod; the exporter charges its container with the
    mirror's labels (owner: the Node)."""
    import yaml

    from carbontrack.devcluster.wait import wait_for

    manifest = realstack.real_node.setup.static_pods / "static-burn.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "static-burn", "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": _debian_ref(),
                                 "imagePullPolicy": "Never",
                                 "command": ["sh", "-c", "while :; do :; done"]}]}}))
    mirror = "static-burn-real-node-0"
    try:
        wait_for("the static pod's mirror Running", lambda: (p := next(
            (p for p in core.list_namespaced_pod("default").items
             if p.metadata.name == mirror), None)) is not None and p.status.phase == "Running",
            60)
        pod = core.read_namespaced_pod(mirror, "default")
        static_uid = pod.metadata.annotations["kubernetes.io/config.mirror"]
        assert len(static_uid) == 32 and "-" not in static_uid
        exporter = _ready_pods(core, f"app.kubernetes.io/instance={RELEASE}")["exporter"]
        url = f"http://{exporter.status.pod_ip}:9875/metrics"

        def charged() -> dict[str, str] | None:
            for (name, labels), value in _metrics(url).items():
                lab = dict(labels)
                if name == "carbontrack_container_energy_joules_total" and value > 0 \
                        and lab.get("pod") == mirror and lab.get("container") == "main" \
                        and lab.get("component") == "cpu":
                    return lab
            return None

        labels = wait_for("the static pod's container charged", charged, 30)
        assert {k: labels[k] for k in ("namespace", "pod_uid", "owner_kind", "owner_name")} == {
            "namespace": "default", "pod_uid": static_uid, "owner_kind": "Node",
            "owner_name": "real-node-0"}
    finally:
        manifest.unlink()
        wait_for("the static pod gone", lambda: mirror not in {
            p.metadata.name for p in core.list_namespaced_pod("default").items}, 60)


def _cgroup_dir(controller: str, pod: Any) -> Path:
    cid = str(pod.status.container_statuses[0].container_id).removeprefix("containerd://")
    qos = str(pod.status.qos_class).lower()
    base = Path("/sys/fs/cgroup") / controller / "kubepods"
    return (base if qos == "guaranteed" else base / qos) / f"pod{pod.metadata.uid}" / cid


def _working_set(memory_cgroup: Path) -> int:
    """What the kubelet calls the working set: usage minus inactive page cache."""
    stat = dict(line.split() for line in (memory_cgroup / "memory.stat").read_text().splitlines())
    return int((memory_cgroup / "memory.usage_in_bytes").read_text()) - int(
        stat["total_inactive_file"])


def chart_pods(core: Any) -> dict[str, Any]:
    return _ready_pods(core, f"app.kubernetes.io/instance={RELEASE}")


def test_exporter_restart_keeps_its_ledger_and_stays_small(
    realstack: Any, core: Any, chart: dict[str, Any]
) -> None:
    """30 pods on the real node; the exporter container's working set and CPU measured from
    its own cgroup; then its pod is deleted and the DaemonSet's new pod continues every
    counter from the ledger in its hostPath state dir instead of starting from zero."""
    from carbontrack.devcluster.wait import wait_for

    ns = "steady"
    core.create_namespace({"metadata": {"name": ns}})
    for i in range(30):
        spec = _pod(f"sleep-{i}", ["sleep", "infinity"], _debian_ref())
        spec["spec"]["terminationGracePeriodSeconds"] = 0
        core.create_namespaced_pod(ns, spec)
    wait_for("30 pods Running on the real node", lambda: sum(
        p.status.phase == "Running" for p in core.list_namespaced_pod(ns).items) == 30, 180)
    old = chart_pods(core)["exporter"]
    url = f"http://{old.status.pod_ip}:9875/metrics"
    wait_for("the exporter to charge all 30 pods", lambda: len({
        dict(labels)["pod"] for (n, labels) in _metrics(url)
        if n == "carbontrack_container_energy_joules_total"
        and dict(labels).get("namespace") == ns}) == 30, 30)
    cpu = _cgroup_dir("cpuacct", old) / "cpuacct.usage"
    t0, c0 = time.monotonic(), int(cpu.read_text())
    time.sleep(30)  # six collection intervals at the chart's default 5 s
    cpu_share = (int(cpu.read_text()) - c0) / 1e9 / (time.monotonic() - t0)
    working_set = _working_set(_cgroup_dir("memory", old))
    operator_ws = _working_set(_cgroup_dir("memory", chart_pods(core)["operator"]))
    print(f"exporter at 30 pods: working set {working_set / 2**20:.1f} MiB, "
          f"CPU {cpu_share * 100:.2f} % of a core; operator working set "
          f"{operator_ws / 2**20:.1f} MiB")
    assert working_set < 60 * 2**20  # the goals
    assert cpu_share < 0.005

    before = _metrics(url)
    core.delete_namespaced_pod(old.metadata.name, RELEASE_NS)
    new = wait_for("a new exporter pod Ready", lambda: (p := _ready_pods(
        core, f"app.kubernetes.io/instance={RELEASE}").get("exporter")) is not None
        and p.metadata.name != old.metadata.name and p, 90)
    new_url = f"http://{new.status.pod_ip}:9875/metrics"
    def first_cycle() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        m = _metrics(new_url)
        return m if _sum(m, "carbontrack_node_energy_joules_total") > 0 else None

    after = wait_for("the new exporter's first cycle", first_cycle, 30)
    for name in ("carbontrack_node_energy_joules_total",
                 "carbontrack_unallocated_energy_joules_total"):
        assert _sum(after, name) >= _sum(before, name) > 0, name
    steady = {k: v for k, v in before.items() if k[0] == "carbontrack_container_energy_joules_total"
              and ("namespace", ns) in k[1]}
    assert steady and all(after.get(k, 0.0) >= v for k, v in steady.items())
    core.delete_namespace(ns)
    wait_for("the 30 pods gone", lambda: not core.list_namespaced_pod(ns).items, 120)


def test_operator_runs_under_restricted_pod_security(realstack: Any, core: Any) -> None:
    """A second release, operator only, in a namespace that enforces the restricted Pod
    Security Standard: admitted, Ready on the real node with the chart's ServiceAccount."""
    from carbontrack.devcluster.wait import wait_for

    ns, release = "ct-restricted", "ctr"
    core.create_namespace({"metadata": {"name": ns, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})
    repo, tag = realstack.real_node.images["operator"].rsplit(":", 1)
    _helm(realstack, "install", release, str(REPO_ROOT / "charts" / "carbontrack"), "-n", ns,
          "--set", "exporter.enabled=false", "--set", f"operator.image.repository={repo}",
          "--set", f"operator.image.tag={tag}", "--set-json",
          'operator.nodeSelector={"carbontrack.io/node-kind":"real"}')
    try:
        def ready() -> Any:
            for p in core.list_namespaced_pod(ns).items:
                if p.spec.node_name == "real-node-0" and any(
                        c.type == "Ready" and c.status == "True"
                        for c in p.status.conditions or []):
                    return p
            return None

        pod = wait_for("the operator Ready in the restricted namespace", ready, 120)
        assert pod.spec.service_account_name == f"{release}-carbontrack-operator"
        assert core.read_namespace(ns).metadata.labels[
            "pod-security.kubernetes.io/enforce"] == "restricted"
    finally:
        _helm(realstack, "uninstall", release, "-n", ns, "--wait")
        core.delete_namespace(ns)


SCRAPER = r"""
import sys, time, urllib.request
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
            body = r.read()
        print(f"{time.time():.3f} ok {b'carbontrack_node_energy_joules_total' in body}", flush=True)
    except Exception as err:
        print(f"{time.time():.3f} fail {type(err).__name__}", flush=True)
    time.sleep(0.5)
"""


def _scrapes(core: Any, ns: str, name: str) -> list[tuple[float, bool]]:
    """(time, succeeded with the exporter's series) of each attempt the pod logged."""
    out = []
    for line in core.read_namespaced_pod_log(name, ns).splitlines():
        t, result, *rest = line.split()
        out.append((float(t), result == "ok" and rest == ["True"]))
    return out


def test_network_policy_enforced_by_kube_router(realstack: Any, core: Any, chart: Any,
                                                 wait_for: Any) -> None:
    """The chart's NetworkPolicy on the real node, enforced by kube-router's policy
    controller (policyenforcer.py): a pod in another namespace that scraped the exporter
    while nothing enforced the policy is refused once the enforcer runs, while a pod
    labelled like Prometheus in the allowed namespace (the chart's default selectors)
    keeps scraping, and so does the host (the node's own address is always allowed, as the
    kubelet's probes need). The enforcer stays up for the teardown test after this one,
    which checks that its chains and ipsets are removed with the node."""
    import shutil
    import subprocess

    from kubernetes.client.exceptions import ApiException

    from carbontrack.devcluster import hostchanges
    from carbontrack.devcluster.policyenforcer import start_policy_enforcer

    if shutil.which("ipset") is None:
        pytest.fail("ipset is missing: scripts/setup.sh installs it")
    exporter = next(iter(_ready_pods(core, "app.kubernetes.io/component=exporter").values()))
    url = f"http://{exporter.status.pod_ip}:9875/metrics"
    namespaces = {"monitoring": {"app.kubernetes.io/name": "prometheus"}, "rn-np-outsider": {}}
    for ns, labels in namespaces.items():
        with contextlib.suppress(ApiException):  # 409: it exists
            core.create_namespace({"metadata": {"name": ns}})
        pod = _pod("scraper", ["python3.11", "-c", SCRAPER, url], _debian_ref())
        pod["metadata"]["labels"] = labels
        core.create_namespaced_pod(ns, pod)
    try:
        # without an enforcer the policy is stored and ignored: both reach the exporter
        for ns in namespaces:
            wait_for(f"{ns}/scraper scraping the exporter",
                     lambda ns=ns: _phase(core, ns, "scraper") == "Running"
                     and any(ok for _, ok in _scrapes(core, ns, "scraper")), 90)
        t_start = time.time()
        start_policy_enforcer(realstack.real_node, realstack.cluster.kubeconfig)

        def refused_since() -> float | None:
            tail = [(t, ok) for t, ok in _scrapes(core, "rn-np-outsider", "scraper") if t > t_start]
            last = tail[-6:]
            return last[0][0] if len(last) == 6 and not any(ok for _, ok in last) else None

        t_enforced = wait_for("the outsider refused", refused_since, 90)
        time.sleep(3)
        late = [ok for t, ok in _scrapes(core, "rn-np-outsider", "scraper") if t >= t_enforced]
        assert late and not any(late)  # refused on every attempt from then on
        allowed = [ok for t, ok in _scrapes(core, "monitoring", "scraper") if t >= t_enforced]
        assert len(allowed) >= 5 and all(allowed)
        # what the teardown test after this one must remove: the exporter's pod firewall and
        # the policy's chains and source ipsets
        saved = hostchanges.iptables_save("ip")
        assert ":KUBE-ROUTER-FORWARD" in saved and ":KUBE-POD-FW-" in saved and ":KUBE-NWPLCY-" in saved
        assert any(n.startswith("KUBE-SRC-") for n in hostchanges.ipset_names())
        # the host (the harness's Prometheus scrapes from here) is still allowed
        assert b"carbontrack_node_energy_joules_total" in subprocess.run(
            ["python3", "-c", f"import urllib.request,sys; sys.stdout.buffer.write("
             f"urllib.request.urlopen({url!r}, timeout=5).read())"],
            capture_output=True, timeout=30).stdout
    finally:
        for ns in namespaces:
            core.delete_namespace(ns)


def test_teardown_restores_the_host(realstack: Any) -> None:
    """Last in this module: stops the real node and compares the host with the snapshot
    taken before it started (mounts and their propagation, iptables, cgroups, sysctls,
    network devices, directories) and checks that no process of it is left."""
    from carbontrack.devcluster import hostchanges
    from carbontrack.devcluster.recovery import shim_pids

    node = realstack.real_node
    pids = [p.pid for p in node.processes]
    socket = node.containerd.socket
    t0 = time.monotonic()
    problems = node.stop()
    took = time.monotonic() - t0
    assert problems == []
    assert node.before.differences(hostchanges.take()) == []
    assert [p for p in pids if Path(f"/proc/{p}").exists()] == []
    assert shim_pids(str(socket)) == []
    assert not node.record.exists()
    assert took < 30


KILLED_HARNESS = """
import sys, time
from pathlib import Path
from carbontrack.devcluster.binaries import cache_dir
from carbontrack.devcluster.imagebuild import ImageBuilder
from carbontrack.devcluster.pki import Pki
from carbontrack.devcluster.process import Supervisor
from carbontrack.devcluster.realnode import node_binary, start_real_node
state, pki, kubeconfig, port, address = sys.argv[1:6]
images = ImageBuilder(cache_dir() / "images", Path(state) / "build.log")
node = start_real_node(Path(state), kubelet=node_binary("kubelet"), pki=Pki(Path(pki)),
                       admin_kubeconfig=Path(kubeconfig), apiserver_port=int(port),
                       address=address, supervisor=Supervisor(Path(state) / "logs"),
                       pause=images.pause(), name="real-node-killed")
print("ready", flush=True)
time.sleep(600)
"""


def test_a_killed_harness_is_undone_by_recovery(realstack: Any, tmp_path: Path) -> None:
    """After the teardown test: a harness process starts a real node and is SIGKILLed.
    kubelet and containerd outlive it (sessions of their own) and the host stays changed;
    recovery (what the next start does first) stops them and restores the host."""
    import signal
    import subprocess
    import sys

    from carbontrack.devcluster import hostchanges
    from carbontrack.devcluster.recovery import from_json, record_path, recover

    assert realstack.real_node.stopped  # the teardown test released the one-per-machine lock
    before = hostchanges.take()
    c = realstack.cluster
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_HARNESS, str(tmp_path), str(c.pki.dir), str(c.kubeconfig),
         str(c.ports.apiserver), realstack.real_node.address],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "ready\n", (tmp_path / "logs").glob("*.log")
    pids = from_json(record_path().read_text()).pids
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert all(Path(f"/proc/{p}").exists() for p in pids.values())  # they outlived it
    assert before.differences(hostchanges.take()) != []
    assert recover(record_path()) == []
    assert before.differences(hostchanges.take()) == []
    assert not record_path().exists()
    assert not any(Path(f"/proc/{p}/cmdline").exists() and Path(f"/proc/{p}/cmdline").read_bytes()
                   for p in pids.values())
