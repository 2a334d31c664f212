"""Checked-in fake node trees (tests/fixtures/exporter-node-*): the readers against files a
reviewer can open, independent of the sim writer (which must still reproduce them).

Regenerate after a deliberate change of the layouts: UPDATE_FIXTURES=1 pytest this file.
"""

from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from carbontrack.exporter.attribution import IdlePolicy
from carbontrack.exporter.cgroups import CgroupReader
from carbontrack.exporter.cpu_weight import CpuWeightMap
from carbontrack.exporter.emissions import EmissionsRates
from carbontrack.exporter.engine import Engine, EngineConfig
from carbontrack.exporter.pods import PodCache

from carbontrack.sim.cgroups import FakeCgroupTree
from carbontrack.sim.powercap import FakePowercap
from carbontrack.sim.procfs import Ticks, write_meminfo, write_proc_stat
from carbontrack.sources.rapl import RaplSource

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
GIB = 1 << 30
G = "0a0a0a0a-1111-2222-3333-444444444444"  # guaranteed
U = "0b0b0b0b-1111-2222-3333-444444444444"  # burstable
E = "0c0c0c0c-1111-2222-3333-444444444444"  # besteffort
TREES = {
    "exporter-node-v2-systemd-crio": (2, "systemd", "crio"),
    "exporter-node-v1-cgroupfs-docker": (1, "cgroupfs", "docker"),
    "exporter-node-v2-cgroupfs-containerd": (2, "cgroupfs", "containerd"),
    "exporter-node-v1-systemd-containerd": (1, "systemd", "containerd"),
}
# The v2 trees were written as runc < 1.3.2 / crun < 1.23 write cpu.weight: the linear map
# (1 core -> 39). Today's runtimes' quadratic map is covered by test_cpu_weight.py and the
# simulator's default.
WEIGHT_MAP = "linear"


def write_tree(root: Path, version: int, driver: str, runtime: str) -> FakeCgroupTree:
    pc = FakePowercap(root / "sys")
    pc.add_package(0, energy_uj=5_000_000)
    pc.add_package(1, mmio_duplicate=True, energy_uj=7_000_000)
    write_proc_stat(root / "proc", Ticks(user=1000, idle=9000), 8)
    write_meminfo(root / "proc", 64 * GIB)
    tree = FakeCgroupTree(root / "sys", version=version, driver=driver, runtime=runtime,
                          procfs_root=root / "proc", weight_map=WEIGHT_MAP)
    tree.add_pod(G, "guaranteed", {"train": (4.0, 8 * GIB)})
    tree.add_pod(U, "burstable", {"web": (1.0, 2 * GIB), "sidecar": (0.0, GIB)})
    tree.add_pod(E, "besteffort", {"batch": (0.0, 0)})
    tree.advance_cpu(G, "train", 100.0, conmon_seconds=1.0 if runtime == "crio" else 0.0)
    tree.advance_cpu(U, "web", 30.0)
    tree.advance_system(50.0)
    return tree


@pytest.mark.parametrize("name", sorted(TREES))
def test_sim_reproduces_the_checked_in_tree(name: str, tmp_path: Path) -> None:
    write_tree(tmp_path, *TREES[name])
    fixture = FIXTURES / name
    if os.environ.get("UPDATE_FIXTURES"):
        shutil.rmtree(fixture, ignore_errors=True)
        shutil.copytree(tmp_path, fixture)
    mismatches = []
    for dirpath, _dirs, files in os.walk(fixture):
        for f in files:
            rel = Path(dirpath, f).relative_to(fixture)
            if not (tmp_path / rel).is_file() or not filecmp.cmp(fixture / rel, tmp_path / rel,
                                                                  shallow=False):
                mismatches.append(str(rel))
    generated = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    checked_in = {p.relative_to(fixture) for p in fixture.rglob("*") if p.is_file()}
    assert mismatches == [] and generated == checked_in


