"""Attribution of one component's interval energy: exact splits and the conservation invariant."""

from __future__ import annotations

import random

import pytest
from carbontrack.exporter.attribution import IdlePolicy, split_energy


def test_active_by_cpu_share_idle_by_reservation() -> None:
    # 1000 J, node 50 % busy -> 500 J active, 500 J idle; node busy time 40 s of which the
    # containers used 30 s; 8 CPUs, requests 2 and 0 cores
    s = split_energy(1000.0, active_fraction=0.5, node_busy_s=40.0,
                     usage_s={"a": 20.0, "b": 10.0}, reserved={"a": 2.0, "b": 0.0},
                     capacity=8.0, policy=IdlePolicy.RESERVED)
    assert s.active == 500.0 and s.idle == 500.0
    assert s.containers == {"a": 500 * 20 / 40 + 500 * 2 / 8, "b": 500 * 10 / 40}
    assert s.containers["a"] == 375.0 and s.containers["b"] == 125.0
    assert s.unallocated == 500.0  # 10 s system time (125 J) + 6 unreserved cores (375 J)


def test_even_and_none_policies() -> None:
    kw = dict(active_fraction=0.25, node_busy_s=10.0, usage_s={"a": 5.0, "b": 5.0},
              reserved={}, capacity=None)
    even = split_energy(400.0, policy=IdlePolicy.EVEN, **kw)  # type: ignore[arg-type]
    assert even.containers == {"a": 50.0 + 150.0, "b": 50.0 + 150.0}
    assert even.unallocated == 0.0
    none = split_energy(400.0, policy=IdlePolicy.NONE, **kw)  # type: ignore[arg-type]
    assert none.containers == {"a": 50.0, "b": 50.0}
    assert none.unallocated == 300.0


def test_overcommitted_requests_scale_down_to_the_idle_energy() -> None:
    s = split_energy(100.0, active_fraction=0.0, node_busy_s=0.0, usage_s={"a": 0.0, "b": 0.0},
                     reserved={"a": 6.0, "b": 10.0}, capacity=8.0, policy=IdlePolicy.RESERVED)
    assert s.containers == {"a": 37.5, "b": 62.5}
    assert s.unallocated == 0.0


def test_container_usage_above_node_busy_is_normalised_not_overcounted() -> None:
    # counters read at slightly different instants: the containers' sum may exceed the root's
    s = split_energy(90.0, active_fraction=1.0, node_busy_s=2.0, usage_s={"a": 2.0, "b": 1.0},
                     reserved={}, capacity=None, policy=IdlePolicy.RESERVED)
    assert s.containers == {"a": 60.0, "b": 30.0}
    assert s.unallocated == 0.0


def test_garbage_inputs_never_give_negative_energy() -> None:
    s = split_energy(-5.0, active_fraction=float("nan"), node_busy_s=-1.0,
                     usage_s={"a": -3.0}, reserved={"a": -1.0}, capacity=4.0,
                     policy=IdlePolicy.RESERVED)
    assert s.containers == {"a": 0.0} and s.unallocated == 0.0


def test_no_containers_means_everything_unallocated() -> None:
    s = split_energy(42.0, active_fraction=0.7, node_busy_s=3.0, usage_s={}, reserved={},
                     capacity=4.0, policy=IdlePolicy.EVEN)
    assert s.containers == {} and s.unallocated == 42.0


@pytest.mark.parametrize("policy", list(IdlePolicy))
@pytest.mark.parametrize("seed", range(200))
def test_conservation_over_random_inputs(seed: int, policy: IdlePolicy) -> None:
    """INVARIANT: sum(containers) + unallocated == node energy, every share >= 0."""
    rng = random.Random(seed)
    n = rng.randint(0, 60)
    usage = {f"c{i}": rng.choice([0.0, rng.uniform(0, 50), rng.expovariate(0.1)])
             for i in range(n)}
    reserved = {k: rng.choice([0.0, rng.uniform(0, 16)]) for k in usage}
    energy = rng.choice([0.0, rng.uniform(0, 1e6), rng.uniform(0, 1e-3)])
    s = split_energy(energy, active_fraction=rng.uniform(0, 1.2),
                     node_busy_s=rng.uniform(0, 500), usage_s=usage, reserved=reserved,
                     capacity=rng.choice([None, 0.0, rng.uniform(1, 128)]), policy=policy)
    assert set(s.containers) == set(usage)
    assert all(v >= 0 for v in s.containers.values())
    assert s.unallocated >= 0
    assert sum(s.containers.values()) + s.unallocated == pytest.approx(energy, rel=1e-12,
                                                                          abs=1e-12)
