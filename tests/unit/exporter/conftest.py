"""A fake node for exporter tests: powercap + cgroup + procfs trees, and the real readers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from carbontrack.exporter.attribution import IdlePolicy
from carbontrack.exporter.cgroups import CgroupReader
from carbontrack.exporter.emissions import EmissionsRates
from carbontrack.exporter.engine import Engine, EngineConfig, GpuTopologyProvider
from carbontrack.exporter.pods import PodCache, PodMeta
from carbontrack.exporter.state import Owner, StateStore

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
class FakeNode:
    root: Path
    catalogue: Catalogue
    version: int = 2
    driver: str = "systemd"
    runtime: str = "containerd"
    mmio_duplicate: bool = False
    now: float = 1_750_000_000.0
    pods: PodCache = field(default_factory=PodCache)

    def __post_init__(self) -> None:
        self.sysfs, self.procfs = self.root / "sys", self.root / "proc"
        self.powercap = FakePowercap(self.sysfs)
        self.powercap.add_package(0)
        self.powercap.add_package(1, mmio_duplicate=self.mmio_duplicate)
        write_proc_stat(self.procfs, Ticks(), N_CPUS)
        write_meminfo(self.procfs, MEMORY)
        self.tree = FakeCgroupTree(self.sysfs, version=self.version, driver=self.driver,
                                   runtime=self.runtime, procfs_root=self.procfs)

    def engine(self, *, policy: IdlePolicy = IdlePolicy.RESERVED, kube: bool = True,
               state_dir: Path | None = None, retention_s: float = 600.0, zone: str = "DE",
               pue: float = 1.0, gpu: GpuTopologyProvider | None = None,
               extra_sources: list[object] | None = None,
               sandbox_read_cycles: int = 12) -> Engine:
        cfg = EngineConfig("node-1", idle_policy=policy, retention_s=retention_s,
                           cpu_count=N_CPUS, memory_capacity_bytes=MEMORY, kube=kube,
                           sandbox_read_cycles=sandbox_read_cycles)
        return Engine(
            cfg,
            cgroups=CgroupReader(self.sysfs / "fs" / "cgroup"),
            sources=[RaplSource(self.sysfs, clock=lambda: self.now), *(extra_sources or [])],  # type: ignore[list-item]
            emissions=EmissionsRates(self.catalogue, zone, pue),
            pods=self.pods,
            procfs_root=self.procfs,
            store=StateStore(state_dir, "node-1") if state_dir else None,
            gpu=gpu,
            wall_clock=lambda: self.now,
            monotonic_clock=lambda: self.now,
        )

    def add_pod(self, uid: str, qos: str, containers: dict[str, tuple[float, int]],
                namespace: str = "ml", name: str = "", owner: tuple[str, str, str] = ("", "", ""),
                kube: bool = True) -> None:
        self.tree.add_pod(uid, qos, containers)
        if kube:
            pod = self.tree.pods[uid]
            self.pods.put(PodMeta(
                uid, Owner(namespace, name or f"pod-{uid[:4]}", *owner),
                {c.id: c.name for c in pod.containers.values() if not c.pause},
                {n: (cores, mem) for n, (cores, mem) in containers.items()},
            ))

    def rapl(self, pkg0: float, pkg1: float, dram0: float, dram1: float) -> None:
        p = self.powercap
        p.advance(p.package_zone(0), pkg0)
        p.advance(p.package_zone(1), pkg1)
        p.advance(p.sub_zone(0, "dram"), dram0)
        p.advance(p.sub_zone(1, "dram"), dram1)


@pytest.fixture
def make_node(tmp_path: Path, catalogue: Catalogue) -> Iterator[type[FakeNode]]:
    counter = iter(range(1000))

    def build(**kw: object) -> FakeNode:
        return FakeNode(tmp_path / f"node{next(counter)}", catalogue, **kw)  # type: ignore[arg-type]

    yield build  # type: ignore[misc]