@pytest.mark.parametrize("name", sorted(TREES))
def test_discovery_on_checked_in_tree(name: str) -> None:
    version, _driver, runtime = TREES[name]
    reader = CgroupReader(FIXTURES / name / "sys" / "fs" / "cgroup")
    assert reader.version == version
    cgs = reader.discover()
    by_pod: dict[str, set[str]] = {}
    for c in cgs:
        by_pod.setdefault(c.pod_uid, set()).add(c.qos)
    # three pods with their QoS; nothing from system.slice / user.slice (which holds a
    # Docker container that is not a pod)
    assert by_pod == {G: {"guaranteed"}, U: {"burstable"}, E: {"besteffort"}}
    per_runtime = 2 if runtime == "crio" else 1  # CRI-O adds a conmon cgroup per container
    assert len(cgs) == per_runtime * (2 + 3 + 2)  # sandboxes + containers
    assert {c.runtime for c in cgs} == {"" if _driver == "cgroupfs" and runtime != "crio"
                                        else runtime}
    usage = reader.read(cgs)
    assert usage.root_cpu_s == 181.0 if runtime == "crio" else 180.0
    assert sorted(v for v in usage.containers.values() if v) == (
        [1.0, 30.0, 100.0] if runtime == "crio" else [30.0, 100.0])
    weights = CpuWeightMap(WEIGHT_MAP)
    reqs = sorted(r for c in cgs if not c.conmon and (r := reader.cpu_request_cores(c, weights)))
    # v1: shares 1024 and 4096 exactly. v2: under the linear map weight 39 is written for
    # shares 999..1024 and 157 for 4092..4118 (enumerating 1 + (s-2)*9999 // 262142); the
    # reader takes each range's middle, 1011.5 and 4105 shares.
    expect = [1.0, 4.0] if version == 1 else [1011.5 / 1024, 4105 / 1024]
    assert reqs == expect


def test_engine_on_a_copy_of_a_checked_in_tree(tmp_path: Path, catalogue: Any) -> None:
    """Counters advanced by editing the copied files directly (what the kernel does)."""
    root = tmp_path / "node"
    shutil.copytree(FIXTURES / "exporter-node-v1-cgroupfs-docker", root)
    now = [1000.0]
    cfg = EngineConfig("node-1", IdlePolicy.NONE, cpu_count=8, memory_capacity_bytes=64 * GIB)
    eng = Engine(cfg, cgroups=CgroupReader(root / "sys" / "fs" / "cgroup"),
                 sources=[RaplSource(root / "sys", clock=lambda: now[0])],
                 emissions=EmissionsRates(catalogue, "DE", 1.0), pods=PodCache(),
                 procfs_root=root / "proc", wall_clock=lambda: now[0],
                 monotonic_clock=lambda: now[0])
    eng.collect()
    cpu = root / "sys" / "fs" / "cgroup" / "cpu,cpuacct"
    busy = [p for p in cpu.glob(f"kubepods/pod{G}/*/cpuacct.usage")
            if int(p.read_text()) > 0]
    assert len(busy) == 1  # train; the other is the pause sandbox
    train = busy[0]
    train.write_text(f"{(100 + 30) * 10**9}\n")  # +30 s
    (cpu / "cpuacct.usage").write_text(f"{(180 + 40) * 10**9}\n")  # +40 s node busy
    pc = root / "sys" / "class" / "powercap"
    (pc / "intel-rapl:0" / "energy_uj").write_text(f"{5_000_000 + 400_000_000}\n")
    now[0] += 10
    r = eng.collect()
    assert r is not None
    short = train.parent.name[:12]
    # 400 J x 40/80 busy share = 200 J active; 30 of the 40 busy seconds are train's
    assert r.containers == {(G, short): {"cpu": 150.0}}
    assert r.unallocated == {"cpu": 250.0, "dram": 0.0}
