"""Shared parts of the fault suite: a fake node (real readers on fake /sys and /proc trees),
a real `carbontrack exporter` process, and conservation checks.

Fakes stop at the hardware boundary: powercap, cgroup and procfs trees are files the test
writes; everything that reads them (RaplSource, CgroupReader, Engine, the HTTP server) is the
product's own code.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
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
from prometheus_client.parser import text_string_to_metric_families

from carbontrack.intensity.catalogue import Catalogue
from carbontrack.sim.cgroups import FakeCgroupTree
from carbontrack.sim.powercap import FakePowercap
from carbontrack.sim.procfs import Ticks, write_meminfo, write_proc_stat
from carbontrack.sources.rapl import RaplSource

GIB = 1 << 30
N_CPUS = 8
MEMORY = 64 * GIB
Samples = dict[str, list[tuple[dict[str, str], float]]]


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

def parse(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


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


class ExporterProcess:
    """`python -m carbontrack exporter --no-kube` on a fake node tree, port chosen by the OS."""

    def __init__(self, root: Path, *args: str) -> None:
        self.log_path = root / "exporter.log"
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "carbontrack", "exporter", "--node-name", "node-1",
             "--sysfs", str(root / "sys"), "--procfs", str(root / "proc"),
             "--state-dir", str(root / "state"), "--listen", "127.0.0.1:0", "--no-kube",
             "--zone", "DE", "--pue", "1.0", *args],
            stderr=subprocess.PIPE, stdout=self.log,
        )
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.log.write(raw)
            m = re.search(rb"serving http://[\d.]+:(\d+)/metrics", raw)
            if m:
                threading.Thread(target=self._drain, daemon=True).start()
                return int(m.group(1))
        raise AssertionError(f"exporter exited ({self.proc.wait()}) before serving; "
                             f"log: {self.log_path}")

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # a full pipe would block the exporter
            self.log.write(line)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def text(self, timeout: float = 10.0) -> str:
        with urllib.request.urlopen(self.url, timeout=timeout) as r:
            return str(r.read().decode())

    def scrape(self) -> Samples:
        return parse(self.text())

    def threads(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024  # type: ignore[union-attr]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        self.log.close()
        return rc


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
