"""The reading half of a cycle: every energy source, the cgroup tree and the GPU topology,
read once, each timed and its health recorded on the status board. Nothing here
attributes; exporter/interval.py does that over what was read."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from carbontrack.core.types import EnergyReading, EnergySource

from .cgroups import CgroupReader, ContainerCgroup, Usage
from .state import ContainerKey
from .status import StatusBoard


@dataclass(frozen=True)
class GpuTopology:
    """What the GPU side knows this cycle besides energy.

    ``mig``: physical GPU device id (as in its EnergyReading) -> [(sub-device id, weight)]
    (MIG instances, AMD compute partitions); ``total_slices``: that GPU's total weight;
    ``processes``: (unit id, pid, utilisation %|None, used memory bytes|None) — utilisation
    is None on MIG instances, where NVML has none; ``allocations``: unit id -> containers from
    the kubelet pod-resources API (empty when unavailable, then PIDs are mapped through
    /proc/<pid>/cgroup); ``problems``: devices allocated here whose energy no source
    measures (exporter/gpu_topology.py).
    """

    mig: Mapping[str, Sequence[tuple[str, float]]] = field(default_factory=dict)
    total_slices: Mapping[str, float] = field(default_factory=dict)
    processes: Sequence[tuple[str, int, float | None, int | None]] = ()
    allocations: Mapping[str, Sequence[ContainerKey]] = field(default_factory=dict)
    problems: Sequence[str] = ()


class GpuTopologyProvider(Protocol):
    def topology(self) -> GpuTopology: ...


def merge_topologies(parts: Sequence[GpuTopology]) -> GpuTopology:
    """One topology of several providers (their device ids never collide: vendors differ)."""
    if len(parts) == 1:
        return parts[0]
    mig: dict[str, Sequence[tuple[str, float]]] = {}
    total: dict[str, float] = {}
    allocs: dict[str, list[ContainerKey]] = {}
    procs: list[tuple[str, int, float | None, int | None]] = []
    problems: list[str] = []
    for t in parts:
        mig.update(t.mig)
        total.update(t.total_slices)
        procs += t.processes
        problems += t.problems
        for unit, keys in t.allocations.items():
            allocs.setdefault(unit, []).extend(keys)
    return GpuTopology(mig, total, procs, allocs, problems)


class Reader:
    """Reads the node's sources, cgroups and GPU providers, one pass per cycle."""

    def __init__(self, sources: Sequence[EnergySource], cgroups: CgroupReader,
                 gpu: Sequence[GpuTopologyProvider], status: StatusBoard,
                 cpu_clock: Callable[[], float] = time.perf_counter) -> None:
        self.sources = list(sources)
        self.cgroups = cgroups
        self.gpu = list(gpu)
        self.status = status
        self.perf = cpu_clock  # durations; replaceable (golden tests pin it)
        self._prev_energy: dict[tuple[str, str], float] = {}

    def energy(self) -> list[tuple[str, EnergyReading]]:
        out: list[tuple[str, EnergyReading]] = []
        for src in self.sources:
            t0 = self.perf()
            try:
                rs = list(src.read())
                h = src.health()
                up, msg = h.up, h.message
                out += [(src.name, r) for r in rs]
            except Exception as err:  # a failing source is missing series, never a failed cycle
                up, msg = False, f"{type(err).__name__}: {err}"
            self.status.set(src.name, up, msg, self.perf() - t0)
        return out

    def energy_deltas(self, readings: Iterable[tuple[str, EnergyReading]]
                      ) -> list[tuple[EnergyReading, float]]:
        """Joules since the last cycle per (source, device); a device first seen is a baseline."""
        out = []
        seen = {}
        for src, r in readings:
            key = (src, r.device)
            prev = self._prev_energy.get(key)
            seen[key] = r.joules
            if prev is not None:
                out.append((r, max(0.0, r.joules - prev)))
        self._prev_energy = seen
        return out

    def cgroup_usage(self, select: Callable[[list[ContainerCgroup]], list[ContainerCgroup]]
                     ) -> tuple[list[ContainerCgroup], Usage]:
        """The container cgroups and the CPU time of those ``select`` picks (and the root)."""
        t0 = self.perf()
        cgs = self.cgroups.discover()
        usage = self.cgroups.read(select(cgs))
        exists = self.cgroups.exists()
        self.status.set("cgroups", exists, "" if exists else
                        f"no cgroup tree at {self.cgroups.root}: mount the host's /sys",
                        self.perf() - t0)
        return cgs, usage

    def gpu_topology(self) -> GpuTopology:
        """Every GPU provider's topology, merged; one health line for all of them."""
        if not self.gpu:
            return GpuTopology()
        t0 = self.perf()
        parts: list[GpuTopology] = []
        errors: list[str] = []
        for provider in self.gpu:
            try:
                parts.append(provider.topology())
            except Exception as err:
                errors.append(f"{type(err).__name__}: {err}")
        topo = merge_topologies(parts) if parts else GpuTopology()
        problems = [*errors, *topo.problems]
        self.status.set("gpu-processes", not problems, "; ".join(problems), self.perf() - t0)
        return topo
