"""Validate CarbonTrack's NVML paths on a real NVIDIA GPU (issue 19), in one device call.

Phases, each time-boxed (their lengths are shares of --budget-s; the script stops itself
within it):

1. idle: nothing on the GPU;
2. steady: one process running back-to-back FMA kernels on every SM (bench/gpuload.py);
3. bursty: one process, 5 ms kernels with 20 ms gaps;
4. two-process: a steady and a bursty process at once (time-sliced): per-process shares of
   the counter through CarbonTrack's exporter split (exporter/gpu_attribution.py) fed by
   NvmlSource.processes();
5. tracker: ``carbontrack run --gpus 0 -- python3 bench/gpuload.py ...`` end to end; its
   summary, CSV and JSON are kept.

Throughout, a sampler reads power and the energy counter every --fast-interval s; per phase
the counter's joules are compared with the trapezoid integral of power sampled every 0.02,
0.1 (NvmlSource's sampled path), 1 and 10 s (the tracker's default interval) — the
tolerances are in bench/nvml_analysis.py. CarbonTrack's NvmlSource is read per phase twice:
as it opens on this GPU (energy counter, "measured") and with the counter hidden
(NotSupported) so that its sampled fallback integrates the real power readings. Raw calls
the fake libnvidia-ml answers (versions, memory structs, process lists, utilisation
samples, MIG mode, error codes of edge calls) are recorded as the driver answers them.
Nothing is changed on the GPU: MIG mode is only read, clocks and power limits untouched.

Outputs under --out (at most 8 files, as the device tool brings back): results.json,
summary.md, samples.csv, tracker-summary.txt, tracker-emissions.csv, tracker-run.json.
With --page, the summary is also written as a docs/performance page.

On the device machine (python3 there has nvidia-ml-py and psutil; nothing else is needed,
and src/, exporter/ and bench/ are tracked so they travel — carry nothing):

    run(command="PYTHONUNBUFFERED=1 python3 bench/bench_nvml_device.py --load cuda --out $OUT --budget-s 300",
        timeout_s=420, carry=[])

then, here, with the JSON it brought back (files_at is read-only, so --out elsewhere) and a
fresh fake run's JSON (the dry run below) to set the driver's answers beside the fake's:
python3 bench/bench_nvml_device.py --render <files_at>/results.json --out /tmp/nvml-device \
    --compare-fake /tmp/nvml-dry/results.json --page docs/performance/nvml-device.md

Here (no GPU), against the fake libnvidia-ml (compiled as the tests compile it):

    python3 bench/bench_nvml_device.py --load fake --out /tmp/nvml-dry --budget-s 60 \
        --page docs/performance/nvml-device-dry-run.md
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
if not (REPO / "src" / "carbontrack").exists():
    raise SystemExit(f"{REPO} is not a CarbonTrack checkout")
with contextlib.suppress(ImportError):
    import carbontrack  # noqa: F401  (installed here; on the device machine src/ is used)
if "carbontrack" not in sys.modules:
    sys.path.insert(0, str(REPO / "src"))

from gpuload import JOBS_ENV  # noqa: E402
from nvml_analysis import TOLERANCE, AttributionTick, attribute, compare_phase  # noqa: E402
from nvml_probe import PowerSampler, inventory, process_snapshot  # noqa: E402

INTERVALS = (0.02, 0.1, 1.0, 10.0)
# shares of the phase budget; the rest of --budget-s is start-up, NVML opens and writing
SHARES = {"idle": 0.15, "steady": 0.2, "bursty": 0.2, "two-process": 0.25, "tracker": 0.2}
PHASE_BUDGET = 0.8
READY_TIMEOUT_S = 30.0  # CUDA context creation and PTX JIT, once per load process
SETTLE = 0.1  # leading share of each load phase left out of the comparison (context start-up)
PAGES = ("nvml-device.md", "nvml-device-dry-run.md")  # docs/performance pages this script writes


def load_split() -> Any:
    """CarbonTrack's exporter split (exporter/gpu_attribution.py, stdlib only), by path: on the
    device machine the package is not installed, so carbontrack.exporter does not resolve."""
    path = REPO / "exporter" / "gpu_attribution.py"
    spec = importlib.util.spec_from_file_location("ct_gpu_attribution", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)

    def split(energy_j: float, owners: dict[int, str], procs: tuple[tuple[int, float | None], ...]
              ) -> tuple[dict[str, float], float]:  # fmt: skip
        unit = mod.GpuUnit("gpu", energy_j, False)
        uses = [mod.GpuUse("gpu", owners.get(pid), sm) for pid, sm in procs]
        result = mod.split_unit(unit, [], uses)
        return dict(result.containers), float(result.unallocated)

    return split


def hide_counter(nvml: ModuleType) -> ModuleType:
    """pynvml as a GPU without the energy counter: NvmlSource takes its sampled path."""
    proxy = ModuleType("pynvml_without_counter")
    proxy.__dict__.update(nvml.__dict__)

    def no_counter(handle: Any) -> int:
        raise nvml.NVMLError(nvml.NVML_ERROR_NOT_SUPPORTED)

    proxy.nvmlDeviceGetTotalEnergyConsumption = no_counter  # type: ignore[attr-defined]
    return proxy


class Run:
    """The session's NVML handles, load processes and everything measured so far."""

    def __init__(self, a: argparse.Namespace, env: dict[str, str], nvml: ModuleType) -> None:
        from carbontrack.sources.nvml import NvmlSource

        self.a, self.env, self.nvml = a, env, nvml
        self.t_end = time.monotonic() + a.budget_s
        self.phase_s = {k: v * a.budget_s * PHASE_BUDGET for k, v in SHARES.items()}
        nvml.nvmlInit()
        self.handle = nvml.nvmlDeviceGetHandleByIndex(0)
        self.measured = NvmlSource.open(nvml, [0], sample_interval_s=0.1)
        self.sampled = NvmlSource.open(hide_counter(nvml), [0], sample_interval_s=0.1)
        self.sampler = PowerSampler(nvml, self.handle, a.fast_interval)
        self.tmp = Path(tempfile.mkdtemp(prefix="nvml-device-"))
        self.results: dict[str, Any] = {"phases": {}, "loads": {}}

    def gpu_j(self) -> tuple[float, float]:
        return self.measured.read()[0].joules, self.sampled.read()[0].joules

    def load(self, name: str, pattern: str, seconds: float, kernel_ms: float = 5.0,
             gap_ms: float = 20.0) -> subprocess.Popen[bytes]:  # fmt: skip
        report = self.tmp / f"load-{name}.json"
        argv = [sys.executable, str(BENCH / "gpuload.py"), "--backend", self.a.load, "--pattern", pattern,
                "--seconds", f"{seconds:.2f}", "--kernel-ms", str(kernel_ms), "--gap-ms", str(gap_ms),
                "--report", str(report), "--ready", str(self.tmp / f"load-{name}.ready")]  # fmt: skip
        return subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL)

    def until_ready(self, *names: str) -> None:
        """Wait (at most READY_TIMEOUT_S) until the loads have made their context and loaded the
        kernel: the measured window starts with the load, not with interpreter start-up."""
        give_up = time.monotonic() + min(READY_TIMEOUT_S, max(0.0, self.t_end - time.monotonic()))
        while not all((self.tmp / f"load-{n}.ready").exists() for n in names) and time.monotonic() < give_up:
            time.sleep(0.01)

    def wait(self, name: str, proc: subprocess.Popen[bytes], seconds: float) -> None:
        try:
            proc.wait(timeout=max(1.0, min(seconds + 30.0, self.t_end - time.monotonic())))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        report = self.tmp / f"load-{name}.json"
        self.results["loads"][name] = (json.loads(report.read_text()) if report.exists()
                                       else {"error": f"exit {proc.returncode}, no report"})  # fmt: skip

    @contextlib.contextmanager
    def window(self, phase: str, seconds: float) -> Iterator[None]:
        """Compare counter, sampled integrals and NvmlSource over the phase's measured window."""
        time.sleep(seconds * SETTLE)
        t0, (m0, s0) = time.monotonic(), self.gpu_j()
        yield
        t1, (m1, s1) = time.monotonic(), self.gpu_j()
        cmp = compare_phase(self.sampler.samples, t0, t1, INTERVALS, TOLERANCE[phase])
        # NvmlSource's window is [t0, t1] exactly, the sampler's a few ms inside it: compare
        # mean powers, not joules
        mean_w = cmp.get("counter_mean_w", 0.0)
        cmp["nvmlsource_measured_j"] = m1 - m0
        cmp["nvmlsource_sampled_j"] = s1 - s0
        for key, joules in (("measured", m1 - m0), ("sampled", s1 - s0)):
            cmp[f"nvmlsource_{key}_rel_diff"] = (joules / (t1 - t0) - mean_w) / mean_w if mean_w > 0 else None
        self.results["phases"][phase] = cmp

    def single(self, phase: str, pattern: str | None) -> None:
        seconds = self.phase_s[phase]
        proc = self.load(phase, pattern, seconds) if pattern else None
        if proc is not None:
            self.until_ready(phase)
        with self.window(phase, seconds):
            time.sleep(seconds * (1 - SETTLE) - 0.3)
        if proc is not None:
            self.wait(phase, proc, seconds)

    def two_process(self, split: Any) -> None:
        seconds = self.phase_s["two-process"]
        heavy = self.load("heavy", "steady", seconds)
        light = self.load("light", "bursty", seconds, kernel_ms=5.0, gap_ms=15.0)
        self.until_ready("heavy", "light")
        owners = {heavy.pid: "heavy", light.pid: "light"}
        ticks: list[AttributionTick] = []
        raw: list[dict[str, Any]] = []
        last_seen = 0
        with self.window("two-process", seconds):
            prev = self.measured.read()[0].joules
            stop = time.monotonic() + seconds * (1 - SETTLE) - 0.3
            while time.monotonic() < stop:
                time.sleep(min(self.a.attribution_interval, max(0.0, stop - time.monotonic())))
                joules = self.measured.read()[0].joules
                procs = tuple((p.pid, p.sm_util_percent) for p in self.measured.processes())
                ticks.append(AttributionTick(joules - prev, procs))
                prev = joules
                snap, last_seen = process_snapshot(self.nvml, self.handle, last_seen)
                raw.append(snap)
        self.wait("heavy", heavy, seconds)
        self.wait("light", light, seconds)
        result = attribute(ticks, owners, split)
        result["interval_s"] = self.a.attribution_interval
        result["nvml_raw"] = raw[: self.a.raw_limit]
        self.results["attribution"] = result

    def tracker(self) -> dict[str, Any]:
        seconds = self.phase_s["tracker"]
        out = self.tmp / "tracker"
        interval = min(10.0, max(0.5, seconds / 4))
        argv = [sys.executable, "-m", "carbontrack", "run", "--zone", "DE", "--gpus", "0", "--output", str(out),
                "--interval", f"{interval:g}", "--project-name", "nvml-device", "--",
                sys.executable, str(BENCH / "gpuload.py"), "--backend", self.a.load, "--pattern", "steady",
                "--seconds", f"{seconds * 0.8:.2f}"]  # fmt: skip
        t0 = time.monotonic()
        i0 = len(self.sampler.samples)
        try:
            proc = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                                  timeout=max(5.0, self.t_end - time.monotonic()), check=False)  # fmt: skip
            code, summary = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired as err:  # out of budget: keep what it printed
            code, summary = None, f"stopped at the budget; stderr so far: {err.stderr!r}"
        t1 = time.monotonic()
        win = [s for s in self.sampler.samples[max(0, i0 - 1) :] if t0 <= s[0] <= t1]
        runs = sorted(out.glob("carbontrack-*.json"))
        doc = json.loads(runs[-1].read_text()) if runs else {}
        gpu_j = float(doc.get("energy_j", {}).get("gpu", 0.0)) if doc else None
        counter = win[-1][2] - win[0][2] if len(win) >= 2 else None
        return {
            "argv": argv[2:], "exit": code, "interval_s": interval,
            "summary": summary, "json": doc, "csv": (out / "emissions.csv").read_text()
            if (out / "emissions.csv").exists() else "", "gpu_j": gpu_j, "counter_j_around_run": counter,
            "ratio_to_counter": gpu_j / counter if gpu_j is not None and counter else None,
        }  # fmt: skip

    def close(self) -> None:
        self.measured.close()
        self.sampled.close()
        with contextlib.suppress(Exception):
            self.nvml.nvmlShutdown()


