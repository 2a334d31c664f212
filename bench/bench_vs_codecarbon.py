"""CarbonTrack's tracker beside CodeCarbon 3.x on the same CPU-bound workload.

Writes docs/performance/vs-codecarbon.md. Both tools run offline for the same zone
(CarbonTrack ``--zone DE``; CodeCarbon ``OfflineEmissionsTracker(country_iso_code="DEU")``)
at the same sampling interval, and both take their CPU-estimation path (this benchmark is
meant for machines without RAPL; CodeCarbon is forced into its CPU-load mode with
``force_mode_cpu_load=True``). Two comparisons:

A. each tool's own estimate, process scope (CarbonTrack ``--scope process``, CodeCarbon
   ``tracking_mode="process"``): what a user gets out of the box;
B. the same fixed CPU power, whole machine (CarbonTrack ``--cpu-watts W --scope machine``,
   CodeCarbon ``force_cpu_power=W, tracking_mode="machine"``): isolates the power model.

Measured per tool, N runs each, median and spread (min-max): added CPU time (rusage of the
tool's process tree minus the bare workload's median), start-up (import + start + stop with
no work, in a fresh interpreter), and the energy (CPU, RAM) and CO2e each reports.

Run: python3 bench/bench_vs_codecarbon.py [--quick]      (needs `pip install codecarbon`)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "performance" / "vs-codecarbon.md"
TRAIN = REPO / "examples" / "train_example.py"
CT = [sys.executable, "-m", "carbontrack"]
INTERVAL_S = 2.0
FIXED_W = 50.0

CC_RUN = r"""
import json, runpy, sys, time, logging
cfg = json.loads(sys.argv[1])
t0 = time.perf_counter()
from codecarbon import OfflineEmissionsTracker
t = OfflineEmissionsTracker(country_iso_code="DEU", measure_power_secs=cfg["interval"],
                            save_to_file=False, log_level="error", force_mode_cpu_load=True,
                            **cfg["kw"])
t.start()
t1 = time.perf_counter()
if cfg["workload"]:
    sys.argv = [cfg["workload"][0], *cfg["workload"][1:]]
    runpy.run_path(cfg["workload"][0], run_name="__main__")
kg = t.stop()
t2 = time.perf_counter()
d = t.final_emissions_data
json.dump({"startup_s": t1 - t0, "stop_s": t2 - t1, "co2e_g": (kg or 0.0) * 1000,
           "cpu_j": d.cpu_energy * 3.6e6, "ram_j": d.ram_energy * 3.6e6,
           "cpu_w": d.cpu_power, "ram_w": d.ram_power, "duration_s": d.duration,
           "cpu_model": d.cpu_model}, open(cfg["out"], "w"))
