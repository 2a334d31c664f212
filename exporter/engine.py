"""One collection cycle: read, attribute, book — each a module of its own.

- reading (exporter/reading.py, containers.py, reservations.py): one pass of I/O — energy
  sources, the cgroup tree and CPU times, GPU topology from any number of GPU providers,
  the containers of new cgroups and GPU processes, and reservations;
- attribution (exporter/interval.py): pure functions over what was read;
- booking (exporter/booking.py): the ledger's counters, energy and CO2e per container;
- health (exporter/status.py) and the scrapes' snapshot (exporter/snapshot.py).

The engine owns every piece of mutable accounting state and is driven by one thread (the
collection loop). Scrapes read an immutable ``Snapshot`` of the ledger, built once per cycle
on first use (under the engine's lock, so never mid-cycle); a scrape never reads hardware.

Per interval and component (cpu, dram, gpu) the conservation invariant holds by construction:
``sum(containers) + unallocated == node energy`` (see attribution.py, gpu_attribution.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from carbontrack.core.types import EnergyReading, EnergySource

from .attribution import IdlePolicy
from .booking import Booker, IntervalResult
from .cgroups import CgroupReader, ContainerCgroup
from .containers import POD_SANDBOX, SANDBOX_READ_CYCLES, ContainerTracker
from .cpu_weight import CpuWeightMap
from .emissions import EmissionsRates
from .interval import IntervalInputs, attribute, needs_pids, needs_reservations
from .pods import PodCache
from .reading import GpuTopology, GpuTopologyProvider, Reader
from .reservations import MEMORY_REFRESH_CYCLES, Reservations
from .snapshot import Snapshot, ledger_view
from .state import ContainerKey, Ledger, Owner, StateStore
from .status import SourceStatus, StatusBoard

__all__ = ["MEMORY_REFRESH_CYCLES", "POD_SANDBOX", "SANDBOX_READ_CYCLES", "Engine",
           "EngineConfig", "GpuTopology", "GpuTopologyProvider", "IntervalResult", "Snapshot",
           "SourceStatus"]


@dataclass
class EngineConfig:
    node_name: str
    idle_policy: IdlePolicy = IdlePolicy.RESERVED
    retention_s: float = 600.0
    cpu_count: int | None = None
    memory_capacity_bytes: int | None = None
    kube: bool = False
    sandbox_read_cycles: int = SANDBOX_READ_CYCLES  # pause sandboxes are read this rarely


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        *,
        cgroups: CgroupReader,
        sources: Sequence[EnergySource],
        emissions: EmissionsRates,
        pods: PodCache,
        procfs_root: Path,
        ledger: Ledger | None = None,
        store: StateStore | None = None,
        gpu: GpuTopologyProvider | Sequence[GpuTopologyProvider] | None = None,
        wall_clock: Callable[[], float] = time.time,
        cpu_clock: Callable[[], float] = time.perf_counter,
        monotonic_clock: Callable[[], float] = time.monotonic,
        cpu_weights: CpuWeightMap | None = None,
    ) -> None:
        self.cfg = config
        self.cgroups = cgroups
        self.emissions = emissions
        self.pods = pods
        self.store = store
        self.ledger = ledger if ledger is not None else (store.load() if store else Ledger())
        gpus = [] if gpu is None else list(gpu) if isinstance(gpu, Sequence) else [gpu]
        self.status = StatusBoard()
        self.reader = Reader(sources, cgroups, gpus, self.status, cpu_clock)
        self.tracker = ContainerTracker(cgroups, pods, procfs_root, kube=config.kube,
                                        sandbox_read_cycles=config.sandbox_read_cycles)
        self.reservations = Reservations(
            cgroups, pods, policy=config.idle_policy, cpu_count=config.cpu_count,
            memory_capacity_bytes=config.memory_capacity_bytes, kube=config.kube,
            cpu_weights=cpu_weights)
        self.booker = Booker(self._owner)
        # wall time labels intervals for the intensity lookup and persists finish times;
        # interval lengths and retention use the monotonic clock, which NTP cannot step
        self.wall = wall_clock
        self.mono = monotonic_clock
        self._prev_mono: float | None = None
        self._prev_root: float | None = None
        self._prev_wall: float | None = None
        self._rate_info: tuple[str, str, str, float] | None = None
        self._fallback_info: tuple[str, bool] | None = None
        self._seq = 0
        self._lock = threading.RLock()
        self._snap: Snapshot | None = None

    @property
    def perf(self) -> Callable[[], float]:
        """The clock that times each source's read (durations are exported)."""
        return self.reader.perf

    @perf.setter
    def perf(self, clock: Callable[[], float]) -> None:
        self.reader.perf = clock

    @property
    def cpu_weights(self) -> CpuWeightMap:
        return self.reservations.cpu_weights

    @property
    def sources(self) -> list[EnergySource]:
        return self.reader.sources

    # -- the cycle ------------------------------------------------------------
    def collect(self) -> IntervalResult | None:
        """Run one cycle; returns what it attributed (None on the baseline cycle)."""
        with self._lock:  # a scrape building its snapshot waits for the cycle to finish
            result = self._collect()
            self._seq += 1
            return result

    @property
    def snapshot(self) -> Snapshot:
        """The latest cycle's snapshot, built on first use after that cycle (scrapes are
        rarer than cycles: 5 s cycles, 30 s scrapes build one snapshot in six)."""
        with self._lock:
            snap = self._snap
            if snap is None or snap.seq != self._seq:
                snap = self._snap = self._build_snapshot()
            return snap

    def mark_source(self, name: str, up: bool, message: str) -> None:
        """Record a source's health from outside a cycle (one that failed to open)."""
        with self._lock:
            self.status.set(name, up, message, 0.0)
            self._seq += 1

    def _collect(self) -> IntervalResult | None:
        now = self.wall()
        mono = self.mono()
        # -- reading: one pass of I/O
        readings = self.reader.energy()
        cgs, usage = self.reader.cgroup_usage(lambda c: self.tracker.to_read(c, self._seq))
        topo = self.reader.gpu_topology()
        first = self._prev_wall is None
        deltas = self.reader.energy_deltas(readings)
        cpu_d, present = self.tracker.usage_deltas(cgs, usage.containers, first)
        self.reservations.prune(self.tracker.tracks)
        root_d = (None if usage.root_cpu_s is None or self._prev_root is None
                  else max(0.0, usage.root_cpu_s - self._prev_root))
        self._prev_root = usage.root_cpu_s
        start, self._prev_wall = self._prev_wall, now
        prev_mono, self._prev_mono = self._prev_mono, mono
        result = None
        if not first and start is not None:
            dt = mono - prev_mono if prev_mono is not None else now - start
            # a wall clock stepped back makes end < start: label the interval by its end
            result = self._interval(min(start, now), now, dt, deltas, cpu_d, root_d, present,
                                    topo)
        moved = self.tracker.label_late_pods(self.ledger)
        live: Collection[ContainerKey] = present.keys()
        if moved:
            live = {moved.get(k, k) for k in live}
        self.ledger.update_liveness(live, now, mono, self.cfg.retention_s)
        if self.store is not None:
            try:
                self.store.save(self.ledger)
                self.status.set("state", True, "", 0.0)
            except OSError as err:
                self.status.set("state", False, f"cannot write state: {err}", 0.0)
        return result

    def _interval(self, start: float, end: float, dt: float,
                  deltas: list[tuple[EnergyReading, float]], cpu_d: dict[ContainerKey, float],
                  root_d: float | None, present: dict[ContainerKey, ContainerCgroup],
                  topo: GpuTopology) -> IntervalResult:
        """One interval: the reservations and GPU processes' containers that attribution
        will ask for (read only then), the attribution (pure), the ledger."""
        reserved = (self.reservations.for_cycle(present, self._seq)
                    if needs_reservations(deltas) else {})
        pid_keys = (self.tracker.pid_keys(p for _, p, _, _ in topo.processes)
                    if needs_pids(deltas) else {})
        inputs = IntervalInputs(dt, deltas, cpu_d, root_d, self.cfg.cpu_count,
                                self.cfg.idle_policy, reserved, topo, pid_keys)
        return self._book(start, end, inputs)

    def _book(self, start: float, end: float, inputs: IntervalInputs) -> IntervalResult:
        """The interval's intensity, its attribution (pure), then the ledger."""
        rate = self.emissions.rate(start, end)
        if rate.factor is not None:
            f = rate.factor
            self._rate_info = (f.zone, f.source, f.basis.label(), f.g_per_kwh)
            self.status.set("intensity", True, "", 0.0)
            if self.emissions.provider != "static":
                self._fallback_info = (self.emissions.provider, f.fallback_reason is not None)
        else:
            self.status.set("intensity", False, rate.error, 0.0)
        pods_generation = self.pods.generation  # before any lookup: a later change rebuilds
        steps = attribute(inputs)
        return self.booker.book(self.ledger, start, end, inputs.deltas, steps,
                                rate.g_per_joule, pods_generation)

    def _owner(self, uid: str) -> Owner:
        meta = self.pods.get(uid)
        return meta.owner if meta is not None else Owner()

    def _build_snapshot(self) -> Snapshot:
        node, containers, unallocated = ledger_view(self.ledger)
        v2 = self.cgroups.version == 2
        return Snapshot(
            seq=self._seq,
            node_name=self.cfg.node_name,
            node=node,
            containers=containers,
            unallocated=unallocated,
            sources=self.status.items(),
            intensity=self._rate_info,
            pue=self.emissions.pue,
            idle_policy=self.cfg.idle_policy.value,
            cpu_weight_map=self.cpu_weights.formula.value if v2 else "v1-shares",
            cpu_weight_basis=self.cpu_weights.basis if v2 else "exact",
            intensity_fallback=self._fallback_info,
        )