def prepare(a: argparse.Namespace) -> tuple[dict[str, str], Any]:
    """Environment for the load and tracker processes; for --load fake, the fake library, its
    state and the fake GPU model (started; returned to be stopped)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p)
    model = None
    if a.load == "fake":
        from fakegpu_model import FakeGpuModel

        from carbontrack.sim.fakenvml import STATE_ENV, build_fake_libnvml

        work = Path(tempfile.mkdtemp(prefix="nvml-fake-"))
        if a.nvml_lib is None:
            a.nvml_lib = str(build_fake_libnvml(work / "cache") / "libnvidia-ml.so.1")
        (work / "jobs").mkdir()
        env[STATE_ENV] = os.environ[STATE_ENV] = str(work / "state")
        env[JOBS_ENV] = str(work / "jobs")
        model = FakeGpuModel(work / "state", work / "jobs")
        model.start()
    if a.nvml_lib:
        # pynvml's CDLL("libnvidia-ml.so.1") then gets this object (same soname), and the
        # tracker's process finds it first on LD_LIBRARY_PATH
        ctypes.CDLL(str(Path(a.nvml_lib).resolve()), mode=ctypes.RTLD_GLOBAL)
        lib_dir = str(Path(a.nvml_lib).resolve().parent)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (lib_dir, env.get("LD_LIBRARY_PATH", "")) if p)
    return env, model


def measure(a: argparse.Namespace) -> dict[str, Any]:
    env, model = prepare(a)
    import pynvml

    run = Run(a, env, pynvml)
    started = datetime.now(timezone.utc)
    run.results["meta"] = {
        "date_utc": started.strftime("%Y-%m-%d %H:%M UTC"), "load": a.load, "nvml_lib": a.nvml_lib or "system",
        "budget_s": a.budget_s, "fast_interval_s": a.fast_interval, "phase_s": run.phase_s,
        "argv": sys.argv[1:], "nvmlsource_devices": [{"uuid": d.uuid, "name": d.name, "method": d.method.value}
                                                      for d in run.measured.devices()],
        "nvmlsource_sampled_method": run.sampled.devices()[0].method.value,
    }  # fmt: skip
    run.results["inventory"] = inventory(pynvml, run.handle)
    run.sampler.start()
    phases: list[tuple[str, Callable[[], None]]] = [
        ("idle", lambda: run.single("idle", None)),
        ("steady", lambda: run.single("steady", "steady")),
        ("bursty", lambda: run.single("bursty", "bursty")),
        ("two-process", lambda: run.two_process(load_split())),
        ("tracker", lambda: run.results.__setitem__("tracker", run.tracker())),
    ]
    try:
        for name, phase in phases:
            try:  # one device call: a failing phase must not lose the others' results
                phase()
            except Exception:
                run.results.setdefault("errors", {})[name] = traceback.format_exc()
                print(f"phase {name} failed:\n{traceback.format_exc()}", file=sys.stderr)
    finally:
        run.sampler.stop()
        run.results["inventory_after"] = inventory(pynvml, run.handle)
        run.close()
        if model is not None:
            model.stop()
    run.results["sampler"] = {"samples": len(run.sampler.samples), "errors": run.sampler.errors,
                              "instant_samples": len(run.sampler.instant)}  # fmt: skip
    run.results["meta"]["wall_s"] = (datetime.now(timezone.utc) - started).total_seconds()
    run.results["_samples"] = run.sampler.samples
    return run.results


def write_outputs(results: dict[str, Any], out: Path, page: Path | None, fake: dict[str, Any] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    samples = results.pop("_samples", [])
    if samples:
        write_samples(out / "samples.csv", samples)
    tracker = results.get("tracker", {})
    if tracker:
        (out / "tracker-summary.txt").write_text(tracker.get("summary", ""))
        (out / "tracker-emissions.csv").write_text(tracker.get("csv", ""))
        (out / "tracker-run.json").write_text(json.dumps(tracker.get("json", {}), indent=2))
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    md = render_markdown(results, fake)
    (out / "summary.md").write_text(md)
    if page is not None:
        from pages import write

        if page.name not in PAGES:
            raise SystemExit(f"--page must be docs/performance/ one of {PAGES}")
        write(page, md)


def write_samples(path: Path, samples: list[tuple[float, float, float]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "power_w", "counter_j"])
        t0 = samples[0][0] if samples else 0.0
        w.writerows((f"{t - t0:.4f}", f"{pw:.3f}", f"{cj:.3f}") for t, pw, cj in samples)


def _pct(x: Any) -> str:
    return "n/a" if not isinstance(x, (int, float)) else f"{100 * x:+.1f} %"


def _share(x: Any) -> str:
    return "n/a" if not isinstance(x, (int, float)) else f"{100 * x:.1f} %"


def _num(x: Any) -> str:
    return "n/a" if not isinstance(x, (int, float)) else f"{x:.1f}"


def _ok(inv: dict[str, Any], name: str) -> str:
    r = inv.get(name, {})
    return str(r["ok"]) if "ok" in r else f"error {r.get('error')} ({r.get('name')})"


def render_markdown(r: dict[str, Any], fake_run: dict[str, Any] | None = None) -> str:
    """summary.md / the docs page, from results.json alone (so --render can redo it)."""
    meta, inv = r.get("meta", {}), r.get("inventory", {})
    fake = meta.get("load") == "fake"
    title = "dry run against the fake libnvidia-ml" if fake else f"{_ok(inv, 'nvmlDeviceGetName')}"
    lines = [
        f"# NVML validation (counter, sampling, per-process attribution): {title}",
        "",
        "Written by `python3 bench/bench_nvml_device.py` (issue 19); raw data in its results.json.",
        "",
    ]
    if fake:
        lines += [
            "**FAKE LIBRARY DRY RUN, not a GPU measurement.** The GPU here is bench/fakegpu_model.py "
            "behind the fake libnvidia-ml (src/carbontrack/sim/fakenvml.c); the numbers show that "
            "the script's comparisons run, not how a driver behaves.",
            "",
        ]
    lines += [
        f"- date: {meta.get('date_utc')}; load: {meta.get('load')}; NVML library: {meta.get('nvml_lib')}",
        f"- GPU: {_ok(inv, 'nvmlDeviceGetName')}; driver {_ok(inv, 'nvmlSystemGetDriverVersion')}; "
        f"NVML {_ok(inv, 'nvmlSystemGetNVMLVersion')}; MIG mode (read only) {_ok(inv, 'nvmlDeviceGetMigMode')}",
        f"- budget {meta.get('budget_s')} s, ran {meta.get('wall_s', 0):.0f} s; power and counter sampled "
        f"every {meta.get('fast_interval_s')} s ({r.get('sampler', {}).get('samples')} samples, errors "
        f"{r.get('sampler', {}).get('errors')}, instantaneous-power samples "
        f"{r.get('sampler', {}).get('instant_samples')})",
        "",
        "## Energy counter vs integral of sampled power",
        "",
        "Relative difference (integral - counter) / counter over each phase's window; "
        "NvmlSource columns are CarbonTrack's source on the same window (measured: the counter "
        "path; sampled: the same GPU with the counter hidden, integrating power every 0.1 s), as the "
        "relative difference of their mean power over the window from the counter's.",
        "",
        "| phase | window s | counter J | mean W | 0.02 s | 0.1 s | 1 s | 10 s | tolerance | "
        "NvmlSource measured | NvmlSource sampled |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, ph in r.get("phases", {}).items():
        by = ph.get("by_interval", {})
        cells = [_pct(by.get(k, {}).get("rel_diff")) for k in ("0.02", "0.1", "1", "10")]
        lines.append(
            f"| {name} | {ph.get('span_s', 0):.1f} | {ph.get('counter_j', 0):.1f} | "
            f"{ph.get('counter_mean_w', 0):.1f} | {' | '.join(cells)} | {100 * ph.get('tolerance', 0):.0f} % | "
            f"{_pct(ph.get('nvmlsource_measured_rel_diff'))} | {_pct(ph.get('nvmlsource_sampled_rel_diff'))} |"
        )
    att = r.get("attribution", {})
    loads = r.get("loads", {})
    lines += [
        "",
        "## Two processes, time-sliced: per-process shares of the counter",
        "",
        "Each tick the counter's joules are split by CarbonTrack's exporter rule "
        "(exporter/gpu_attribution.py: active energy by SM utilisation, idle evenly) with "
        "NvmlSource.processes() as the processes.",
        "",
        "| process | energy J | share | own busy s (launch to sync) |",
        "| --- | --- | --- | --- |",
    ]
    for owner, joules in att.get("per_owner_j", {}).items():
        lines.append(
            f"| {owner} | {joules:.1f} | {_share(att.get('per_owner_share', {}).get(owner))} | "
            f"{loads.get(owner, {}).get('busy_s', 'n/a')} |"
        )
    lines += [
        f"| unallocated | {att.get('unallocated_j', 0):.1f} | {_share(att.get('unallocated_share'))} | |",
        "",
        f"- counter over the ticks: {att.get('counter_j', 0):.1f} J in {att.get('ticks')} ticks of "
        f"{att.get('interval_s')} s; allocated + unallocated - counter: relative "
        f"{att.get('conservation_error', 0):.2e} (ok: {att.get('conservation_ok')}); unallocated "
        f"within {100 * att.get('unallocated_tolerance', 0):.0f} %: {att.get('unallocated_ok')}",
        f"- our PIDs {att.get('pids_known')}, PIDs NVML listed {att.get('pids_seen_by_nvml')}, "
        f"match: {att.get('pids_match')}",
    ]
    tr = r.get("tracker", {})
    lines += [
        "",
        "## `carbontrack run` end to end",
        "",
        f"- command: `carbontrack {' '.join(str(x) for x in tr.get('argv', [])[1:])}`",
        f"- exit {tr.get('exit')}; GPU energy reported {_num(tr.get('gpu_j'))} J; counter from the "
        f"tracker's start to its end {_num(tr.get('counter_j_around_run'))} J; reported / counter "
        f"{tr.get('ratio_to_counter') or 0:.3f}",
        "",
        "The printed summary is tracker-summary.txt beside results.json; from the run's JSON:",
        "",
        "| field | value |",
        "| --- | --- |",
    ]
    doc = tr.get("json") or {}
    for key in ("duration_s", "energy_j", "method", "uncertainty", "co2e_grams", "intensity_g_per_kwh", "devices"):
        lines.append(f"| {key} | {_cell({'ok': doc.get(key)})} |")
    for name, text in r.get("errors", {}).items():
        lines += ["", f"**Phase {name} failed** (traceback in results.json): {text.strip().splitlines()[-1]}"]
    lines += ["", "## What the library answered", "", "| call | answer |", "| --- | --- |"]
    for name, res in inv.items():
        lines.append(f"| {name} | {_cell(res)} |")
    if fake_run is not None:
        lines += _versus_fake(inv, fake_run.get("inventory", {}))
    return "\n".join(lines) + "\n"


def _kind(res: dict[str, Any]) -> str:
    """What a call answered, without its values: success and the value's JSON type, or the error."""
    if "ok" in res:
        return f"ok ({type(res['ok']).__name__})"
    return f"error {res.get('error')}"