"""

CT_API = r"""
import json, sys, time
t0 = time.perf_counter()
from carbontrack.tracker import track
t = track(zone="DE", output_dir=None).start()
t1 = time.perf_counter()
t.stop()
t2 = time.perf_counter()
json.dump({"startup_s": t1 - t0, "stop_s": t2 - t1}, open(sys.argv[1], "w"))
"""


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the child and everything it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def stats(xs: list[float]) -> tuple[float, float, float]:
    return statistics.median(xs), min(xs), max(xs)


def ours(workload: list[str], out: Path, extra: list[str]) -> dict[str, float]:
    for old in out.glob("carbontrack-*.json"):
        old.unlink()
    wall, cpu = timed([*CT, "run", "--zone", "DE", "--interval", str(INTERVAL_S), "--quiet",
                       "--format", "json", "--output", str(out), *extra, "--",
                       sys.executable, *workload])
    doc = json.loads(next(out.glob("carbontrack-*.json")).read_text())
    e = doc["energy_j"]
    return {"wall": wall, "cpu": cpu, "cpu_j": e.get("cpu", 0.0), "ram_j": e.get("dram", 0.0),
            "co2e_g": doc["co2e_grams"], "duration_s": doc["duration_s"],
            "g_per_kwh": doc["intensity_g_per_kwh"]}


def run_codecarbon(workload: list[str], out: Path, kw: dict[str, Any]) -> dict[str, float]:
    res = out / "cc.json"
    cfg = {"interval": INTERVAL_S, "kw": kw, "workload": workload, "out": str(res)}
    wall, cpu = timed([sys.executable, "-c", CC_RUN, json.dumps(cfg)])
    d = json.loads(res.read_text())
    kwh = (d["cpu_j"] + d["ram_j"]) / 3.6e6
    return {"wall": wall, "cpu": cpu, "cpu_j": d["cpu_j"], "ram_j": d["ram_j"],
            "co2e_g": d["co2e_g"], "duration_s": d["duration_s"],
            "g_per_kwh": d["co2e_g"] / kwh if kwh else float("nan"),
            "cpu_w": d["cpu_w"], "ram_w": d["ram_w"], "startup_s": d["startup_s"]}


def startup(n: int, out: Path) -> dict[str, tuple[float, float, float]]:
    r: dict[str, list[float]] = {k: [] for k in (
        "python_wall", "ct_wall", "ct_cpu", "ct_api", "cc_wall", "cc_cpu", "cc_api")}
    for _ in range(n):
        r["python_wall"].append(timed([sys.executable, "-c", "pass"])[0])
        w, c = timed([sys.executable, "-c", CT_API, str(out / "ct-api.json")])
        r["ct_wall"].append(w)
        r["ct_cpu"].append(c)
        r["ct_api"].append(json.loads((out / "ct-api.json").read_text())["startup_s"])
        cfg = {"interval": INTERVAL_S, "kw": {"tracking_mode": "process"}, "workload": [],
               "out": str(out / "cc-api.json")}
        w, c = timed([sys.executable, "-c", CC_RUN, json.dumps(cfg)])
        r["cc_wall"].append(w)
        r["cc_cpu"].append(c)
        r["cc_api"].append(json.loads((out / "cc-api.json").read_text())["startup_s"])
    return {k: stats(v) for k, v in r.items()}


def fmt3(t: tuple[float, float, float], unit: str = "", scale: float = 1.0, digits: int = 3) -> str:
    m, lo, hi = (x * scale for x in t)
    return f"{m:.{digits}g}{unit} ({lo:.{digits}g}-{hi:.{digits}g})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3 runs, shorter workload")
    a = ap.parse_args()
    n = 3 if a.quick else 5
    epochs, samples = ("2", "20000") if a.quick else ("4", "40000")
    workload = [str(TRAIN), "--epochs", epochs, "--samples", samples]
    import codecarbon

    import carbontrack

    subprocess.run([sys.executable, "-m", "compileall", "-q",
                    str(Path(carbontrack.__file__).parent)], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        bare = [timed([sys.executable, *workload]) for _ in range(n)]
        bare_cpu = statistics.median(c for _, c in bare)
        bare_wall = statistics.median(w for w, _ in bare)
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in ("ctA", "ccA", "ctB", "ccB")}
        for _ in range(n):  # interleaved, so machine load drifts hit every tool alike
            runs["ctA"].append(ours(workload, out, ["--scope", "process"]))
            runs["ccA"].append(run_codecarbon(workload, out, {"tracking_mode": "process"}))
            runs["ctB"].append(ours(workload, out, ["--scope", "machine",
                                                    "--cpu-watts", str(FIXED_W)]))
            runs["ccB"].append(run_codecarbon(workload, out, {"tracking_mode": "machine",
                                                          "force_cpu_power": FIXED_W}))
        st = startup(n, out)

    def col(key: str, field: str, scale: float = 1.0) -> tuple[float, float, float]:
        return stats([r[field] * scale for r in runs[key]])

    def added(key: str) -> tuple[float, float, float]:
        return stats([r["cpu"] - bare_cpu for r in runs[key]])

    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    rapl = Path("/sys/class/powercap/intel-rapl:0").exists()
    lines = [
        "# Tracker vs CodeCarbon",
        "",
        f"Generated by `python3 bench/bench_vs_codecarbon.py{' --quick' if a.quick else ''}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {cpu_model}, "
        f"{os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, RAPL {'present' if rapl else 'absent (VM)'}; "
        f"CarbonTrack {carbontrack.__version__}, CodeCarbon {codecarbon.__version__}. The "
        "machine was shared with other jobs (a Go build, other test suites): wall times are "
        "inflated and noisy; CPU times come from the kernel's rusage.",
        "",
        f"Workload: `python examples/train_example.py --epochs {epochs} --samples {samples}` "
        f"(pure-Python SGD, one core), bare: {bare_wall:.2f} s wall, {bare_cpu:.2f} s CPU "
        f"(median of {n}). Sampling interval {INTERVAL_S:g} s for both tools. Zone: "
        "CarbonTrack `--zone DE`, CodeCarbon offline `country_iso_code=\"DEU\"`. "
        f"Figures: median (min-max) of {n} interleaved runs.",
        "",
        "## Cost",
        "",
        "| | CarbonTrack | CodeCarbon |",
        "|---|---|---|",
        f"| added CPU time per run, A (s) | {fmt3(added('ctA'))} | {fmt3(added('ccA'))} |",
        f"| added CPU time per run, B (s) | {fmt3(added('ctB'))} | {fmt3(added('ccB'))} |",
        f"| start-up in-process: import + start (s) | {fmt3(st['ct_api'])} | "
        f"{fmt3(st['cc_api'])} |",
        f"| fresh interpreter: import + start + stop, wall (s) | {fmt3(st['ct_wall'])} | "
        f"{fmt3(st['cc_wall'])} |",
        f"| fresh interpreter: import + start + stop, CPU (s) | {fmt3(st['ct_cpu'])} | "
        f"{fmt3(st['cc_cpu'])} |",
        "",
        f"`python -c pass` alone: {fmt3(st['python_wall'])} s wall. Added CPU time is the "
        "tool's whole process tree (for CarbonTrack the `carbontrack run` parent; for "
        "CodeCarbon the same interpreter) minus the bare workload; it includes start-up.",
        "",
        "## What each reports",
        "",
        "| | CarbonTrack | CodeCarbon |",
        "|---|---|---|",
    ]
    for tag, label in (("A", "A: own estimate, process scope"),
                       ("B", f"B: fixed CPU {FIXED_W:g} W, whole machine")):
        ct, cc = f"ct{tag}", f"cc{tag}"
        lines += [
            f"| {label}: CPU energy (J) | {fmt3(col(ct, 'cpu_j'))} | {fmt3(col(cc, 'cpu_j'))} |",
            f"| {label}: RAM energy (J) | {fmt3(col(ct, 'ram_j'))} | {fmt3(col(cc, 'ram_j'))} |",
            f"| {label}: CO2e (mg) | {fmt3(col(ct, 'co2e_g', 1000))} | "
            f"{fmt3(col(cc, 'co2e_g', 1000))} |",
            f"| {label}: implied intensity (g/kWh) | {fmt3(col(ct, 'g_per_kwh'))} | "
            f"{fmt3(col(cc, 'g_per_kwh'))} |",
            f"| {label}: duration measured (s) | {fmt3(col(ct, 'duration_s'))} | "
            f"{fmt3(col(cc, 'duration_s'))} |",
        ]
    cc_cpu_w = statistics.median(r["cpu_w"] for r in runs["ccA"])
    cc_ram_w = statistics.median(r["ram_w"] for r in runs["ccA"])
    ct_cpu_w = statistics.median(r["cpu_j"] / r["duration_s"] for r in runs["ctA"])
    ct_ram_w = statistics.median(r["ram_j"] / r["duration_s"] for r in runs["ctA"])
    ccb_cpu_w = statistics.median(r["cpu_j"] / r["duration_s"] for r in runs["ccB"])
    lines += [
        "",
        "## Why the numbers differ",
        "",
        "- **Grid factor.** CarbonTrack uses its packaged catalogue for `DE` (OWID/Ember, "
        "2024, average lifecycle, location-based, CC BY 4.0; source and year are in the "
        "output). CodeCarbon offline derives Germany's factor from its own energy-mix table "
        "and per-fuel emission factors. The implied intensities above are CO2e / IT energy "
        "for each tool, PUE 1 in both.",
        f"- **CPU power model (A).** CarbonTrack: Cloud Carbon Footprint min/max watts per "
        "vCPU for the detected microarchitecture, scaled by utilisation, then the process "
        "tree's share of the machine's *busy* CPU time (an upper bound that charges the idle "
        "floor to whoever was working). CodeCarbon process mode: TDP from its CPU table "
        "(or a generic fallback) x the process's CPU load / number of CPUs. Median attributed "
        f"CPU power: CarbonTrack {ct_cpu_w:.2f} W, CodeCarbon {cc_cpu_w:.2f} W.",
        f"- **CPU power model (B).** With the same {FIXED_W:g} W, CarbonTrack's `--cpu-watts` "
        "is a TDP: power runs linearly from the CCF average idle ratio x W (idle) to W (all "
        "CPUs busy) with the machine's /proc/stat utilisation; CodeCarbon machine mode scales "
        f"it as W x (0.1 + 0.9 x load^3): median {ccb_cpu_w:.2f} W here. The two laws agree "
        "at full load and differ most at partial load; the machine's other tenants raise the "
        "load both see.",
        f"- **RAM.** CarbonTrack: installed GB x the CCF memory coefficient (0.392 W/GB), "
        "shared like the CPU in process scope; CodeCarbon 3.x: a fixed figure per detected "
        f"DIMM slot / RAM size. Median power: CarbonTrack {ct_ram_w:.2f} W, CodeCarbon "
        f"{cc_ram_w:.2f} W.",
        "- **Start-up.** CodeCarbon imports pandas and its hardware/geo tables on import; "
        "CarbonTrack imports the standard library and its own modules and defers the "
        "catalogue until the zone is resolved.",
        "- **Duration.** CarbonTrack counts from the child's spawn to its exit (process "
        "tree); CodeCarbon from `start()` to `stop()`, inside the interpreter after its own "
        "import.",
        "",
    ]
    PAGE.write_text("\n".join(lines))
    print(PAGE.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
