"""How Kubernetes and the container runtimes turn a CPU request into cgroup values.

kubelet request -> CPU shares (``kubelet_shares``: kubernetes pkg/kubelet/cm/helpers_linux.go
``MilliCPUToShares``) ->
cgroup v2 weight, by the runtime's map: ``linear_weight`` (runc < 1.3.2, crun < 1.23) or
``quadratic_weight`` (runc >= 1.3.2 via opencontainers/cgroups PR #20, crun >= 1.23).
Sources, commits and the check against the runtimes' code: carbontrack.exporter.cpu_weight.
Here (the lowest layer) so the simulator writes what runtimes write and the exporter reads
it back with the same functions.
"""

from __future__ import annotations

import math

SHARES_MIN = 2  # kubelet MinShares; kernel MIN_SHARES
SHARES_MAX = 262144  # kubelet MaxShares; kernel MAX_SHARES (1 << 18)
SHARES_PER_CPU = 1024


def linear_weight(shares: int) -> int:
    """The old runtimes' weight for ``shares`` (0 = unset)."""
    if shares == 0:
        return 0
    return 1 + (max(shares, SHARES_MIN) - 2) * 9999 // 262142


def quadratic_weight(shares: int) -> int:
    """Today's runtimes' weight for ``shares`` (0 = unset)."""
    if shares == 0:
        return 0
    if shares <= SHARES_MIN:
        return 1
    if shares >= SHARES_MAX:
        return 10000
    lg = math.log2(shares)
    return math.ceil(10 ** ((lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0))


def kubelet_shares(request_cores: float) -> int:
    """The shares the kubelet sets for a CPU request (MilliCPUToShares)."""
    millicores = round(request_cores * 1000)
    return min(SHARES_MAX, max(SHARES_MIN, millicores * SHARES_PER_CPU // 1000))
