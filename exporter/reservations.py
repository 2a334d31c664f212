"""What each container has reserved, for the idle split (``--idle-policy reserved``).

CPU cores and memory bytes from the pod spec; without the API, CPU from the cgroup's
weight/shares (read once per cgroup) and memory from memory.current (refreshed now and then)
as the reservation proxy. Part of the reading pass: the files are read here, the split in
exporter/attribution.py is pure.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from carbontrack.core.types import Component

from .attribution import IdlePolicy
from .cgroups import CgroupReader, ContainerCgroup
from .cpu_weight import CpuWeightMap
from .pods import PodCache, PodMeta
from .state import ContainerKey

MEMORY_REFRESH_CYCLES = 12

# component -> (reserved amount per container, node capacity or None)
Reserved = dict[str, tuple[dict[ContainerKey, float], float | None]]


class Reservations:
    def __init__(self, cgroups: CgroupReader, pods: PodCache, *, policy: IdlePolicy,
                 cpu_count: int | None, memory_capacity_bytes: int | None, kube: bool,
                 cpu_weights: CpuWeightMap | None = None) -> None:
        self.cgroups = cgroups
        self.pods = pods
        self.policy = policy
        self.cpu_count = cpu_count
        self.memory_capacity_bytes = memory_capacity_bytes
        self.kube = kube
        # which runtime shares->weight map a v2 weight is read back with (fallback only)
        self.cpu_weights = cpu_weights if cpu_weights is not None else CpuWeightMap()
        self._weight_formula = self.cpu_weights.formula
        self._weight_seen: set[ContainerCgroup] = set()  # weights already observed
        self._requests: dict[ContainerCgroup, float | None] = {}
        self._mem: dict[ContainerCgroup, int] = {}
        self._cache: tuple[set[ContainerKey], dict[ContainerKey, float],
                           dict[ContainerKey, float], list[ContainerKey], Reserved] | None = None
        self._generation = -1  # pod cache generation the reservations were built at

    def for_cycle(self, present: Mapping[ContainerKey, ContainerCgroup], seq: int) -> Reserved:
        """Requests per container for the idle split, per component, with node capacity."""
        if self.policy is not IdlePolicy.RESERVED:
            return {}
        cached = self._cache
        generation = self.pods.generation  # before any lookup: a later change rebuilds
        if (cached is not None and present.keys() == cached[0]
                and self._generation == generation):
            # same containers as last cycle: requests are unchanged; refresh a rolling
            # twelfth of the memory proxies (containers without API requests)
            cached_mem = cached[2]
            for key in cached[3][seq % MEMORY_REFRESH_CYCLES::MEMORY_REFRESH_CYCLES]:
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
            mem[key] = float(self._memory(cg, seq))
            proxied.append(key)
        cpu_cap = float(self.cpu_count) if self.cpu_count else None
        mem_cap = float(self.memory_capacity_bytes) if self.memory_capacity_bytes else None
        out: Reserved = {Component.CPU.value: (cpu, cpu_cap), Component.DRAM.value: (mem, mem_cap),
                         Component.OTHER.value: (cpu, cpu_cap)}
        # reusable while the container set stays the same and the pod cache does not change
        # (kube metadata can arrive late): only cache when every pod's metadata is settled
        if not self.kube or all(m is not None for m in metas.values()):
            self._cache = (set(present.keys()), cpu, mem, proxied, out)
            self._generation = generation
        else:
            self._cache = None
        return out

    def prune(self, live: Collection[ContainerCgroup]) -> None:
        """Forget cgroups that are gone (the per-cgroup caches stay bounded by live ones)."""
        if len(self._requests) > len(live):
            self._requests = {cg: r for cg, r in self._requests.items() if cg in live}
        if len(self._weight_seen) > len(live):
            self._weight_seen = {cg for cg in self._weight_seen if cg in live}
        if len(self._mem) > len(live):
            self._mem = {cg: m for cg, m in self._mem.items() if cg in live}

    def _observe_weight(self, cg: ContainerCgroup, request_cores: float) -> None:
        """Teach the weight map from a container whose request the API gives (one read of
        its cpu.weight in its lifetime; none on cgroup v1)."""
        if self.cgroups.version != 2 or cg in self._weight_seen:
            return
        self._weight_seen.add(cg)
        weight = self.cgroups.cpu_weight(cg)
        if weight is not None:
            self.cpu_weights.observe(request_cores, weight)

    def _memory(self, cg: ContainerCgroup, seq: int) -> int:
        """memory.current, refreshed for about one container in MEMORY_REFRESH_CYCLES per
        cycle: a reservation proxy changes slowly, and one read per container per cycle
        would double the cycle's file reads."""
        cached = self._mem.get(cg)
        if cached is None or (seq + hash(cg.id)) % MEMORY_REFRESH_CYCLES == 0:
            cached = self.cgroups.memory_bytes(cg) or 0
            self._mem[cg] = cached
        return cached
