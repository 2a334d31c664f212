"""bench/bench_nvml_device.py, the real-GPU NVML validation (issue 19), proven here on the fake.

Its arithmetic (bench/nvml_analysis.py) is checked on made-up series with known answers, and
the whole script runs for a few seconds with --load fake: the fake GPU model
(bench/fakegpu_model.py) draws 70 W idle and 700 W under load, so the counter's joules per
phase are known, and the script's comparisons, per-process split and tracker run must come
out as that model implies."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "bench"))

from nvml_analysis import (  # noqa: E402
    CONSERVATION_TOLERANCE,
    TOLERANCE,
    AttributionTick,
    attribute,
    compare_phase,
    subsample,
)

IDLE_W, LOAD_W = 70.0, 700.0  # FakeGpuModel's defaults


def _series(power: Any, until: float, step: float = 0.01) -> list[tuple[float, float, float]]:
    """Samples every ``step`` of power(t) with an exact counter (integral of the step function)."""
    out, energy, t = [], 0.0, 0.0
    while t <= until + 1e-9:
        out.append((t, power(t), energy))
        energy += power(t) * step
        t = round(t + step, 6)
    return out


def test_steady_power_matches_the_counter_at_every_interval() -> None:
    samples = _series(lambda t: 300.0, 30.0)
    cmp = compare_phase(samples, 0.0, 30.0, (0.02, 1.0, 10.0), TOLERANCE["steady"])
    assert cmp["counter_j"] == pytest.approx(300.0 * 30.0)
    for every in ("0.02", "1", "10"):
        assert cmp["by_interval"][every]["rel_diff"] == pytest.approx(0.0, abs=1e-9)
        assert cmp["by_interval"][every]["within_tolerance"]


def test_a_coarse_sampler_in_phase_with_bursts_overstates_them() -> None:
    # 100 ms at 500 W at the start of each second, 50 W otherwise: true mean 95 W. A sampler
    # every second lands on the bursts only and reads 500 W.
    samples = _series(lambda t: 500.0 if (t % 1.0) < 0.1 - 1e-9 else 50.0, 20.0)
    cmp = compare_phase(samples, 0.0, 20.0, (0.01, 1.0), TOLERANCE["bursty"])
    assert cmp["counter_mean_w"] == pytest.approx(95.0, rel=0.01)
    fine, coarse = cmp["by_interval"]["0.01"], cmp["by_interval"]["1"]
    assert abs(fine["rel_diff"]) < 0.03 and fine["within_tolerance"]
    assert coarse["mean_w"] == pytest.approx(500.0)
    assert coarse["rel_diff"] == pytest.approx(500.0 / cmp["counter_mean_w"] - 1.0, rel=1e-6)
    assert not coarse["within_tolerance"]


def test_subsample_keeps_what_a_slower_sampler_would_take() -> None:
    samples = [(t / 100, 1.0, 0.0) for t in range(0, 101)]
    assert [s[0] for s in subsample(samples, 0.25)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len(compare_phase(samples, 0.0, 1.0, (10.0,), 0.05)["by_interval"]["10"]) == 2  # too short: a note


def _split() -> Any:
    from bench_nvml_device import load_split

    return load_split()


def test_attribution_splits_the_counter_by_sm_and_conserves_it() -> None:
    ticks = [AttributionTick(100.0, ((1, 60.0), (2, 20.0))), AttributionTick(50.0, ((1, 50.0), (2, 50.0), (9, 0.0)))]
    got = attribute(ticks, {1: "heavy", 2: "light"}, _split())
    # tick 1: active 80 J by 60:20, idle 20 J evenly; tick 2 has an unknown PID 9: active 50 J
    # by 50:50:0, idle 0 J
    assert got["per_owner_j"]["heavy"] == pytest.approx(60 + 10 + 25)
    assert got["per_owner_j"]["light"] == pytest.approx(20 + 10 + 25)
    assert got["counter_j"] == pytest.approx(150.0)
    assert got["conservation_ok"] and got["pids_match"]


def test_attribution_flags_lost_energy_and_unknown_pids() -> None:
    def leaky(energy_j: float, owners: dict[int, str], procs: Any) -> tuple[dict[str, float], float]:
        return {"heavy": energy_j * 0.5}, 0.0  # half the joules vanish

    got = attribute([AttributionTick(100.0, ((1, 90.0),))], {1: "heavy", 2: "light"}, leaky)
    assert got["conservation_error"] == pytest.approx(0.5)
    assert not got["conservation_ok"]
    # NVML listing other PIDs than ours (a PID namespace): all active energy unallocated
    other = attribute([AttributionTick(100.0, ((71, 90.0), (72, 10.0)))], {1: "heavy", 2: "light"}, _split())
    assert not other["pids_match"] and not other["unallocated_ok"]
    assert other["conservation_ok"]


def test_the_script_runs_end_to_end_on_the_fake_library(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [sys.executable, str(REPO / "bench" / "bench_nvml_device.py"), "--load", "fake", "--out", str(out),
            "--budget-s", "12", "--attribution-interval", "0.25"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((out / "results.json").read_text())
    assert sum(r["meta"]["phase_s"].values()) == pytest.approx(0.8 * 12)  # phases are shares of the budget
    assert r["meta"]["nvmlsource_devices"][0]["method"] == "measured"
    assert r["meta"]["nvmlsource_sampled_method"] == "sampled"
    phases = r["phases"]
    for name, watts in (("idle", IDLE_W), ("steady", LOAD_W), ("two-process", LOAD_W)):
        ph = phases[name]
        assert ph["counter_mean_w"] == pytest.approx(watts, rel=0.03), name
        assert ph["counter_j"] == pytest.approx(watts * ph["span_s"], rel=0.03), name
        fast = ph["by_interval"]["0.02"]
        assert fast["integral_j"] == pytest.approx(ph["counter_j"], rel=TOLERANCE[name]), name
        assert fast["within_tolerance"], name
        assert abs(ph["nvmlsource_measured_rel_diff"]) < 0.03, name  # the counter path
        assert abs(ph["nvmlsource_sampled_rel_diff"]) < 0.05, name  # the sampled path
    bursty = phases["bursty"]  # 5 ms of 25: 70 W + 20 % of 630 W on average
    assert bursty["counter_mean_w"] == pytest.approx(IDLE_W + 0.2 * (LOAD_W - IDLE_W), rel=0.15)
    att = r["attribution"]
    assert att["pids_match"] and att["conservation_ok"] and att["unallocated_ok"]
    total = sum(att["per_owner_j"].values()) + att["unallocated_j"]
    assert total == pytest.approx(att["counter_j"], rel=CONSERVATION_TOLERANCE)
    # steady vs 5 ms of every 20 ms time-sliced: the heavy process gets 1 - 0.25/2 of the SMs
    assert att["per_owner_share"]["heavy"] == pytest.approx(0.875, abs=0.05)
    assert att["per_owner_share"]["light"] == pytest.approx(0.125, abs=0.05)
    tr = r["tracker"]
    assert tr["exit"] == 0, tr["summary"]
    assert tr["ratio_to_counter"] == pytest.approx(1.0, abs=0.1)
    run = json.loads((out / "tracker-run.json").read_text())
    assert run["energy_j"]["gpu"] == pytest.approx(tr["gpu_j"])
    rows = list(csv.DictReader((out / "tracker-emissions.csv").open()))
    assert len(rows) == 1 and float(rows[0]["gpu_energy"]) * 3.6e6 == pytest.approx(tr["gpu_j"], rel=1e-3)
    md = (out / "summary.md").read_text()
    assert "FAKE LIBRARY DRY RUN, not a GPU measurement" in md
    assert r["inventory"]["nvmlDeviceGetMigMode"] == {"ok": [0, 0]}


def test_render_sets_the_driver_beside_the_fake(tmp_path: Path) -> None:
    from bench_nvml_device import render_markdown

    real = {"meta": {"load": "cuda"}, "inventory": {"nvmlSystemGetNVMLVersion": {"ok": "12.580"},
                                                    "nvmlDeviceGetMigMode": {"ok": [0, 0]}}}  # fmt: skip
    fake = {"inventory": {"nvmlSystemGetNVMLVersion": {"error": 13, "name": "NVMLError_FunctionNotFound"},
                          "nvmlDeviceGetMigMode": {"ok": [0, 0]}}}  # fmt: skip
    md = render_markdown(real, fake)
    assert "FAKE LIBRARY DRY RUN" not in md
    assert "| nvmlSystemGetNVMLVersion | ok (str) | error 13 | **no** |" in md
    assert "| nvmlDeviceGetMigMode | ok (list) | ok (list) | yes |" in md
