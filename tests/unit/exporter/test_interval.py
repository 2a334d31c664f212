"""Attribution of one interval without files: plain readings, usage, reservations and GPU
topology in, ordered steps out; conservation per component is the invariant."""

from __future__ import annotations

from collections import defaultdict

import pytest
from carbontrack.exporter.attribution import IdlePolicy
from carbontrack.exporter.interval import (
    Give,
    IntervalInputs,
    Unallocated,
    attribute,
    needs_pids,
    needs_reservations,
)
from carbontrack.exporter.reading import GpuTopology
from hypothesis import given, settings
from hypothesis import strategies as st

from carbontrack.core.types import Component, EnergyReading, Method

A, B = ("pod-a", "train"), ("pod-b", "infer")


def reading(comp: Component, device: str, method: Method = Method.MEASURED) -> EnergyReading:
    return EnergyReading(comp, device, 0.0, method)


def totals(steps: list[Give | Unallocated]) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    per_comp: dict[str, float] = defaultdict(float)
    per_key: dict[tuple[str, str], float] = defaultdict(float)
    for s in steps:
        if isinstance(s, Give):
            for k, j in s.items:
                per_comp[s.component] += j
                per_key[(k[0], s.component)] += j
        else:
            per_comp[s.component] += s.joules
    return dict(per_comp), dict(per_key)


def inputs(**kw: object) -> IntervalInputs:
    base: dict[str, object] = dict(
        interval_s=10.0, deltas=[], cpu_usage_s={}, root_busy_s=None, cpu_count=4,
        idle_policy=IdlePolicy.RESERVED, reserved={}, topology=GpuTopology(), pid_keys={})
    base.update(kw)
    return IntervalInputs(**base)  # type: ignore[arg-type]


def test_cpu_by_usage_and_idle_by_reservation() -> None:
    # 20 of 40 core-seconds busy: half the 400 J is active (by usage 3:1), half idle (by
    # requests 1:1 of 4 cores: half of the idle energy is reserved by nobody)
    steps = attribute(inputs(
        deltas=[(reading(Component.CPU, "package-0"), 400.0)],
        cpu_usage_s={A: 15.0, B: 5.0}, root_busy_s=20.0,
        reserved={"cpu": ({A: 1.0, B: 1.0}, 4.0)}))
    per_comp, per_key = totals(steps)
    assert per_comp == {"cpu": pytest.approx(400.0)}
    assert per_key[("pod-a", "cpu")] == pytest.approx(150.0 + 50.0)
    assert per_key[("pod-b", "cpu")] == pytest.approx(50.0 + 50.0)
    assert steps[-1] == Unallocated("cpu", pytest.approx(100.0))


def test_gpu_partitions_processes_and_allocations() -> None:
    topo = GpuTopology(
        mig={"0000:c2:00.0": [("0000:c2:00.0", 1.0), ("0000:c2:00.1", 1.0)]},
        total_slices={"0000:c2:00.0": 2.0},
        processes=[("0000:c1:00.0", 11, 60.0, None), ("0000:c2:00.1", 22, None, 1 << 30)],
        allocations={"0000:c1:00.0": [A]})
    steps = attribute(inputs(
        deltas=[(reading(Component.GPU, "0000:c1:00.0"), 500.0),
                (reading(Component.GPU, "0000:c2:00.0"), 300.0)],
        topology=topo, pid_keys={11: A, 22: B}))
    per_comp, per_key = totals(steps)
    assert per_comp == {"gpu": pytest.approx(800.0)}
    assert per_key == {("pod-a", "gpu"): pytest.approx(500.0),  # allocated, exclusively
                       ("pod-b", "gpu"): pytest.approx(150.0)}  # its partition's half
    methods = {s.method for s in steps if isinstance(s, Give) and s.items}
    assert methods == {"measured", "estimated"}  # a partition's share is an estimate


def test_what_needs_reading() -> None:
    cpu = [(reading(Component.CPU, "p0"), 1.0)]
    gpu = [(reading(Component.GPU, "g0"), 1.0)]
    assert needs_reservations(cpu) and not needs_reservations(gpu)
    assert needs_pids(gpu) and not needs_pids(cpu)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=4),
       st.dictionaries(st.sampled_from(["a", "b", "c"]), st.floats(0, 100), max_size=3),
       st.sampled_from(list(IdlePolicy)), st.floats(0, 1e6))
def test_every_component_is_conserved(cpu_j: list[float], usage: dict[str, float],
                                      policy: IdlePolicy, gpu_j: float) -> None:
    deltas = [(reading(Component.CPU, f"package-{i}"), j) for i, j in enumerate(cpu_j)]
    deltas.append((reading(Component.GPU, "GPU-x"), gpu_j))
    keys = {name: (name, "c") for name in usage}
    steps = attribute(inputs(
        deltas=deltas, cpu_usage_s={keys[n]: s for n, s in usage.items()}, idle_policy=policy,
        reserved={"cpu": ({k: 1.0 for k in keys.values()}, 4.0)},
        topology=GpuTopology(processes=[("GPU-x", 1, 50.0, None)]), pid_keys={1: ("a", "c")}))
    per_comp, _ = totals(steps)
    assert per_comp["cpu"] == pytest.approx(sum(cpu_j), rel=1e-9, abs=1e-6)
    assert per_comp["gpu"] == pytest.approx(gpu_j, rel=1e-9, abs=1e-6)
