"""GPU splits: exclusive, time-sliced (by SM utilisation), MIG estimates, vanished PIDs."""

from __future__ import annotations

import random

import pytest
from carbontrack.exporter.gpu_attribution import GpuUnit, GpuUse, mig_units, split_unit

G = "GPU-0000"


def test_exclusive_allocation_gets_everything_including_idle() -> None:
    s = split_unit(GpuUnit(G, 3000.0, False), ["a"], [])
    assert s.containers == {"a": 3000.0} and s.unallocated == 0.0 and s.mode == "exclusive"


def test_single_process_owner_without_pod_resources_is_exclusive() -> None:
    uses = [GpuUse(G, "a", 40.0), GpuUse(G, "a", 10.0)]
    s = split_unit(GpuUnit(G, 1000.0, False), [], uses)
    assert s.containers == {"a": 1000.0} and s.unallocated == 0.0


def test_time_sliced_gpu_split_by_sm_utilisation_idle_evenly() -> None:
    # 60 % busy in total: 600 J active split 45:15, 400 J idle split evenly
    uses = [GpuUse(G, "a", 45.0), GpuUse(G, "b", 15.0)]
    s = split_unit(GpuUnit(G, 1000.0, False), ["a", "b"], uses)
    assert s.containers == {"a": 450.0 + 200.0, "b": 150.0 + 200.0}
    assert s.unallocated == 0.0 and s.mode == "shared"


def test_vanished_pid_keeps_its_active_share_unallocated() -> None:
    # the third process's PID vanished before its cgroup could be read: owner unknown
    uses = [GpuUse(G, "a", 30.0), GpuUse(G, "b", 30.0), GpuUse(G, None, 40.0)]
    s = split_unit(GpuUnit(G, 1000.0, False), [], uses)
    assert s.containers == {"a": 300.0, "b": 300.0}
    assert s.unallocated == 400.0


def test_no_sm_utilisation_splits_all_energy_evenly() -> None:
    uses = [GpuUse(G, "a", None), GpuUse(G, "b", None)]
    s = split_unit(GpuUnit(G, 500.0, False), [], uses)
    assert s.containers == {"a": 250.0, "b": 250.0}


def test_idle_unallocated_gpu() -> None:
    s = split_unit(GpuUnit(G, 80.0, False), [], [])
    assert s.containers == {} and s.unallocated == 80.0 and s.mode == "idle"


def test_mig_instances_split_by_slices_rest_unallocated() -> None:
    # a 7-slice GPU with a 3g and a 2g instance: 2 slices unused
    units, rest = mig_units(700.0, [("MIG-a", 3.0), ("MIG-b", 2.0)], 7.0)
    assert [(u.uuid, u.energy_j, u.estimated) for u in units] == [
        ("MIG-a", 300.0, True), ("MIG-b", 200.0, True)]
    assert rest == 200.0


def test_shared_mig_instance_split_by_used_memory_not_utilisation() -> None:
    # MIG offers no utilisation (nvml.h); a stale SM figure must not be used. 3 GiB : 1 GiB
    # of memory used on the instance -> 300 J : 100 J; the vanished PID's 1 GiB -> 100 J
    # unallocated.
    gib = 1 << 30
    mig = GpuUnit("MIG-a", 500.0, True)
    uses = [GpuUse("MIG-a", "a", 99.0, 3 * gib), GpuUse("MIG-a", "b", 1.0, gib),
            GpuUse("MIG-a", None, None, gib)]
    s = split_unit(mig, [], uses)
    assert s.containers == {"a": 300.0, "b": 100.0}
    assert s.unallocated == 100.0 and s.mode == "shared-memory"


def test_shared_mig_instance_without_memory_figures_splits_evenly() -> None:
    s = split_unit(GpuUnit("MIG-a", 300.0, True), ["a", "b"], [])
    assert s.containers == {"a": 150.0, "b": 150.0} and s.unallocated == 0.0


@pytest.mark.parametrize("seed", range(100))
def test_gpu_conservation_over_random_units(seed: int) -> None:
    rng = random.Random(seed)
    e = rng.uniform(0, 5000)
    owners = [f"c{i}" for i in range(rng.randint(0, 5))]
    alloc = rng.sample(owners, rng.randint(0, len(owners)))
    uses = [GpuUse(G, rng.choice([*owners, None]), rng.choice([None, rng.uniform(0, 100)]))
            for _ in range(rng.randint(0, 8))]
    s = split_unit(GpuUnit(G, e, False), alloc, uses)
    assert all(v >= 0 for v in s.containers.values()) and s.unallocated >= 0
    assert sum(s.containers.values()) + s.unallocated == pytest.approx(e, rel=1e-12)
