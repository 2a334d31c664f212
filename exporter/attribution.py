"""Splitting one component's node energy over one interval among containers. Pure functions.

Rules (docs/exporter.md "Attribution"), for one component (cpu or dram) and one interval:

1. The node energy ``E`` is split into active ``A = E * active_fraction`` and idle ``E - A``.
   The exporter passes the node's CPU busy fraction (busy CPU seconds / (interval * CPUs)):
   a linear utilisation model. Without a CPU count it passes 1.0 (all active).
2. Active energy goes to containers by their share of the node's busy CPU time:
   ``A * usage_i / max(node_busy, sum(usage))``. Time spent outside pods (system.slice,
   user.slice, the kernel) keeps its share, which stays unallocated.
3. Idle energy follows ``IdlePolicy``:
   ``reserved`` (default, the SCI "resources reserved" rule): ``idle * r_i / max(capacity,
   sum(r))`` with r_i the container's request (CPU cores, memory bytes) and capacity the
   node's; unreserved capacity stays unallocated. A finished pod (Succeeded, Failed or
   deleted) reserves nothing, though its cgroup may linger: the engine passes r_i = 0.
   ``even``: equal parts to every present container. ``none``: all idle energy stays unallocated.
4. Unallocated = E - sum(containers), so ``sum(containers) + unallocated == E`` exactly up to
   float rounding, and no container share is ever negative.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from enum import Enum
from itertools import repeat
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class IdlePolicy(str, Enum):
    RESERVED = "reserved"
    EVEN = "even"
    NONE = "none"


@dataclass(frozen=True)
class Split(Generic[K]):
    """Joules per container for one component and interval, plus what no container gets."""

    containers: dict[K, float]
    unallocated: float
    active: float
    idle: float


def split_energy(
    energy_j: float,
    *,
    active_fraction: float,
    node_busy_s: float,
    usage_s: Mapping[K, float],
    reserved: Mapping[K, float],
    capacity: float | None,
    policy: IdlePolicy,
) -> Split[K]:
    """Split ``energy_j`` among the containers in ``usage_s`` (CPU seconds this interval).

    ``reserved`` maps containers to their request in the unit of ``capacity``; containers
    absent from ``usage_s`` get nothing. Negative or NaN inputs count as zero.
    """
    energy = _nonneg(energy_j)
    frac = min(1.0, _nonneg(active_fraction))
    active = energy * frac
    idle = energy - active
    # hot loops (one pass per container): the clamp to >= 0 is inlined; NaN fails "u > 0"
    total_use = sum([u for u in usage_s.values() if u > 0])
    denom = max(_nonneg(node_busy_s), total_use)
    out: dict[K, float]
    if denom > 0 and active > 0:
        scale = active / denom
        out = {k: u * scale if u > 0 else 0.0 for k, u in usage_s.items()}
    else:
        out = dict.fromkeys(usage_s, 0.0)

    if idle > 0 and out:
        if policy is IdlePolicy.EVEN:
            each = idle / len(out)
            for k in out:
                out[k] += each
        elif policy is IdlePolicy.RESERVED and capacity is not None and capacity > 0:
            # requests in container order, looked up at C speed (map) rather than one
            # Python-level get per container
            res = list(map(reserved.get, out, repeat(0.0)))
            per = idle / max(capacity, sum([r for r in res if r > 0]))
            for k, r in zip(out, res, strict=True):
                if r > 0:
                    out[k] += r * per

    allocated = sum(out.values())
    if allocated > energy:  # float rounding only (shares sum to <= 1): trim the largest
        kmax = max(out, key=out.__getitem__)
        out[kmax] -= allocated - energy
        allocated = energy
    return Split(out, energy - allocated, active, idle)


def _nonneg(x: float) -> float:
    return x if x > 0 else 0.0  # NaN > 0 is False, so NaN -> 0
