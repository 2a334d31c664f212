"""The real `carbontrack exporter` process against a fake node tree, scraped over HTTP.

No cluster: ``--no-kube``. The test owns the node's counters (powercap, cgroups, /proc/stat).
Exact totals come from runs with a long ``--interval``: the process takes its baseline at
start-up and accounts the one interval when SIGTERM makes it collect, save and exit, so the
split does not depend on when a background cycle happens to run. A second part runs a short
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


def train_cpu(m: dict[str, list[tuple[dict[str, str], float]]], tree: FakeCgroupTree,
              metric: str = "carbontrack_container_energy_joules_total") -> float:
    short = tree.pods[A].containers["train"].id[:12]
    vals = [v for labels, v in m[metric]
            if labels["pod_uid"] == A and labels["container"] == short
            and labels["component"] == "cpu"]
    assert len(vals) == 1
    return vals[0]


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
    # 40 busy CPU-seconds: more than 8 CPUs can idle through in the few seconds this run
    # lasts, so the busy fraction clamps to 1 and all energy is active, split by CPU time
    tree.advance_system(10.0)
    assert ex.stop() == 0
    # restart: the persisted totals are exported from the first scrape on
    ex = Exporter(root, *long_run)
    m = ex.scrape()
    node_cpu = totals(m, "carbontrack_node_energy_joules_total", "component")["cpu"]
    assert node_cpu == 1600.0  # package-1 counted once although intel-rapl-mmio:1 mirrors it
    assert_conserved(m)
    first = train_cpu(m, tree)
    assert first == 1600.0 * 20 / 40
    assert totals(m, "carbontrack_unallocated_energy_joules_total", "component")["cpu"] == 400.0
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
def test_pod_watcher_against_a_real_apiserver(api_client: Any, core_v1: Any, namespace: str,
                                              wait_for: Any) -> None:
    """PodWatcher lists and watches only this node's pods (fieldSelector spec.nodeName) and
    builds owner labels from a real API server's objects."""
    from carbontrack.exporter.pods import PodCache, PodWatcher
    from carbontrack.exporter.state import Owner
    from kubernetes import client, watch

    node = f"watch-{namespace[-8:]}"  # no such Node: the pods stay Pending, which is enough

    def pod(name: str, node_name: str, **labels: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": labels,
                             "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                                  "name": "train", "uid": "job-uid-1",
                                                  "controller": True}]},
                "spec": {"nodeName": node_name, "containers": [
                    {"name": "main", "image": "busybox",
                     "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}]}}

    mine = core_v1.create_namespaced_pod(namespace, pod("mine", node))
    core_v1.create_namespaced_pod(namespace, pod("other", node + "-x"))
    cache = PodCache()
    watcher = PodWatcher(client.CoreV1Api(api_client), node, cache, watch.Watch, retry_s=0.5)
    watcher.start()
    try:
        meta = wait_for("the watcher to list the pod", lambda: cache.get(mine.metadata.uid), 60)
        assert meta.owner == Owner(namespace, "mine", "Job", "train", "job-uid-1")
        assert meta.requests == {"main": (0.25, 64 << 20)}
        assert cache.uid_for(namespace, "other") is None  # another node's pod is not listed
        # a pod created after the list arrives through the watch
        late = core_v1.create_namespaced_pod(namespace, pod("late", node))
        wait_for("the watch to deliver the new pod", lambda: cache.get(late.metadata.uid), 60)
        assert cache.uid_for(namespace, "late") == late.metadata.uid
        assert watcher.healthy
    finally:
        watcher.stop()
