"""cgroup v2 cpu.weight <-> CPU request, both runtime maps (exporter/cpu_weight.py).

Expected weights come from the runtimes' own code, run on 2026-12-06:
* opencontainers/cgroups utils.go ``ConvertCPUSharesToCgroupV2Value`` at commit
  fd95216684463f30144d5f5e41b6f54528feedee (PR #20; runc >= 1.3.2), and the same function at
  its parent (the linear map of older runc), compiled with go1.26.8;
* crun src/libcrun/cgroup-internal.h ``convert_shares_to_weight`` at commit
  4998c928494c563f8d06494a1f2ed3443de29c2b (crun >= 1.23), compiled with gcc -lm.
Both were run for every shares value 0..262145 and agreed with the Python maps on all of them;
the table below is a sample of that output. The published test cases of
opencontainers/cgroups utils_test.go at fd952166 are in test_published_runtime_test_cases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from carbontrack.exporter.cgroups import CgroupReader
from carbontrack.exporter.cpu_weight import (
    CpuWeightMap,
    WeightFormula,
    cores_from_shares,
    cores_from_weight,
    shares_for_weight,
)

from carbontrack.core.cpu_shares import kubelet_shares, linear_weight, quadratic_weight

# shares -> (quadratic: Go fd952166 and crun 4998c928, linear: Go fd952166^)
RUNTIME_OUTPUT = {
    3: (2, 1),
    102: (17, 4),
    256: (35, 10),
    512: (59, 20),
    1000: (99, 39),
    1024: (100, 39),
    2048: (174, 79),
    4096: (303, 157),
    10240: (639, 391),
    65536: (3023, 2500),
    262143: (10000, 9999),
}


@pytest.mark.parametrize("shares", sorted(RUNTIME_OUTPUT))
def test_forward_maps_equal_the_runtimes_output(shares: int) -> None:
    assert (quadratic_weight(shares), linear_weight(shares)) == RUNTIME_OUTPUT[shares]


def test_published_runtime_test_cases() -> None:
    # opencontainers/cgroups utils_test.go TestConvertCPUSharesToCgroupV2Value at fd952166
    assert {s: quadratic_weight(s) for s in (0, 1, 2, 3, 1024, 262143, 262144, 262145)} == {
        0: 0, 1: 1, 2: 1, 3: 2, 1024: 100, 262143: 10000, 262144: 10000, 262145: 10000,
    }
    # the same test before it (linear): 0 -> 0, 2 -> 1, 262144 -> 10000
    assert (linear_weight(0), linear_weight(2), linear_weight(262144)) == (0, 1, 10000)


def test_kubelet_shares_follow_millicpu_to_shares() -> None:
    # pkg/kubelet/cm/helpers_linux.go MilliCPUToShares: milli*1024//1000, floor 2, cap 262144
    assert [kubelet_shares(c) for c in (0.0, 0.001, 0.1, 0.25, 1.0, 4.0, 300.0)] == [
        2, 2, 102, 256, 1024, 4096, 262144,
    ]


def test_inverse_takes_the_middle_of_the_shares_range_of_a_weight() -> None:
    # enumerating the maps: quadratic 100 <- shares 1012..1024, linear 39 <- 999..1024,
    # linear 100 <- 2598..2623, quadratic 17 <- 95..102
    assert shares_for_weight(100, WeightFormula.QUADRATIC) == 1018.0
    assert shares_for_weight(39, WeightFormula.LINEAR) == 1011.5
    assert shares_for_weight(100, WeightFormula.LINEAR) == 2610.5
    assert shares_for_weight(17, WeightFormula.QUADRATIC) == 98.5
    assert cores_from_weight(100, WeightFormula.QUADRATIC) == 1018 / 1024


def test_reading_a_quadratic_weight_with_the_linear_inverse_overstates_2_5x() -> None:
    # a 1-core request on runc >= 1.3.2 is weight 100; the old inverse reads 2.549 cores
    weight = quadratic_weight(kubelet_shares(1.0))
    assert weight == 100
    assert cores_from_weight(weight, WeightFormula.LINEAR) == 2610.5 / 1024
    assert cores_from_weight(weight, WeightFormula.LINEAR) / cores_from_weight(
        weight, WeightFormula.QUADRATIC) == pytest.approx(2.564, abs=1e-3)


@pytest.mark.parametrize("formula", list(WeightFormula))
@pytest.mark.parametrize("cores", [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 16.0, 64.0])
def test_round_trip_lands_in_the_requests_weight_range(formula: WeightFormula, cores: float) -> None:
    forward = quadratic_weight if formula is WeightFormula.QUADRATIC else linear_weight
    weight = forward(kubelet_shares(cores))
    back = cores_from_weight(weight, formula)
    # the inverse is a shares value the runtime would have written this same weight for
    assert forward(round(back * 1024)) == weight


def test_floor_weight_and_v1_shares() -> None:
    assert cores_from_weight(1, WeightFormula.QUADRATIC) == 0.0
    assert cores_from_weight(1, WeightFormula.LINEAR) == 0.0
    assert [cores_from_shares(s) for s in (2, 512, 1024, 4096)] == [0.0, 0.5, 1.0, 4.0]


def test_auto_assumes_quadratic_until_a_known_request_says_otherwise() -> None:
    m = CpuWeightMap("auto")
    assert (m.formula, m.basis, m.label) == (
        WeightFormula.QUADRATIC, "assumed", "quadratic (runc>=1.3.2, crun>=1.23; assumed)")
    m.observe(0.0, 1)  # the floor is 1 in both maps: no evidence
    assert m.basis == "assumed"
    m.observe(1.0, 39)  # 1 core written as 39: the linear map
    assert (m.formula, m.basis) == (WeightFormula.LINEAR, "matched")
    assert m.cores(39) == 1011.5 / 1024
    m.observe(2.0, 174)  # 2048 shares -> 174 is quadratic: a tie goes to today's map
    assert m.formula is WeightFormula.QUADRATIC


def test_configured_map_ignores_observations() -> None:
    m = CpuWeightMap("linear")
    m.observe(1.0, 100)
    assert m.label == "linear (runc<1.3.2, crun<1.23; configured)"
    with pytest.raises(ValueError, match="expected auto, linear or quadratic"):
        CpuWeightMap("kubelet")


def test_reader_on_a_sim_tree_of_each_map(make_node: Any) -> None:
    for weight_map, expect in (("quadratic", 1018 / 1024), ("linear", 1011.5 / 1024)):
        node = make_node(version=2)
        node.tree.weight_map = weight_map
        node.add_pod("0d0d0d0d-1111-2222-3333-444444444444", "burstable", {"web": (1.0, 0)})
        reader = CgroupReader(Path(node.sysfs) / "fs" / "cgroup")
        weights = {c.id: reader.cpu_weight(c) for c in reader.discover()}
        assert sorted(weights.values()) == [1, 100 if weight_map == "quadratic" else 39]
        got = sorted(r for c in reader.discover() if (r := reader.cpu_request_cores(c, CpuWeightMap(weight_map))))
        assert got == [expect]


def test_engine_learns_the_map_from_api_pods_and_labels_it(make_node: Any) -> None:
    node = make_node(version=2)
    node.tree.weight_map = "linear"  # an older runc node
    node.add_pod("0a0a0a0a-1111-2222-3333-444444444444", "burstable", {"api": (1.0, 0)})
    node.add_pod("0b0b0b0b-1111-2222-3333-444444444444", "burstable", {"noapi": (1.0, 0)}, kube=False)
    eng = node.engine()
    eng.collect()  # the first cycle only sets baselines; requests are read when energy is split
    node.now += 10
    node.rapl(100.0, 100.0, 10.0, 10.0)
    node.tree.advance_cpu("0b0b0b0b-1111-2222-3333-444444444444", "noapi", 5.0)
    eng.collect()
    snap = eng.snapshot
    assert (snap.cpu_weight_map, snap.cpu_weight_basis) == ("linear", "matched")
    noapi = [c for c in eng.cgroups.discover() if c.pod_uid.startswith("0b0b") and eng.cgroups.cpu_weight(c) == 39]
    assert len(noapi) == 1
    assert eng.cgroups.cpu_request_cores(noapi[0], eng.cpu_weights) == 1011.5 / 1024


def test_engine_without_api_requests_assumes_quadratic(make_node: Any) -> None:
    node = make_node(version=2)
    node.add_pod("0b0b0b0b-1111-2222-3333-444444444444", "burstable", {"noapi": (1.0, 0)}, kube=False)
    eng = node.engine(kube=False)
    eng.collect()
    node.now += 10
    node.rapl(100.0, 100.0, 10.0, 10.0)
    eng.collect()
    assert (eng.snapshot.cpu_weight_map, eng.snapshot.cpu_weight_basis) == ("quadratic", "assumed")


def test_engine_on_cgroup_v1_says_shares_are_exact(make_node: Any) -> None:
    node = make_node(version=1, driver="cgroupfs")
    node.add_pod("0b0b0b0b-1111-2222-3333-444444444444", "burstable", {"noapi": (1.0, 0)}, kube=False)
    eng = node.engine(kube=False)
    eng.collect()
    node.now += 10
    node.rapl(100.0, 100.0, 10.0, 10.0)
    eng.collect()
    assert (eng.snapshot.cpu_weight_map, eng.snapshot.cpu_weight_basis) == ("v1-shares", "exact")
