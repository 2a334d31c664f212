"""A container's CPU request from its cgroup v2 ``cpu.weight`` (or v1 ``cpu.shares``).

Only a fallback: the pod spec's requests are used whenever the API gives them. The chain is
kubelet request -> CPU shares -> weight:

* kubelet ``MilliCPUToShares``: ``shares = millicores * 1024 // 1000``, at least 2
  (besteffort and containers without a CPU request get the floor 2).
* The runtime converts shares to a v2 weight. Two maps are in use:

  - LINEAR, runc < 1.3.2 and crun < 1.23: ``1 + (shares - 2) * 9999 // 262142``
    (opencontainers/cgroups ``utils.go`` before commit
    ``fd95216684463f30144d5f5e41b6f54528feedee``; crun ``src/libcrun/cgroup-internal.h``
    before ``4998c928494c563f8d06494a1f2ed3443de29c2b``). 1 core (1024 shares) -> 39.
  - QUADRATIC, runc >= 1.3.2 (vendors opencontainers/cgroups with PR #20, merge
    ``33e090fdc163aac2782b11978062f0cc7bc26abc``, commit ``fd952166...``, ``utils.go``
    ``ConvertCPUSharesToCgroupV2Value``; runc issue #4896) and crun >= 1.23 (commit
    ``4998c928...`` ``convert_shares_to_weight``): with ``l = log2(shares)``,
    ``ceil(10 ** ((l*l + 125*l) / 612 - 7/34))``, 2 -> 1, >= 262144 -> 10000.
    1 core -> 100, the v2 default weight.

  Reading a quadratic weight with the linear inverse overstates a 1-core request ~2.5x
  (100 -> 2.53 cores). Both forward maps here equal the runtimes' own code for every
  shares value 0..262145 (checked by running the Go function and crun's C function; see
  tests/unit/exporter/test_cpu_weight.py).

Which map a node's runtime uses is not written anywhere in the cgroup tree. ``auto`` learns
it from containers whose requests the API gives (their weight matches one map's forward
value, not the other's); with no such container it assumes QUADRATIC, today's runtimes.
v1 ``cpu.shares`` is the kubelet's value itself: no map is involved.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from carbontrack.core.cpu_shares import (
    SHARES_MAX,
    SHARES_MIN,
    SHARES_PER_CPU,
    kubelet_shares,
    linear_weight,
    quadratic_weight,
)


class WeightFormula(Enum):
    LINEAR = "linear"
    QUADRATIC = "quadratic"


FORMULA_RUNTIMES = {
    WeightFormula.LINEAR: "runc<1.3.2, crun<1.23",
    WeightFormula.QUADRATIC: "runc>=1.3.2, crun>=1.23",
}

_FORWARD = {WeightFormula.LINEAR: linear_weight, WeightFormula.QUADRATIC: quadratic_weight}


def shares_for_weight(weight: int, formula: WeightFormula) -> float:
    """The middle of the shares range the runtime maps to ``weight`` (the maps floor or
    ceil, so one weight stands for a range of shares)."""
    forward = _FORWARD[formula]
    lo = _first_shares_at_least(forward, weight)
    hi = _first_shares_at_least(forward, weight + 1) - 1
    if hi < lo:  # a weight this map never writes: the nearest shares above it
        return float(lo)
    return (lo + hi) / 2


def _first_shares_at_least(forward: Callable[[int], int], weight: int) -> int:
    """Smallest shares in [2, 262144] whose weight is >= ``weight`` (262145 if none);
    both maps are non-decreasing, so a binary search (18 steps) finds it."""
    lo, hi = SHARES_MIN, SHARES_MAX + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if forward(mid) >= weight:
            hi = mid
        else:
            lo = mid + 1
    return lo


def cores_from_weight(weight: int, formula: WeightFormula) -> float:
    """The CPU request (cores) behind a v2 ``cpu.weight``; 0 at the floor weight 1."""
    if weight <= 1:
        return 0.0  # besteffort pods, sandboxes, containers without a CPU request
    return shares_for_weight(weight, formula) / SHARES_PER_CPU


def cores_from_shares(shares: int) -> float:
    """The CPU request (cores) behind a v1 ``cpu.shares`` (the kubelet's own value)."""
    return 0.0 if shares <= SHARES_MIN else shares / SHARES_PER_CPU


class CpuWeightMap:
    """Which weight map this node's runtime uses: configured, or learned (``auto``).

    ``observe`` takes containers whose request the API gives; the map whose forward value
    matches more of their weights wins. ``label`` says which map is in use and why.
    """

    def __init__(self, setting: str = "auto") -> None:
        if setting not in ("auto", "linear", "quadratic"):
            raise ValueError(f"cpu weight formula {setting!r}: expected auto, linear or quadratic")
        self._configured = None if setting == "auto" else WeightFormula(setting)
        self._votes = {WeightFormula.LINEAR: 0, WeightFormula.QUADRATIC: 0}

    @property
    def formula(self) -> WeightFormula:
        if self._configured is not None:
            return self._configured
        lin, quad = self._votes[WeightFormula.LINEAR], self._votes[WeightFormula.QUADRATIC]
        return WeightFormula.LINEAR if lin > quad else WeightFormula.QUADRATIC

    @property
    def basis(self) -> str:
        """configured | matched | assumed: how ``formula`` was chosen."""
        if self._configured is not None:
            return "configured"
        return "matched" if any(self._votes.values()) else "assumed"

    @property
    def label(self) -> str:
        f = self.formula
        return f"{f.value} ({FORMULA_RUNTIMES[f]}; {self.basis})"

    def observe(self, request_cores: float, weight: int) -> None:
        """One container with a known request and its cgroup weight."""
        shares = kubelet_shares(request_cores)
        lin = linear_weight(shares) == weight
        quad = quadratic_weight(shares) == weight
        if lin != quad:  # equal at the floor (1) and wherever the maps agree: no evidence
            self._votes[WeightFormula.LINEAR if lin else WeightFormula.QUADRATIC] += 1

    def cores(self, weight: int) -> float:
        return cores_from_weight(weight, self.formula)
