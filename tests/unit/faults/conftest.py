"""Shared parts of the fault suite: a fake node (real readers on fake /sys and /proc trees),
a real `carbontrack exporter` process, and conservation checks.

Fakes stop at the hardware boundary: powercap, cgroup and procfs trees are files the test
writes; everything that reads them (RaplSource, CgroupReader, Engine, the HTTP server) is the
product's own code.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from carbontrack.exporter.attribution import IdlePolicy
from carbontrack.exporter.cgroups import CgroupReader
from carbontrack.exporter.emissions import EmissionsRates
from carbontrack.exporter.engine import Engine, EngineConfig, IntervalResult
from carbontrack.exporter.pods import PodCache, PodMeta
from carbontrack.exporter.state import Owner, StateStore

from carbontrack.devcluster.exporter_process import Samples
from carbontrack.intensity.catalogue import Catalogue
from carbontrack.sim.cgroups import FakeCgroupTree
from carbontrack.sim.powercap import FakePowercap
from carbontrack.sim.procfs import Ticks, write_meminfo, write_proc_stat
from carbontrack.sources.rapl import RaplSource

GIB = 1 << 30
N_CPUS = 8
MEMORY = 64 * GIB


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return Catalogue.load()


@dataclass
class Node:
    """A fake node and the clocks the test moves: ``now`` is the wall clock (NTP may step
    it), ``mono`` the monotonic clock (interval lengths, retention, RAPL plausibility)."""

    root: Path
    catalogue: Catalogue
    now: float = 1_750_000_000.0
    mono: float = 1_000.0
    pods: PodCache = field(default_factory=PodCache)

    def __post_init__(self) -> None:
        self.sysfs, self.procfs = self.root / "sys", self.root / "proc"
        self.powercap = FakePowercap(self.sysfs)
        self.powercap.add_package(0)
        self.powercap.add_package(1)
        write_proc_stat(self.procfs, Ticks(), N_CPUS)
        write_meminfo(self.procfs, MEMORY)
        self.tree = FakeCgroupTree(self.sysfs, version=2, driver="systemd",
                                   runtime="containerd", procfs_root=self.procfs)

    def engine(self, *, state_dir: Path | None = None, retention_s: float = 600.0,
               kube: bool = True, extra_sources: list[object] | None = None,
               policy: IdlePolicy = IdlePolicy.RESERVED) -> Engine:
        cfg = EngineConfig("node-1", idle_policy=policy, retention_s=retention_s,
                           cpu_count=N_CPUS, memory_capacity_bytes=MEMORY, kube=kube)
        return Engine(
            cfg,
            cgroups=CgroupReader(self.sysfs / "fs" / "cgroup"),
            sources=[RaplSource(self.sysfs, clock=lambda: self.mono),
                     *(extra_sources or [])],  # type: ignore[list-item]
            emissions=EmissionsRates(self.catalogue, "DE", 1.0),
            pods=self.pods,
            procfs_root=self.procfs,
            store=StateStore(state_dir, "node-1") if state_dir else None,
            wall_clock=lambda: self.now,
            monotonic_clock=lambda: self.mono,
        )

    def tick(self, seconds: float) -> None:
        """Time passes: both clocks move together."""
        self.now += seconds
        self.mono += seconds

    def add_pod(self, uid: str, containers: dict[str, tuple[float, int]], *,
                namespace: str = "ml", name: str = "",
                owner: tuple[str, str, str] = ("Job", "train", "job-uid")) -> None:
        self.tree.add_pod(uid, "burstable", containers)
        pod = self.tree.pods[uid]
        self.pods.put(PodMeta(
            uid, Owner(namespace, name or f"pod-{uid[:8]}", *owner),
            {c.id: c.name for c in pod.containers.values() if not c.pause},
            dict(containers),
        ))

    def remove_pod(self, uid: str) -> None:
        self.tree.remove_pod(uid)
        self.pods.delete(uid)

    def package_joules(self, j0: float, j1: float) -> None:
        self.powercap.advance(self.powercap.package_zone(0), j0)
        self.powercap.advance(self.powercap.package_zone(1), j1)


@pytest.fixture
def make_node(tmp_path: Path, catalogue: Catalogue) -> Iterator[object]:
    counter = iter(range(1000))

    def build() -> Node:
        return Node(tmp_path / f"node{next(counter)}", catalogue)

    yield build


def assert_interval_conserved(r: IntervalResult) -> None:
    """Σ containers + unallocated == node energy, per component, for one interval."""
    for comp, node_j in r.node.items():
        ctr = sum(per.get(comp, 0.0) for per in r.containers.values())
        assert ctr + r.unallocated.get(comp, 0.0) == pytest.approx(node_j, rel=1e-9, abs=1e-9)
        assert all(per.get(comp, 0.0) >= 0 for per in r.containers.values())


# -- a real exporter process -----------------------------------------------------------------


def totals(m: Samples, name: str, by: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, v in m.get(name, []):
        out[labels[by]] = out.get(labels[by], 0.0) + v
    return out


def assert_scrape_conserved(m: Samples) -> None:
    node = totals(m, "carbontrack_node_energy_joules_total", "component")
    ctr = totals(m, "carbontrack_container_energy_joules_total", "component")
    un = totals(m, "carbontrack_unallocated_energy_joules_total", "component")
    for comp, j in node.items():
        assert ctr.get(comp, 0.0) + un.get(comp, 0.0) == pytest.approx(j, rel=1e-9, abs=1e-6)


@pytest.fixture
def exporter_node(tmp_path: Path) -> tuple[Path, FakePowercap, FakeCgroupTree]:
    """A node tree for a --no-kube exporter process: two packages, one training pod."""
    pc = FakePowercap(tmp_path / "sys")
    pc.add_package(0)
    pc.add_package(1)
    write_proc_stat(tmp_path / "proc", Ticks(), N_CPUS)
    write_meminfo(tmp_path / "proc", MEMORY)
    tree = FakeCgroupTree(tmp_path / "sys", version=2, driver="systemd", runtime="containerd",
                          procfs_root=tmp_path / "proc")
    tree.add_pod("0a0a0a0a-1111-2222-3333-444444444444", "guaranteed", {"train": (4.0, 8 * GIB)})
    return tmp_path, pc, tree


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: apt-get install prometheus (CI installs it)")
    return path