def _versus_fake(real: dict[str, Any], fake: dict[str, Any]) -> list[str]:
    """The driver's answers beside the fake library's (a --load fake run's results.json)."""
    lines = [
        "",
        "## The driver against the fake library",
        "",
        "Same call, this run's answer kind vs the fake dry run's (values differ by design; a "
        "different kind is a difference to fix in the fake or to explain).",
        "",
        "| call | driver | fake | same kind |",
        "| --- | --- | --- | --- |",
    ]
    for name in real:
        here, there = _kind(real[name]), _kind(fake.get(name, {"error": "not asked"}))
        lines.append(f"| {name} | {here} | {there} | {'yes' if here == there else '**no**'} |")
    return lines


def _cell(res: dict[str, Any]) -> str:
    text = json.dumps(res["ok"]) if "ok" in res else f"error {res.get('error')} ({res.get('name')})"
    return (text if len(text) <= 160 else text[:157] + "...").replace("|", "/")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out", type=Path, required=True, help="directory for results.json, summary.md, ...")
    p.add_argument("--budget-s", type=float, default=300.0, help="the whole run stops within this")
    p.add_argument("--load", choices=("cuda", "fake"), default="cuda")
    p.add_argument("--nvml-lib", default=None, help="path of libnvidia-ml.so.1 (default: the system's)")
    p.add_argument("--fast-interval", type=float, default=0.02, help="power/counter sampling, s")
    p.add_argument("--attribution-interval", type=float, default=1.0, help="two-process split ticks, s")
    p.add_argument("--raw-limit", type=int, default=40, help="raw process snapshots kept")
    p.add_argument("--page", type=Path, help="also write the summary as this docs/performance page")
    p.add_argument("--render", type=Path, help="only re-render summary/page from a results.json")
    p.add_argument("--compare-fake", type=Path, help="with --render: a --load fake results.json to set beside it")
    a = p.parse_args()
    if a.render:
        fake = json.loads(a.compare_fake.read_text()) if a.compare_fake else None
        write_outputs(json.loads(a.render.read_text()), a.out, a.page, fake)
        return 0
    if a.budget_s < 10:
        p.error("--budget-s must be at least 10")
    write_outputs(measure(a), a.out, a.page)
    print(f"wrote {a.out}/results.json and summary.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
