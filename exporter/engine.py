"""One collection cycle: read sources and cgroups, attribute the interval, update the ledger.

The engine owns every piece of mutable accounting state and is driven by one thread (the
collection loop). Scrapes read an immutable ``Snapshot`` of the ledger, built once per cycle
on first use (under the engine's lock, so never mid-cycle); a scrape never reads hardware.

Per interval and component (cpu, dram, gpu) the conservation invariant holds by construction:
``sum(containers) + unallocated == node energy`` (see attribution.py, gpu_attribution.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

from carbontrack.core.types import Component, EnergyReading, EnergySource, Method

from .attribution import IdlePolicy, split_energy
from .cgroups import CgroupReader, ContainerCgroup, container_from_cgroup_path
from .cpu_weight import CpuWeightMap
from .emissions import EmissionsRates
from .gpu_attribution import GpuUnit, GpuUse, mig_units, split_unit
from .pods import PodCache, PodMeta
from .state import ContainerKey, ContainerTotals, Ledger, Owner, StateStore

log = logging.getLogger("carbontrack.exporter")

POD_SANDBOX = "POD"  # kubelet's name for the pause/sandbox container
MEMORY_REFRESH_CYCLES = 12
SANDBOX_READ_CYCLES = 12


@dataclass(slots=True)
class _Track:
    """Per container cgroup: its ledger key, whether the label is final, its last CPU
    counter, and a stagger so rare refreshes spread over cycles."""

    key: ContainerKey
    final: bool
    sandbox: bool
    prev: float | None
    stagger: int
_METHOD_RANK = {Method.MEASURED.value: 0, Method.SAMPLED.value: 1, Method.ESTIMATED.value: 2}


@dataclass(frozen=True)
class GpuTopology:
    """What the GPU side knows this cycle besides energy.

    ``mig``: physical GPU device id (as in its EnergyReading) -> [(MIG uuid, compute slices)];
    ``total_slices``: that GPU's slice count; ``processes``: (unit uuid, pid, SM %|None,
    used memory bytes|None) — SM % is None on MIG instances, where NVML has no utilisation;
    ``allocations``: unit uuid -> containers from the kubelet pod-resources API (empty when
    unavailable, then PIDs are mapped through /proc/<pid>/cgroup); ``problems``: devices
    allocated here whose energy no source measures (exporter/gpu_topology.py).
    """

    mig: Mapping[str, Sequence[tuple[str, float]]] = field(default_factory=dict)
    total_slices: Mapping[str, float] = field(default_factory=dict)
    processes: Sequence[tuple[str, int, float | None, int | None]] = ()
    allocations: Mapping[str, Sequence[ContainerKey]] = field(default_factory=dict)
    problems: Sequence[str] = ()


class GpuTopologyProvider(Protocol):
    def topology(self) -> GpuTopology: ...


@dataclass(frozen=True)
class SourceStatus:
    up: bool
    message: str
    duration_s: float


@dataclass(frozen=True)
class IntervalResult:
    """What one cycle attributed (joules per component): for tests, bench and logs."""

    start: float
    end: float
    node: dict[str, float]
    unallocated: dict[str, float]
    # (component, (container, joules) pairs) as the cycle gave them to the ledger. The
    # collection loop never reads ``containers``, so it is built from these on first use
    # rather than in the per-container hot loop.
    given: Sequence[tuple[str, Collection[tuple[ContainerKey, float]]]] = field(
        default=(), compare=False, repr=False)

    @cached_property
    def containers(self) -> dict[ContainerKey, dict[str, float]]:
        """Joules per container and component this interval (only those that got some)."""
        out: dict[ContainerKey, dict[str, float]] = {}
        for comp, items in self.given:
            for key, j in items:
                if j <= 0:
                    continue  # as give_many: nothing given
                per = out.get(key)
                if per is None:
                    out[key] = {comp: j}
                else:
                    per[comp] = per.get(comp, 0.0) + j
        return out


@dataclass(frozen=True)
class Snapshot:
    """Immutable view of the ledger and health after a cycle; what scrapes export."""

    seq: int
    node_name: str
    node: tuple[tuple[tuple[str, str, str], float], ...]
    containers: tuple[tuple[ContainerKey, Owner, tuple[tuple[str, str, float, float | None],
                                                       ...]], ...]
    unallocated: tuple[tuple[str, float], ...]
    sources: tuple[tuple[str, SourceStatus], ...]
    intensity: tuple[str, str, str, float] | None  # zone, source, basis, g/kWh
    pue: float
    idle_policy: str
    # How cgroup v2 cpu.weight is read back into a request when the pod spec is missing
    # (exporter/cpu_weight.py): map linear|quadratic, basis configured|matched|assumed;
    # on cgroup v1 the shares are exact ("v1-shares", "exact").
    cpu_weight_map: str = ""
    cpu_weight_basis: str = ""
    # a live intensity provider's name and whether the last interval's factor was the static
    # catalogue's instead (the provider failed or is backing off); None for the static catalogue
    intensity_fallback: tuple[str, bool] | None = None


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
        gpu: GpuTopologyProvider | None = None,
        wall_clock: Callable[[], float] = time.time,
        cpu_clock: Callable[[], float] = time.perf_counter,
        monotonic_clock: Callable[[], float] = time.monotonic,
        cpu_weights: CpuWeightMap | None = None,
    ) -> None:
        self.cfg = config
        self.cgroups = cgroups
        # which runtime shares->weight map a v2 weight is read back with (fallback only)
        self.cpu_weights = cpu_weights if cpu_weights is not None else CpuWeightMap()
        self._weight_formula = self.cpu_weights.formula
        self._weight_seen: set[ContainerCgroup] = set()  # weights already observed
        self.sources = list(sources)
        self.emissions = emissions
        self.pods = pods
        self.procfs = Path(procfs_root)
        self.store = store
        self.ledger = ledger if ledger is not None else (store.load() if store else Ledger())
        self.gpu = gpu
        # wall time labels intervals for the intensity lookup and persists finish times;
        # interval lengths and retention use the monotonic clock, which NTP cannot step
        self.wall = wall_clock
        self.perf = cpu_clock
        self.mono = monotonic_clock
        self._prev_mono: float | None = None
        self._prev_energy: dict[tuple[str, str], float] = {}
        self._tracks: dict[ContainerCgroup, _Track] = {}
        self._prev_root: float | None = None
        self._prev_wall: float | None = None
        self._pid_keys: dict[int, ContainerKey | None] = {}
        self._keys_by_id: dict[str, ContainerKey] | None = None
        self._requests: dict[ContainerCgroup, float | None] = {}
        self._mem: dict[ContainerCgroup, int] = {}
        self._res_cache: tuple[set[ContainerKey], dict[ContainerKey, float],
                               dict[ContainerKey, float], list[ContainerKey],
                               dict[str, tuple[dict[ContainerKey, float], float | None]]
                               ] | None = None
        self._res_generation = -1  # pod cache generation the reservations were built at
        # ContainerTotals by key, kept across cycles (see _container_totals)
        self._totals: dict[ContainerKey, ContainerTotals] = {}
        self._totals_stamp: tuple[Ledger, int, int] | None = None
        # (ledger, its structure version, pod cache generation) at the last late-label pass
        self._late_stamp: tuple[Ledger, int, int] | None = None
        self._status: dict[str, SourceStatus] = {}
        self._down_logged: set[str] = set()
        self._seq = 0
        self._lock = threading.RLock()
        self._snap: Snapshot | None = None

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
                snap = self._snap = self._build_snapshot(self._rate_info)
            return snap

    def _collect(self) -> IntervalResult | None:
        now = self.wall()
        mono = self.mono()
        readings = self._read_sources()
        t0 = self.perf()
        cgs = self.cgroups.discover()
        usage = self.cgroups.read(self._to_read(cgs))
        self._set_status("cgroups", self.cgroups.exists(),
                         "" if self.cgroups.exists() else
                         f"no cgroup tree at {self.cgroups.root}: mount the host's /sys",
                         self.perf() - t0)
        topo = self._read_gpu()

        first = self._prev_wall is None
        deltas = self._energy_deltas(readings)
        cpu_d, present = self._usage_deltas(cgs, usage.containers, first)
        root_d = (None if usage.root_cpu_s is None or self._prev_root is None
                  else max(0.0, usage.root_cpu_s - self._prev_root))
        self._prev_root = usage.root_cpu_s
        start, self._prev_wall = self._prev_wall, now
        prev_mono, self._prev_mono = self._prev_mono, mono
        result = None
        if not first and start is not None:
            dt = mono - prev_mono if prev_mono is not None else now - start
            # a wall clock stepped back makes end < start: label the interval by its end
            result = self._attribute(min(start, now), now, dt, deltas, cpu_d, root_d, present,
                                     topo)
        moved = self._label_late_pods()
        live: Collection[ContainerKey] = present.keys()
        if moved:
            live = {moved.get(k, k) for k in live}
        self.ledger.update_liveness(live, now, mono, self.cfg.retention_s)
        if self.store is not None:
            try:
                self.store.save(self.ledger)
                self._set_status("state", True, "", 0.0)
            except OSError as err:
                self._set_status("state", False, f"cannot write state: {err}", 0.0)
        return result

    _rate_info: tuple[str, str, str, float] | None = None
    _fallback_info: tuple[str, bool] | None = None

    def _label_late_pods(self) -> dict[ContainerKey, ContainerKey]:
        """Give owner labels to ledger entries whose pod the watch delivered late.

        Under load the pod watch lags the cgroup tree: a short pod (a 2 s Job) can run, and
        even finish, before its metadata arrives. Its energy was recorded under
        ``(uid, <short runtime id>)`` (or ``(uid, POD)`` for its sandbox) with empty owner
        labels, and with no further energy (its CPU use has stopped) no labelled series
        would ever be created: the operator, which selects by ``owner_uid``, would find
        nothing. So once the pod is known, such an entry — live or finished — is moved to
        the key the container has now (its name from the pod's statuses, else ``POD``) with
        the pod's owner, added to that entry if it exists. Only entries without owner labels
        move: an owner-labelled series may already be summed by the operator, and moving it
        would count it twice. Returns old key -> new key of what moved."""
        if not self.cfg.kube:
            return {}
        led = self.ledger
        last = self._late_stamp
        if (last is not None and last[0] is led and last[1] == led.structure_version
                and last[2] == self.pods.generation):
            return {}  # no new entries and no new metadata since the last look
        moves: dict[ContainerKey, tuple[ContainerKey, Owner]] = {}
        for key, t in led.containers.items():
            if t.owner.pod:
                continue  # labelled (the pod's name is always set from the API)
            meta = self.pods.get(key[0])
            if meta is None:
                continue  # still unknown: look again when the cache changes
            moves[key] = ((key[0], self._name_for(key[1], meta)), meta.owner)
        for old, (new, owner) in moves.items():
            led.move(old, new, owner)
        if moves:
            self._pid_keys = {}  # GPU processes' keys may name a moved entry
            log.debug("labelled %d container series whose pod metadata arrived late",
                      len(moves))
        self._late_stamp = (led, led.structure_version, self.pods.generation)
        return {old: new for old, (new, _) in moves.items()}

    @staticmethod
    def _name_for(label: str, meta: PodMeta) -> str:
        """The container name for a provisional label (a short runtime id): as ``_label``
        would give it now that the pod is known."""
        if label == POD_SANDBOX or label in meta.requests or label in meta.container_ids.values():
            return label
        for cid, name in meta.container_ids.items():
            if cid.startswith(label):
                return name
        return POD_SANDBOX  # an id missing from the pod's statuses: its sandbox

    # -- reading --------------------------------------------------------------
    def _read_sources(self) -> list[tuple[str, EnergyReading]]:
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
            self._set_status(src.name, up, msg, self.perf() - t0)
        return out

    def _read_gpu(self) -> GpuTopology:
        if self.gpu is None:
            return GpuTopology()
        t0 = self.perf()
        try:
            topo = self.gpu.topology()
            self._set_status("gpu-processes", not topo.problems, "; ".join(topo.problems),
                             self.perf() - t0)
            return topo
        except Exception as err:
            self._set_status("gpu-processes", False, f"{type(err).__name__}: {err}",
                             self.perf() - t0)
            return GpuTopology()

    def mark_source(self, name: str, up: bool, message: str) -> None:
        """Record a source's health from outside a cycle (one that failed to open)."""
        with self._lock:
            self._set_status(name, up, message, 0.0)
            self._seq += 1

    def _set_status(self, name: str, up: bool, msg: str, dur: float) -> None:
        self._status[name] = SourceStatus(up, msg, dur)
        if not up and name not in self._down_logged:
            log.warning("source %s down: %s", name, msg or "no detail")
            self._down_logged.add(name)
        elif up and name in self._down_logged:
            log.info("source %s up again", name)
            self._down_logged.discard(name)

    def _energy_deltas(self, readings: Iterable[tuple[str, EnergyReading]]
                       ) -> list[tuple[EnergyReading, float]]:
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

    def _to_read(self, cgs: list[ContainerCgroup]) -> list[ContainerCgroup]:
        """Cgroups to read this cycle: all but the pause sandboxes, which are read every
        SANDBOX_READ_CYCLES cycles (staggered). A pause process uses next to no CPU; its
        counter keeps what it used, so the skipped time is attributed when next read."""
        tracks = self._tracks
        n = self._seq
        out = []
        for cg in cgs:
            tr = tracks.get(cg)
            if (tr is None or not tr.sandbox or tr.prev is None
                    or (n + tr.stagger) % self.cfg.sandbox_read_cycles == 0):
                out.append(cg)
        return out

    def _usage_deltas(self, cgs: list[ContainerCgroup], cur: Mapping[ContainerCgroup, float],
                      first: bool
                      ) -> tuple[dict[ContainerKey, float], dict[ContainerKey, ContainerCgroup]]:
        """CPU seconds per container this interval. A container first seen after the baseline
        started at zero inside the interval, so all of its usage is this interval's."""
        old = self._tracks
        tracks: dict[ContainerCgroup, _Track] = {}
        deltas: dict[ContainerKey, float] = {}
        present: dict[ContainerKey, ContainerCgroup] = {}
        for cg in cgs:
            tr = old.get(cg)
            v = cur.get(cg)
            if v is None:
                if tr is None or not tr.sandbox or tr.prev is None:
                    continue  # vanished between listing and reading
                v = tr.prev  # a sandbox not read this cycle: no new usage yet
            if tr is None or not tr.final:
                label, final = self._label(cg)
                prev = tr.prev if tr is not None else None
                # read rarely only if surely a sandbox: a container counted as POD until its
                # status is posted is read every cycle, or a short pod's CPU time would be
                # read after its cgroup is gone (lost to unallocated)
                tr = _Track((cg.pod_uid, label), final, final and label == POD_SANDBOX, prev,
                            hash(cg.id) % SANDBOX_READ_CYCLES)
            p = tr.prev
            d = (v - p if v >= p else v) if p is not None else (0.0 if first else v)
            tr.prev = v
            tracks[cg] = tr
            key = tr.key
            deltas[key] = deltas.get(key, 0.0) + d
            if not cg.conmon or key not in present:
                present[key] = cg
        self._tracks = tracks  # bounded by live cgroups
        if len(self._requests) > len(tracks):
            self._requests = {cg: r for cg, r in self._requests.items() if cg in tracks}
        if len(self._weight_seen) > len(tracks):
            self._weight_seen = {cg for cg in self._weight_seen if cg in tracks}
        if len(self._mem) > len(tracks):
            self._mem = {cg: m for cg, m in self._mem.items() if cg in tracks}
        return deltas, present

    def _label(self, cg: ContainerCgroup) -> tuple[str, bool]:
        """Container label and whether it is final: POD for the pause sandbox, the kube name,
        else (no API, or the pod not yet in the watch cache) the short runtime id."""
        meta = self.pods.get(cg.pod_uid)
        if meta is not None and cg.id in meta.container_ids:
            return meta.container_ids[cg.id], True
        if self._is_pause(cg):
            return POD_SANDBOX, True
        if meta is not None and self.cfg.kube:
            # a known pod's id missing from its statuses is its sandbox (or a container
            # whose status has not been posted yet: look again next cycle)
            return POD_SANDBOX, False
        return cg.id[:12], not self.cfg.kube

    def _is_pause(self, cg: ContainerCgroup) -> bool:
        pid = self.cgroups.first_pid(cg)
        if pid is None:
            return False
        try:
            raw = (self.procfs / str(pid) / "cmdline").read_bytes()
        except OSError:
            return False
        argv0 = raw.split(b"\0", 1)[0]
        return argv0.rsplit(b"/", 1)[-1] == b"pause"

    # -- attribution ----------------------------------------------------------
    def _attribute(
        self,
        start: float,
        end: float,
        interval_s: float,
        deltas: list[tuple[EnergyReading, float]],
        cpu_d: dict[ContainerKey, float],
        root_d: float | None,
        present: dict[ContainerKey, ContainerCgroup],
        topo: GpuTopology,
    ) -> IntervalResult:
        rate = self.emissions.rate(start, end)
        if rate.factor is not None:
            f = rate.factor
            self._rate_info = (f.zone, f.source, f.basis.label(), f.g_per_kwh)
            self._set_status("intensity", True, "", 0.0)
            if self.emissions.provider != "static":
                self._fallback_info = (self.emissions.provider, f.fallback_reason is not None)
        else:
            self._set_status("intensity", False, rate.error, 0.0)
        g = rate.g_per_joule
        led = self.ledger
        node_tot: dict[str, float] = {}
        given: list[tuple[str, Collection[tuple[ContainerKey, float]]]] = []
        unalloc_tot: dict[str, float] = {}
        pods_generation = self.pods.generation  # before any lookup: a later change rebuilds
        totals = self._container_totals(pods_generation)

        def give_many(items: Collection[tuple[ContainerKey, float]], comp: str,
                      method: str) -> None:
            # the per-container hot loop of a cycle: ledger updates inlined on purpose
            ck = (comp, method)
            given.append((comp, items))  # IntervalResult.containers iterates them again
            for key, j in items:
                if j <= 0:
                    continue
                t = totals.get(key)
                if t is None:
                    t = totals[key] = led.totals(key, self._owner(key[0]))
                tj = t.joules
                if ck in tj:
                    tj[ck] += j
                else:
                    tj[ck] = j
                    led.structure_version += 1
                if g is not None:
                    tg = t.grams
                    if ck in tg:
                        tg[ck] += j * g
                    else:
                        tg[ck] = j * g
                        led.structure_version += 1

        def give(key: ContainerKey, comp: str, method: str, j: float) -> None:
            give_many(((key, j),), comp, method)

        def unalloc(comp: str, j: float) -> None:
            led.add_unallocated(comp, j)
            unalloc_tot[comp] = unalloc_tot.get(comp, 0.0) + j

        by_comp: dict[str, list[tuple[EnergyReading, float]]] = {}
        for r, d in deltas:
            led.add_node(r.component.value, r.device, r.method.value, d)
            node_tot[r.component.value] = node_tot.get(r.component.value, 0.0) + d
            by_comp.setdefault(r.component.value, []).append((r, d))

        dt = max(1e-9, interval_s)
        busy = root_d if root_d is not None else sum(cpu_d.values())
        frac = 1.0 if not self.cfg.cpu_count else busy / (dt * self.cfg.cpu_count)
        reservations: dict[str, tuple[dict[ContainerKey, float], float | None]] | None = None
        for comp in (Component.CPU.value, Component.DRAM.value, Component.OTHER.value):
            items = by_comp.get(comp)
            if not items:
                continue
            energy = sum(d for _, d in items)
            method = max((r.method.value for r, _ in items), key=_METHOD_RANK.__getitem__)
            if reservations is None:
                reservations = self._reservations(present)
            reserved, capacity = reservations.get(comp, ({}, None))
            split = split_energy(
                energy, active_fraction=frac, node_busy_s=busy, usage_s=cpu_d,
                reserved=reserved, capacity=capacity, policy=self.cfg.idle_policy,
            )
            give_many(split.containers.items(), comp, method)
            unalloc(comp, split.unallocated)

        gpu_items = by_comp.get(Component.GPU.value)
        if gpu_items:
            self._attribute_gpu(gpu_items, topo, give, unalloc)
        self._totals_stamp = (led, led.structure_version, pods_generation)
        return IntervalResult(start, end, node_tot, unalloc_tot, given)

    def _container_totals(self, pods_generation: int) -> dict[ContainerKey, ContainerTotals]:
        """The ledger's ContainerTotals by key, kept from the last cycle while still valid.

        Looking every container up in the ledger with its owner labels each cycle costs
        ~1 ms at 1,000 containers. The kept map is valid while the ledger's structure did not
        move since the last attribution (no container dropped, finished or relabelled; a
        drop would leave a kept object orphaned and lose its energy) and the pod cache did
        not change (owner labels come from it)."""
        led = self.ledger
        stamp = self._totals_stamp
        if (stamp is None or stamp[0] is not led or stamp[1] != led.structure_version
                or stamp[2] != pods_generation):
            self._totals = {}
        return self._totals

    def _attribute_gpu(
        self,
        items: list[tuple[EnergyReading, float]],
        topo: GpuTopology,
        give: Callable[[ContainerKey, str, str, float], None],
        unalloc: Callable[[str, float], None],
    ) -> None:
        comp = Component.GPU.value
        uses: dict[str, list[GpuUse[ContainerKey]]] = {}
        self._keys_by_id = None
        live_pids = set()
        for unit_uuid, pid, sm, mem in topo.processes:
            live_pids.add(pid)
            uses.setdefault(unit_uuid, []).append(GpuUse(unit_uuid, self._pid_key(pid), sm, mem))
        self._pid_keys = {p: k for p, k in self._pid_keys.items() if p in live_pids}
        for r, d in items:
            instances = topo.mig.get(r.device)
            if instances:
                units, rest = mig_units(d, instances, topo.total_slices.get(r.device, 7.0))
                unalloc(comp, rest)
            else:
                units = [GpuUnit(r.device, d, False)]  # NVML readings: device = GPU UUID
            for u in units:
                method = Method.ESTIMATED.value if u.estimated else r.method.value
                s = split_unit(u, topo.allocations.get(u.uuid, ()), uses.get(u.uuid, ()))
                for k, j in s.containers.items():
                    give(k, comp, method, j)
                unalloc(comp, s.unallocated)

    def _pid_key(self, pid: int) -> ContainerKey | None:
        if pid in self._pid_keys:
            return self._pid_keys[pid]
        key = None
        try:
            text = (self.procfs / str(pid) / "cgroup").read_text(encoding="utf-8")
        except OSError:
            text = ""  # vanished between NVML's list and our read: unknown owner
        for line in text.splitlines():
            path = line.split(":", 2)[-1]
            found = container_from_cgroup_path(path)
            if found is not None:
                uid, cid = found
                if self._keys_by_id is None:  # built once per cycle, only if a PID is new
                    self._keys_by_id = {cg.id: tr.key for cg, tr in self._tracks.items()}
                key = self._keys_by_id.get(cid, (uid, cid[:12]))
                break
        self._pid_keys[pid] = key
        return key

    def _owner(self, uid: str) -> Owner:
        meta = self.pods.get(uid)
        return meta.owner if meta is not None else Owner()

    def _reservations(self, present: Mapping[ContainerKey, ContainerCgroup]
                      ) -> dict[str, tuple[dict[ContainerKey, float], float | None]]:
        """Requests per container for the idle split, per component, with node capacity.

        CPU cores and memory bytes from the pod spec; without the API, CPU from the cgroup's
        weight/shares (read once per cgroup) and memory from memory.current (refreshed now
        and then) as the reservation proxy."""
        if self.cfg.idle_policy is not IdlePolicy.RESERVED:
            return {}
        cached = self._res_cache
        generation = self.pods.generation  # before any lookup: a later change rebuilds
        if (cached is not None and present.keys() == cached[0]
                and self._res_generation == generation):
            # same containers as last cycle: requests are unchanged; refresh a rolling
            # twelfth of the memory proxies (containers without API requests)
            cached_mem = cached[2]
            for key in cached[3][self._seq % MEMORY_REFRESH_CYCLES::MEMORY_REFRESH_CYCLES]:
                cached_mem[key] = float(self.cgroups.memory_bytes(present[key]) or 0)
            return cached[4]
        cpu: dict[ContainerKey, float] = {}
        mem: dict[ContainerKey, float] = {}
        proxied: list[ContainerKey] = []
        metas: dict[str, PodMeta | None] = {}
        fallback: list[tuple[ContainerKey, ContainerCgroup]] = []
        for key, cg in present.items():
            uid = key[0]
            meta = metas[uid] if uid in metas else metas.setdefault(uid, self.pods.get(uid))
            if meta is not None and meta.released:
                # a finished pod's lingering cgroup: its requests are freed, so it takes no
                # idle share (SCI "resources reserved": only while they are reserved)
                cpu[key] = mem[key] = 0.0
                continue
            req = meta.requests.get(key[1]) if meta is not None else None
            if req is not None:
                cpu[key] = req[0]
                mem[key] = float(req[1])
                self._observe_weight(cg, req[0])
                continue
            fallback.append((key, cg))
        if self.cpu_weights.formula is not self._weight_formula:
            # the requests the API gave showed the runtime's other weight map: re-read
            self._weight_formula = self.cpu_weights.formula
            self._requests.clear()
        requests = self._requests
        for key, cg in fallback:
            r = requests.get(cg, -1.0)
            if r == -1.0:
                r = requests[cg] = self.cgroups.cpu_request_cores(cg, self.cpu_weights)
            cpu[key] = r or 0.0
            mem[key] = float(self._memory(cg))
            proxied.append(key)
        cpu_cap = float(self.cfg.cpu_count) if self.cfg.cpu_count else None
        mem_cap = (float(self.cfg.memory_capacity_bytes)
                   if self.cfg.memory_capacity_bytes else None)
        out = {Component.CPU.value: (cpu, cpu_cap), Component.DRAM.value: (mem, mem_cap),
               Component.OTHER.value: (cpu, cpu_cap)}
        # reusable while the container set stays the same and the pod cache does not change
        # (kube metadata can arrive late): only cache when every pod's metadata is settled
        if not self.cfg.kube or all(m is not None for m in metas.values()):
            self._res_cache = (set(present.keys()), cpu, mem, proxied, out)
            self._res_generation = generation
        else:
            self._res_cache = None
        return out

    def _observe_weight(self, cg: ContainerCgroup, request_cores: float) -> None:
        """Teach the weight map from a container whose request the API gives (one read of
        its cpu.weight in its lifetime; none on cgroup v1)."""
        if self.cgroups.version != 2 or cg in self._weight_seen:
            return
        self._weight_seen.add(cg)
        weight = self.cgroups.cpu_weight(cg)
        if weight is not None:
            self.cpu_weights.observe(request_cores, weight)

    def _memory(self, cg: ContainerCgroup) -> int:
        """memory.current, refreshed for about one container in MEMORY_REFRESH_CYCLES per
        cycle: a reservation proxy changes slowly, and one read per container per cycle
        would double the cycle's file reads."""
        cached = self._mem.get(cg)
        if cached is None or (self._seq + hash(cg.id)) % MEMORY_REFRESH_CYCLES == 0:
            cached = self.cgroups.memory_bytes(cg) or 0
            self._mem[cg] = cached
        return cached

    # -- snapshot -------------------------------------------------------------
    def _build_snapshot(self, rate: tuple[str, str, str, float] | None) -> Snapshot:
        led = self.ledger
        ctrs = tuple([
            (key, t.owner, tuple([(ck[0], ck[1], j, t.grams.get(ck)) for ck, j in t.joules.items()]))
            for key, t in led.containers.items()
        ])
        return Snapshot(
            seq=self._seq,
            node_name=self.cfg.node_name,
            node=tuple(led.node.items()),
            containers=ctrs,
            unallocated=tuple(led.unallocated.items()),
            sources=tuple(self._status.items()),
            intensity=rate,
            pue=self.emissions.pue,
            idle_policy=self.cfg.idle_policy.value,
            cpu_weight_map=(self.cpu_weights.formula.value if self.cgroups.version == 2
                            else "v1-shares"),
            cpu_weight_basis=self.cpu_weights.basis if self.cgroups.version == 2 else "exact",
            intensity_fallback=self._fallback_info,
        )
