"""Attribution of one interval: pure functions over what the reading pass read.

The result is an ordered list of steps — give these joules to these containers, or leave
these unallocated — that exporter/booking.py applies to the ledger in that order. Per
component (cpu, dram, other, gpu) the steps' joules add up to the node's delta:
``sum(containers) + unallocated == node energy`` (attribution.py, gpu_attribution.py).
No files, no clocks: tests drive it with plain values.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from carbontrack.core.types import Component, EnergyReading, Method

from .attribution import IdlePolicy, split_energy
from .gpu_attribution import GpuUnit, GpuUse, mig_units, split_unit
from .reading import GpuTopology
from .state import ContainerKey

_METHOD_RANK = {Method.MEASURED.value: 0, Method.SAMPLED.value: 1, Method.ESTIMATED.value: 2}
_CPU_LIKE = (Component.CPU.value, Component.DRAM.value, Component.OTHER.value)


@dataclass(frozen=True, slots=True)
class Give:
    component: str
    method: str
    items: Collection[tuple[ContainerKey, float]]


@dataclass(frozen=True, slots=True)
class Unallocated:
    component: str
    joules: float


Step = Give | Unallocated


@dataclass(frozen=True)
class IntervalInputs:
    interval_s: float
    deltas: Sequence[tuple[EnergyReading, float]]  # joules per device this interval
    cpu_usage_s: Mapping[ContainerKey, float]  # CPU seconds per container
    root_busy_s: float | None  # the root cgroup's CPU seconds (None: sum the containers)
    cpu_count: int | None
    idle_policy: IdlePolicy
    # component -> (reserved per container, node capacity); {} unless policy is reserved
    reserved: Mapping[str, tuple[Mapping[ContainerKey, float], float | None]]
    topology: GpuTopology
    pid_keys: Mapping[int, ContainerKey | None]  # GPU process -> its container


def needs_reservations(deltas: Sequence[tuple[EnergyReading, float]]) -> bool:
    """Whether the idle split will ask for reservations (a CPU-like component has energy)."""
    return any(r.component.value in _CPU_LIKE for r, _ in deltas)


def needs_pids(deltas: Sequence[tuple[EnergyReading, float]]) -> bool:
    return any(r.component is Component.GPU for r, _ in deltas)


def attribute(inp: IntervalInputs) -> list[Step]:
    """The interval's steps: CPU-like components by usage and reservations, then GPUs."""
    by_comp: dict[str, list[tuple[EnergyReading, float]]] = {}
    for r, d in inp.deltas:
        by_comp.setdefault(r.component.value, []).append((r, d))
    steps: list[Step] = []
    dt = max(1e-9, inp.interval_s)
    busy = inp.root_busy_s if inp.root_busy_s is not None else sum(inp.cpu_usage_s.values())
    frac = 1.0 if not inp.cpu_count else busy / (dt * inp.cpu_count)
    for comp in _CPU_LIKE:
        items = by_comp.get(comp)
        if not items:
            continue
        energy = sum(d for _, d in items)
        method = max((r.method.value for r, _ in items), key=_METHOD_RANK.__getitem__)
        reserved, capacity = inp.reserved.get(comp, ({}, None))
        split = split_energy(
            energy, active_fraction=frac, node_busy_s=busy, usage_s=inp.cpu_usage_s,
            reserved=reserved, capacity=capacity, policy=inp.idle_policy,
        )
        steps.append(Give(comp, method, split.containers.items()))
        steps.append(Unallocated(comp, split.unallocated))
    gpu_items = by_comp.get(Component.GPU.value)
    if gpu_items:
        steps += attribute_gpus(gpu_items, inp.topology, inp.pid_keys)
    return steps


def attribute_gpus(items: Sequence[tuple[EnergyReading, float]], topo: GpuTopology,
                   pid_keys: Mapping[int, ContainerKey | None]) -> list[Step]:
    """Each physical GPU's energy: whole, or over its sub-devices (MIG instances, AMD
    partitions: estimated shares), then per unit by allocation and processes; vendor-neutral
    (a reading's device is the id the vendor's device plugin allocates)."""
    comp = Component.GPU.value
    uses: dict[str, list[GpuUse[ContainerKey]]] = {}
    for unit, pid, util, mem in topo.processes:
        uses.setdefault(unit, []).append(GpuUse(unit, pid_keys.get(pid), util, mem))
    steps: list[Step] = []
    for r, d in items:
        instances = topo.mig.get(r.device)
        if instances:
            units, rest = mig_units(d, instances, topo.total_slices.get(r.device, 7.0))
            steps.append(Unallocated(comp, rest))
        else:
            units = [GpuUnit(r.device, d, False)]
        for u in units:
            method = Method.ESTIMATED.value if u.estimated else r.method.value
            s = split_unit(u, topo.allocations.get(u.uuid, ()), uses.get(u.uuid, ()))
            steps += [Give(comp, method, ((k, j),)) for k, j in s.containers.items()]
            steps.append(Unallocated(comp, s.unallocated))
    return steps
