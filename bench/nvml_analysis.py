"""Pure arithmetic for bench/bench_nvml_device.py: energy counter vs sampled power, and
per-process attribution against the counter. No NVML here, so it is tested on made-up series
(tests/unit/sources/test_nvml_device_bench.py).

A sample is ``(t_s, power_w, counter_j)``: one reading of nvmlDeviceGetPowerUsage and one
of nvmlDeviceGetTotalEnergyConsumption taken together by the sampler.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

Sample = tuple[float, float, float]

# Counter vs sampled integral, relative, per load. NVIDIA documents board power readings as
# accurate to +/-5 % on data-centre parts (the tolerance CarbonTrack's measured path carries,
# sources/nvml.py UNCERTAINTY_MEASURED); a bursty load sampled coarsely is held to the sampled
# path's +/-15 % (UNCERTAINTY_SAMPLED).
TOLERANCE = {"idle": 0.05, "steady": 0.05, "bursty": 0.15, "two-process": 0.05}
# Per-process energy (allocated + unallocated) must equal the counter's: an invariant, so
# only float rounding is allowed.
CONSERVATION_TOLERANCE = 1e-6
# Energy the attribution could not give to either known process, at most this share of the
# counter's (processes NVML lists under PIDs we do not know, or no utilisation samples).
UNALLOCATED_TOLERANCE = 0.10


def trapezoid(points: Sequence[tuple[float, float]]) -> float:
    """Integral of (t, value) points, trapezoid rule (joules from watts)."""
    return sum((v0 + v1) / 2.0 * (t1 - t0) for (t0, v0), (t1, v1) in pairwise(points))


def subsample(samples: Sequence[Sample], every_s: float) -> list[Sample]:
    """The samples a sampler running every ``every_s`` would have taken: the first, then each
    first sample at least ``every_s`` after the previously kept one."""
    out: list[Sample] = []
    for s in samples:
        if not out or s[0] - out[-1][0] >= every_s - 1e-9:
            out.append(s)
    return out


def in_window(samples: Sequence[Sample], t0: float, t1: float) -> list[Sample]:
    return [s for s in samples if t0 <= s[0] <= t1]


def compare_phase(samples: Sequence[Sample], t0: float, t1: float, intervals: Sequence[float],
                  tolerance: float) -> dict[str, Any]:  # fmt: skip
    """Counter energy over [t0, t1] vs the trapezoid integral of power sampled every interval.

    The counter's joules are the difference of its first and last reading in the window. A
    coarse sampler's points span less than the window: its mean power times the window's span
    is the energy it reports for the same span. ``rel_diff`` = (integral - counter) / counter."""
    win = in_window(samples, t0, t1)
    if len(win) < 2:
        return {"samples": len(win), "error": "fewer than 2 samples in the phase"}
    span = win[-1][0] - win[0][0]
    counter_j = win[-1][2] - win[0][2]
    out: dict[str, Any] = {
        "samples": len(win),
        "span_s": span,
        "counter_j": counter_j,
        "counter_mean_w": counter_j / span if span > 0 else 0.0,
        "tolerance": tolerance,
        "by_interval": {},
    }
    for every in intervals:
        sub = subsample(win, every)
        key = f"{every:g}"
        if len(sub) < 3:
            out["by_interval"][key] = {"samples": len(sub), "note": "phase too short for this interval"}
            continue
        sub_span = sub[-1][0] - sub[0][0]
        mean_w = trapezoid([(s[0], s[1]) for s in sub]) / sub_span
        integral_j = mean_w * span
        rel = (integral_j - counter_j) / counter_j if counter_j > 0 else float("nan")
        out["by_interval"][key] = {
            "samples": len(sub),
            "mean_w": mean_w,
            "integral_j": integral_j,
            "rel_diff": rel,
            "within_tolerance": abs(rel) <= tolerance,
        }
    return out


@dataclass(frozen=True)
class AttributionTick:
    """One attribution interval: the counter's joules over it and each process seen at its end
    as (pid, SM utilisation % or None)."""

    energy_j: float
    processes: tuple[tuple[int, float | None], ...]


SplitFn = Callable[[float, dict[int, str], tuple[tuple[int, float | None], ...]], tuple[dict[str, float], float]]


def attribute(ticks: Sequence[AttributionTick], owners: dict[int, str], split: SplitFn) -> dict[str, Any]:
    """Sum per-owner energy over the ticks with ``split`` (CarbonTrack's exporter split, passed
    in) and check it against the counter: allocated + unallocated = counter (conservation), and
    the unallocated share stays under UNALLOCATED_TOLERANCE."""
    per_owner: dict[str, float] = dict.fromkeys(owners.values(), 0.0)
    unallocated = 0.0
    counter = 0.0
    seen_pids: set[int] = set()
    for tick in ticks:
        shares, rest = split(tick.energy_j, owners, tick.processes)
        for owner, joules in shares.items():
            per_owner[owner] = per_owner.get(owner, 0.0) + joules
        unallocated += rest
        counter += tick.energy_j
        seen_pids.update(pid for pid, _ in tick.processes)
    allocated = sum(per_owner.values())
    conservation = abs(allocated + unallocated - counter) / counter if counter > 0 else 0.0
    unalloc_share = unallocated / counter if counter > 0 else 0.0
    return {
        "ticks": len(ticks),
        "counter_j": counter,
        "per_owner_j": per_owner,
        "per_owner_share": {k: (v / counter if counter > 0 else 0.0) for k, v in per_owner.items()},
        "unallocated_j": unallocated,
        "unallocated_share": unalloc_share,
        "conservation_error": conservation,
        "conservation_ok": conservation <= CONSERVATION_TOLERANCE,
        "unallocated_ok": unalloc_share <= UNALLOCATED_TOLERANCE,
        "unallocated_tolerance": UNALLOCATED_TOLERANCE,
        "pids_known": sorted(owners),
        "pids_seen_by_nvml": sorted(seen_pids),
        "pids_match": set(owners) <= seen_pids,
    }
