"""Splitting GPU energy over one interval among containers. Pure functions.

Accounting units are whole GPUs, or MIG instances of a MIG-enabled GPU. NVML measures energy
per *physical* GPU only, so a MIG instance's energy is an estimate: the parent's energy times
the instance's share of the parent's compute slices (``mig_units``); those joules carry
method ``estimated``. Slices no instance holds leave their energy unallocated.

Per unit (docs/exporter.md "Attribution"):

- **exclusive**: allocated to exactly one container (kubelet pod-resources), or, without
  pod-resources, every process on it belongs to one container: all its energy, idle
  included, is that container's;
- **shared** (time-sliced, several containers): active energy ``E * min(1, sum(sm)/100)`` by
  each container's per-process SM utilisation; the idle rest evenly among the containers
  sharing it. Processes whose container is unknown (vanished PIDs, non-pod processes) keep
  their active share unallocated. Without any SM utilisation (NotSupported) all energy is
  treated as idle and split evenly;
- **shared-memory** (a MIG instance several containers share): NVML gives no utilisation on
  MIG-enabled GPUs (nvml.h, nvmlDeviceGetUtilizationRates and
  nvmlDeviceGetProcessUtilization: "not currently supported"), only the running processes
  per instance and their used memory. The instance's (already estimated) energy is split
  by each process's share of the memory used on it; the share of processes without a known
  container stays unallocated; with no memory figure at all, evenly. Labelled estimated;
- **nobody**: no allocation and no processes: unallocated.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class GpuUnit:
    uuid: str  # GPU-… or MIG-…
    energy_j: float
    estimated: bool  # True for MIG instances (energy split from the parent by slices)


@dataclass(frozen=True)
class GpuUse(Generic[K]):
    """One process on a unit this interval. ``owner`` is None when it maps to no container."""

    unit_uuid: str
    owner: K | None
    sm_util_percent: float | None
    used_memory_bytes: int | None = None  # what MIG instances offer instead of utilisation


@dataclass(frozen=True)
class GpuSplit(Generic[K]):
    containers: dict[K, float]
    unallocated: float
    mode: str  # exclusive | shared | shared-memory | idle


def mig_units(
    parent_energy_j: float, instances: Sequence[tuple[str, float]], total_slices: float
) -> tuple[list[GpuUnit], float]:
    """Estimate each MIG instance's energy from its parent's by slice share.

    ``instances`` are (MIG uuid, compute slices); ``total_slices`` is the parent's slice count
    (7 on A100/H100). Returns the units and the parent energy no instance holds.
    """
    e = max(0.0, parent_energy_j)
    denom = max(total_slices, sum(max(0.0, w) for _, w in instances))
    if denom <= 0:
        return [], e
    units = [GpuUnit(u, e * max(0.0, w) / denom, True) for u, w in instances]
    return units, max(0.0, e - sum(u.energy_j for u in units))


def split_unit(unit: GpuUnit, allocated: Iterable[K], uses: Sequence[GpuUse[K]]) -> GpuSplit[K]:
    """Split one unit's energy among containers (see the module doc for the rules)."""
    e = max(0.0, unit.energy_j)
    owners = list(dict.fromkeys(allocated))
    # without an allocation, one known container next to unknown processes is still sharing
    unknown_procs = not owners and any(u.owner is None for u in uses)
    if not owners:
        owners = list(dict.fromkeys(u.owner for u in uses if u.owner is not None))
    owners_shared = len(owners) > 1 or unknown_procs
    if not owners:
        return GpuSplit({}, e, "idle")
    if not owners_shared:
        return GpuSplit({owners[0]: e}, 0.0, "exclusive")
    if unit.estimated:  # a MIG instance: no utilisation exists, memory does
        return _split_by_memory(e, owners, uses)

    out: dict[K, float] = dict.fromkeys(owners, 0.0)
    sm = [(u.owner, u.sm_util_percent) for u in uses if u.sm_util_percent is not None]
    total_sm = sum(max(0.0, s) for _, s in sm)
    active = e * min(1.0, total_sm / 100.0) if sm else 0.0
    if total_sm > 0:
        for owner, s in sm:
            if owner is not None and owner in out:
                out[owner] += active * max(0.0, s) / total_sm
    idle = e - active
    each = idle / len(out)
    for k in out:
        out[k] += each
    allocated_j = sum(out.values())
    if allocated_j > e:  # float rounding only
        kmax = max(out, key=out.__getitem__)
        out[kmax] -= allocated_j - e
        allocated_j = e
    return GpuSplit(out, e - allocated_j, "shared")


def _split_by_memory(e: float, owners: Sequence[K], uses: Sequence[GpuUse[K]]) -> GpuSplit[K]:
    """A shared MIG instance: energy by each process's share of the memory used on it."""
    out: dict[K, float] = dict.fromkeys(owners, 0.0)
    mem = [(u.owner, u.used_memory_bytes) for u in uses if u.used_memory_bytes and u.used_memory_bytes > 0]
    total = float(sum(m for _, m in mem))
    if total <= 0:
        each = e / len(out)
        return GpuSplit(dict.fromkeys(out, each), 0.0, "shared-memory")
    for owner, m in mem:
        if owner is not None and owner in out:
            out[owner] += e * m / total
    return GpuSplit(out, max(0.0, e - sum(out.values())), "shared-memory")
