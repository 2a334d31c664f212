"""The real `carbontrack exporter` process against a fake node tree, scraped over HTTP.

No cluster: ``--no-kube``. The test owns the node's counters (powercap, cgroups, /proc/stat).
Exact totals come from runs with a long ``--interval``: the process takes its baseline at
start-up and accounts the one interval when SIGTERM makes it collect, save and exit, so the
split does not depend on when a background cycle happens to run. How long that one interval
lasted (and so the node's busy fraction) is not assumed: the expected split is derived from
the busy fraction read back from the exporter's own counters. A second part runs a short
interval with churn and checks conservation on every scrape.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbontrack.devcluster.exporter_process import ExporterProcess
from carbontrack.intensity.catalogue import Catalogue
from carbontrack.sim.cgroups import FakeCgroupTree
from carbontrack.sim.powercap import FakePowercap
from carbontrack.sim.procfs import FakeProcStat, write_meminfo

GIB = 1 << 30
A = "0a0a0a0a-1111-2222-3333-444444444444"
B = "0b0b0b0b-1111-2222-3333-444444444444"
C = "0c0c0c0c-1111-2222-3333-444444444444"


def Exporter(root: Path, *args: str) -> ExporterProcess:
    return ExporterProcess(root, *args, pue=1.25)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Path, FakePowercap, FakeCgroupTree, FakeProcStat]]:
    pc = FakePowercap(tmp_path / "sys")
    pc.add_package(0)
    pc.add_package(1, mmio_duplicate=True)
    stat = FakeProcStat(tmp_path / "proc", 8)
    write_meminfo(tmp_path / "proc", 64 * GIB)
    tree = FakeCgroupTree(tmp_path / "sys", version=2, driver="systemd", runtime="containerd",
                          procfs_root=tmp_path / "proc")
    tree.add_pod(A, "guaranteed", {"train": (4.0, 8 * GIB)})
    tree.add_pod(B, "burstable", {"web": (1.0, 4 * GIB)})
    yield tmp_path, pc, tree, stat
    if os.environ.get("CARBONTRACK_KEEP_LOGS"):
        print((tmp_path / "exporter.log").read_text())


def totals(m: dict[str, list[tuple[dict[str, str], float]]], name: str,
           by: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, v in m.get(name, []):
        out[labels[by]] = out.get(labels[by], 0.0) + v
    return out


def assert_conserved(m: dict[str, list[tuple[dict[str, str], float]]]) -> None:
    node = totals(m, "carbontrack_node_energy_joules_total", "component")
    ctr = totals(m, "carbontrack_container_energy_joules_total", "component")
    un = totals(m, "carbontrack_unallocated_energy_joules_total", "component")
    for comp, j in node.items():
        assert ctr.get(comp, 0.0) + un.get(comp, 0.0) == pytest.approx(j, rel=1e-9, abs=1e-9)


def container_cpu(m: dict[str, list[tuple[dict[str, str], float]]], tree: FakeCgroupTree,
                  uid: str, name: str, metric: str = "carbontrack_container_energy_joules_total") -> float:
    short = tree.pods[uid].containers[name].id[:12]
    vals = [v for labels, v in m[metric]
            if labels["pod_uid"] == uid and labels["container"] == short
            and labels["component"] == "cpu"]
    assert len(vals) == 1
    return vals[0]


def train_cpu(m: dict[str, list[tuple[dict[str, str], float]]], tree: FakeCgroupTree,
              metric: str = "carbontrack_container_energy_joules_total") -> float:
    return container_cpu(m, tree, A, "train", metric)


def test_exact_totals_restart_durability_and_churn(node: tuple[Path, FakePowercap,
                                                                 FakeCgroupTree, FakeProcStat]
                                                   ) -> None:
    root, pc, tree, _stat = node
    long_run = ("--interval", "3600", "--retention", "3600")

    ex = Exporter(root, *long_run)
    pc.advance(pc.package_zone(0), 1000.0)
    pc.advance(pc.package_zone(1), 600.0)
    tree.advance_cpu(A, "train", 20.0)
    tree.advance_cpu(B, "web", 10.0)
    # 40 busy CPU-seconds in all (train 20, web 10, system.slice 10) on 8 CPUs; how much of
    # the node was idle depends on how long the exporter's interval lasted, which the test
    # does not assume: the split below is checked for the busy fraction the exporter used
    tree.advance_system(10.0)
    assert ex.stop() == 0
    # restart: the persisted totals are exported from the first scrape on
    ex = Exporter(root, *long_run)
    m = ex.scrape()
    node_cpu = totals(m, "carbontrack_node_energy_joules_total", "component")["cpu"]
    assert node_cpu == 1600.0  # package-1 counted once although intel-rapl-mmio:1 mirrors it
    assert_conserved(m)
    first = train_cpu(m, tree)
    # train: 20 of 40 busy CPU-s (active share) and 4 of 8 reserved cores (idle share): half
    # the node's energy whatever the busy fraction
    assert first == pytest.approx(1600.0 * 20 / 40, rel=1e-12)
    # the busy fraction f, read back from the exporter's own split: web (10 of 40 busy CPU-s,
    # 1 of 8 reserved cores) got 1600 J x (f x 10/40 + (1 - f) x 1/8)
    web = container_cpu(m, tree, B, "web")
    f = (web / 1600.0 - 1 / 8) / (10 / 40 - 1 / 8)
    assert -1e-9 <= f <= 1.0 + 1e-9  # a fraction: active = E x min(1, busy / (interval x CPUs))
    # unallocated: system.slice's 10 of 40 busy CPU-s of the active part, and the idle part of
    # the 3 unreserved cores
    assert totals(m, "carbontrack_unallocated_energy_joules_total", "component")["cpu"] == pytest.approx(
        1600.0 * (f * 10 / 40 + (1 - f) * 3 / 8), rel=1e-9)
    g = Catalogue.load().get("DE").g_per_kwh
    assert train_cpu(m, tree, "carbontrack_container_co2e_grams_total") == pytest.approx(
        first / 3.6e6 * g * 1.25, rel=1e-9)
    assert {labels["source"]: v for labels, v in m["carbontrack_source_up"]}["rapl"] == 1.0

    # second run: C appears and finishes, B finishes; counters continue from the saved values
    tree.add_pod(C, "besteffort", {"batch": (0.0, 0)})
    pc.advance(pc.package_zone(0), 500.0)
    pc.advance(pc.package_zone(1), 100.0)
    tree.advance_cpu(A, "train", 25.0)
    tree.advance_cpu(C, "batch", 25.0)  # C started after the baseline: all of it counts
    assert ex.stop() == 0
    tree.remove_pod(B)
    ex = Exporter(root, *long_run)
    m = ex.scrape()
    assert totals(m, "carbontrack_node_energy_joules_total", "component")["cpu"] == 2200.0
    assert_conserved(m)
    assert train_cpu(m, tree) == first + 600.0 * 25 / 50  # continued from the saved value
    pods_seen = {labels["pod_uid"] for labels, _ in m["carbontrack_container_energy_joules_total"]}
    assert pods_seen == {A, B, C}  # B finished but stays exported within the retention window
    assert ex.stop() == 0

    # with a zero retention, the next cycles drop the finished pod's series
    ex = Exporter(root, "--interval", "0.2", "--retention", "0")
    deadline = time.monotonic() + 30
    while True:
        m = ex.scrape()
        pods_seen = {labels["pod_uid"]
                     for labels, _ in m["carbontrack_container_energy_joules_total"]}
        if B not in pods_seen or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert pods_seen == {A, C}
    assert_conserved_after_drop = totals(m, "carbontrack_node_energy_joules_total", "component")
    assert assert_conserved_after_drop["cpu"] == 2200.0  # node totals never drop
    assert ex.stop() == 0


def test_live_cycles_conserve_on_every_scrape(node: tuple[Path, FakePowercap,
                                                          FakeCgroupTree, FakeProcStat]) -> None:
    root, pc, tree, _stat = node
    ex = Exporter(root, "--interval", "0.05")
    try:
        last_node = 0.0
        for i in range(30):
            pc.advance(pc.package_zone(0), 10.0 + i)
            pc.advance(pc.package_zone(1), 5.0)
            tree.advance_cpu(A, "train", 0.2)
            if i == 10:
                tree.add_pod(C, "besteffort", {"batch": (0.0, 0)})
            if i > 10:
                tree.advance_cpu(C, "batch", 0.1)
            if i == 20:
                tree.remove_pod(B)
            time.sleep(0.02)
            m = ex.scrape()
            assert_conserved(m)
            n = totals(m, "carbontrack_node_energy_joules_total", "component").get("cpu", 0.0)
            assert n >= last_node  # a counter
            last_node = n
        assert last_node > 0
    finally:
        assert ex.stop() == 0


@pytest.mark.e2e
def test_pod_watcher_against_a_real_apiserver(kubeconfig: Any, core_v1: Any, namespace: str,
                                              wait_for: Any) -> None:
    """The stdlib PodWatcher, configured from the cluster's kubeconfig (YAML, client
    certificate), lists and watches only this node's pods (fieldSelector spec.nodeName),
    builds owner labels from a real API server's objects, keys a mirror pod by its static
    pod's UID, resumes a watch from its resourceVersion and sees deletions."""
    from carbontrack.exporter.kubeapi import ApiClient
    from carbontrack.exporter.pods import PodCache
    from carbontrack.exporter.podwatch import Backoff, PodWatcher
    from carbontrack.exporter.state import Owner

    from carbontrack.core.apiconfig import from_kubeconfig

    node = f"watch-{namespace[-8:]}"  # no such Node: the pods stay Pending, which is enough

    def pod(name: str, node_name: str, **annotations: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "annotations": annotations,
                             "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                                  "name": "train", "uid": "job-uid-1",
                                                  "controller": True}]},
                "spec": {"nodeName": node_name, "containers": [
                    {"name": "main", "image": "busybox",
                     "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}]}}

    mine = core_v1.create_namespaced_pod(namespace, pod("mine", node))
    core_v1.create_namespaced_pod(namespace, pod("other", node + "-x"))
    cache = PodCache()
    # a short server-side timeout: the watch ends and resumes during the test
    watcher = PodWatcher(ApiClient(from_kubeconfig(Path(kubeconfig))), node, cache,
                         backoff=Backoff(initial_s=0.5, max_s=2.0), watch_timeout_s=3)
    watcher.start()
    try:
        meta = wait_for("the watcher to list the pod", lambda: cache.get(mine.metadata.uid), 60)
        assert meta.owner == Owner(namespace, "mine", "Job", "train", "job-uid-1")
        assert meta.requests == {"main": (0.25, 64 << 20)}
        assert cache.uid_for(namespace, "other") is None  # another node's pod is not listed
        wait_for("the watch to end and resume", lambda: watcher.watches >= 2, 60)
        # a pod created later arrives through the resumed watch
        late = core_v1.create_namespaced_pod(namespace, pod("late", node))
        wait_for("the watch to deliver the new pod", lambda: cache.get(late.metadata.uid), 60)
        assert cache.uid_for(namespace, "late") == late.metadata.uid
        static_uid = "6f1c2b9e0d8a4c7f9e3b5a1d2c4e6f80"
        mirror = core_v1.create_namespaced_pod(
            namespace, pod("static-x", node, **{"kubernetes.io/config.mirror": static_uid}))
        wait_for("the mirror pod", lambda: cache.get(static_uid), 60)
        assert cache.get(mirror.metadata.uid) is None
        core_v1.delete_namespaced_pod("late", namespace, grace_period_seconds=0)
        wait_for("the deletion", lambda: cache.get(late.metadata.uid).released, 60)
        assert watcher.healthy and watcher.lists == 1
    finally:
        watcher.stop()


def test_exporter_process_watches_pods_without_the_kubernetes_client(
        node: tuple[Path, FakePowercap, FakeCgroupTree, FakeProcStat]) -> None:
    """The exporter in kube mode (--kubeconfig) against a real HTTP list/watch server: pod
    labels arrive, a static pod is labelled through its mirror pod, and
    source_up{source="pod-watch"} follows the API's availability."""
    import json
    import subprocess
    import sys

    from carbontrack.devcluster.exporter_process import SERVING, parse
    from carbontrack.sim.fakeapiserver import FakeApiServer

    root, pc, tree, _stat = node
    static = "6f1c2b9e0d8a4c7f9e3b5a1d2c4e6f80"
    tree.add_pod(static, "burstable", {"etcd": (0.1, 0)})

    def api_pod(cgroup_uid: str, name: str, **md: Any) -> dict[str, Any]:
        ctrs = tree.pods[cgroup_uid].containers.values()
        return {"metadata": {"uid": cgroup_uid, "namespace": "ml", "name": name, **md},
                "spec": {"nodeName": "node-1", "containers": [
                    {"name": c.name} for c in ctrs if c.name != "POD"]},
                "status": {"phase": "Running", "containerStatuses": [
                    {"name": c.name, "containerID": f"containerd://{c.id}"}
                    for c in ctrs if c.name != "POD"]}}

    with FakeApiServer() as api:
        api.add(api_pod(A, "train-x"))
        api.add(api_pod(static, "etcd-node-1", uid="0b7f8c1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e",
                        annotations={"kubernetes.io/config.mirror": static}))
        cfg = root / "kubeconfig.json"
        cfg.write_text(json.dumps({
            "current-context": "c",
            "contexts": [{"name": "c", "context": {"cluster": "k"}}],
            "clusters": [{"name": "k", "cluster": {"server": api.url}}]}))
        log = (root / "exporter.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "carbontrack", "exporter", "--node-name", "node-1",
             "--sysfs", str(root / "sys"), "--procfs", str(root / "proc"),
             "--state-dir", str(root / "state"), "--listen", "127.0.0.1:0",
             "--kubeconfig", str(cfg), "--zone", "DE", "--interval", "0.2"],
            stderr=subprocess.PIPE, stdout=log)
        try:
            assert proc.stderr is not None
            port = None
            for raw in proc.stderr:
                log.write(raw)
                m = SERVING.search(raw)
                if m:
                    port = int(m.group(2))  # SERVING: (scheme, port)
                    break
            assert port is not None, "exporter exited before serving"

            def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
                import urllib.request

                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    return parse(r.read().decode())

            def pods_labelled() -> set[tuple[str, str, str]]:
                return {(lb["pod_uid"], lb["pod"], lb["container"]) for lb, _ in
                        scrape().get("carbontrack_container_energy_joules_total", [])}

            def watch_up() -> float | None:
                return next((v for lb, v in scrape().get("carbontrack_source_up", [])
                             if lb["source"] == "pod-watch"), None)

            for _ in range(20):
                tree.advance_cpu(A, "train", 1.0)
                tree.advance_cpu(static, "etcd", 0.5)
                tree.advance_system(0.5)
                pc.advance(pc.package_zone(0), 100.0)
                if {(A, "train-x", "train"), (static, "etcd-node-1", "etcd")} <= pods_labelled():
                    break
                time.sleep(0.3)
            assert {(A, "train-x", "train"), (static, "etcd-node-1", "etcd")} <= pods_labelled()
            assert watch_up() == 1.0
            api.fail_next(10_000, 503)  # the API server answers 503 from now on
            api.close_watches()
            deadline = time.monotonic() + 30
            while watch_up() != 0.0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert watch_up() == 0.0
            api.clear_failures()
            deadline = time.monotonic() + 60  # the backoff's first delays are 0.5-4 s
            while watch_up() != 1.0 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert watch_up() == 1.0
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0
            log.close()
