"""CarbonTrack's exporter beside Kepler v0.11.4, built from its source, on one fake node.

Both exporters run at the same time, at the same 5 s interval, on the same fake tree
(bench/driven_node.py: RAPL powercap, /proc, cgroup v2), which a driver advances (energy
every 0.1 s, container CPU every second) with a steady workload whose truth it knows. For
100 and 1,000 one-container pods it reports, per exporter:

- CPU per cycle: the process's utime+stime (from /proc/<pid>/stat) over a window with no
  scrapes, divided by the window's intervals (window / 5 s), after a warm-up;
- RSS and peak RSS (VmRSS, VmHWM) at the end;
- scrape: wall time of ``GET /metrics`` over loopback, one a second (Kepler recomputes on a
  scrape when its data is older than 500 ms, as Prometheus would find it), the CPU those
  scrapes cost, the series and the body size;
- per-container error: each main container's package energy against the driver's truth
  (|estimate - truth| / truth, median and maximum over containers), and the sum given to
  containers against the truth's sum.

CarbonTrack runs with ``--idle-policy none``: Kepler gives containers only active energy,
so both then report the same quantity. Kepler runs with its defaults otherwise (all metric
levels: node, process, container, vm, pod). Kepler is built by bench/kepler_build.py and
cached; the build is not part of scripts/setup.sh or CI.

Run: python3 bench/bench_vs_kepler.py [--kepler-git DIR] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages
from driven_node import N_CPUS, PACKAGE_W, DrivenNode, Driver
from kepler_build import COMMIT, VERSION, KeplerBinary, ensure_kepler

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "performance" / "vs-kepler.md"
INTERVAL_S = 5
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class Figures:
    cpu_ms: float = 0.0
    rss_mib: float = 0.0
    hwm_mib: float = 0.0
    scrape_ms: list[float] = field(default_factory=list)
    scrape_cpu_ms: float = 0.0
    series: int = 0
    own_series: int = 0
    kib: float = 0.0
    errors: list[float] = field(default_factory=list)  # per container, fraction
    missing: int = 0
    given_ratio: float = 0.0  # sum over containers / truth sum


class Exporter:
    """One exporter process and what /proc says about it."""

    def __init__(self, name: str, cmd: list[str], log: Path, port: int | None) -> None:
        self.name = name
        self.log = log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.port = port

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}; see {self.log.name}")
            if self.port is None:
                m = re.search(rb"serving http://[\d.]+:(\d+)/", Path(self.log.name).read_bytes())
                self.port = int(m.group(1)) if m else None
            if self.port is not None:
                try:
                    self.scrape()
                    return
                except OSError:
                    pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not serving after {timeout:.0f} s; see {self.log.name}")

    def scrape(self) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=60) as r:
            body: bytes = r.read()
        return body

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_mib(self) -> tuple[float, float]:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        rss = re.search(r"VmRSS:\s+(\d+) kB", status)
        hwm = re.search(r"VmHWM:\s+(\d+) kB", status)
        assert rss is not None and hwm is not None
        return int(rss.group(1)) / 1024, int(hwm.group(1)) / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_exporters(node: DrivenNode, kepler: KeplerBinary, logs: Path) -> dict[str, Exporter]:
    ct = Exporter("carbontrack", [
        sys.executable, "-m", "carbontrack", "exporter", "--node-name", "bench",
        "--sysfs", str(node.sys), "--procfs", str(node.proc), "--interval", str(INTERVAL_S),
        "--listen", "127.0.0.1:0", "--state-dir", str(node.root / "ct-state"), "--no-kube",
        "--zone", "DE", "--idle-policy", "none", "--no-nvml"], logs / "carbontrack.log", None)
    port = free_port()
    kp = Exporter("kepler", [
        str(kepler.path), f"--host.sysfs={node.sys}", f"--host.procfs={node.proc}",
        f"--monitor.interval={INTERVAL_S}s", f"--web.listen-address=127.0.0.1:{port}"],
        logs / "kepler.log", port)
    return {"carbontrack": ct, "kepler": kp}


def samples(body: bytes, metric: str) -> list[tuple[dict[str, str], float]]:
    out = []
    prefix = metric + "{"
    for line in body.decode().splitlines():
        if line.startswith(prefix):
            labels, _, value = line[len(prefix):].rpartition("} ")
            out.append((dict(LABEL.findall(labels)), float(value)))
    return out


def estimates(name: str, body: bytes, node: DrivenNode) -> dict[str, float]:
    """Package energy per pod uid, as the exporter reports it."""
    out: dict[str, float] = {}
    if name == "carbontrack":
        for lab, v in samples(body, "carbontrack_container_energy_joules_total"):
            if lab.get("component") == "cpu":
                out[lab["pod_uid"]] = out.get(lab["pod_uid"], 0.0) + v
        return out
    by_id = {cid: u for u, cid in node.ids.items()}
    for lab, v in samples(body, "kepler_container_cpu_joules_total"):
        u = by_id.get(lab.get("container_id", ""))
        if u is not None and lab.get("zone") == "package":
            out[u] = out.get(u, 0.0) + v
    return out


def run_phases(node: DrivenNode, driver: Driver, ex: dict[str, Exporter], warmup_s: float,
               window_s: float, logs: Path) -> dict[str, Figures]:
    figs = {k: Figures() for k in ex}
    for e in ex.values():
        e.wait_ready()
    time.sleep(INTERVAL_S + 1)  # both have read the idle tree
    driver.set_running(True)
    time.sleep(warmup_s)
    cpu0 = {k: e.cpu_s() for k, e in ex.items()}
    time.sleep(window_s)
    for k, e in ex.items():
        figs[k].cpu_ms = (e.cpu_s() - cpu0[k]) * 1e3 / (window_s / INTERVAL_S)
    driver.set_running(False)
    time.sleep(INTERVAL_S + 4)  # every exporter's last cycle has the last charge
    truth = dict(node.truth_j)
    for k, e in ex.items():
        f = figs[k]
        c0 = e.cpu_s()
        body = b""
        for _ in range(10):
            t0 = time.perf_counter()
            body = e.scrape()
            f.scrape_ms.append((time.perf_counter() - t0) * 1e3)
            time.sleep(1.0)
        f.scrape_cpu_ms = (e.cpu_s() - c0) * 1e3 / 10
        f.rss_mib, f.hwm_mib = e.memory_mib()
        lines = [ln for ln in body.decode().splitlines() if ln and not ln.startswith("#")]
        f.series = len(lines)
        f.own_series = sum(1 for ln in lines if ln.startswith(k + "_"))
        f.kib = len(body) / 1024
        est = estimates(k, body, node)
        f.missing = sum(1 for u in truth if u not in est)
        f.errors = [abs(est[u] - t) / t for u, t in truth.items() if u in est]
        f.given_ratio = sum(est.values()) / sum(truth.values())
        (logs / f"{k}.prom").write_bytes(body)
    return figs


def measure(n: int, kepler: KeplerBinary, warmup_s: float, window_s: float,
            logs: Path) -> tuple[dict[str, Figures], float]:
    """Both exporters' figures at ``n`` containers, and the driver's median charge time (s)."""
    with tempfile.TemporaryDirectory() as tmp:
        node = DrivenNode(Path(tmp), n)
        with Driver(node) as driver:
            ex = start_exporters(node, kepler, logs / str(n))
            try:
                figs = run_phases(node, driver, ex, warmup_s, window_s, logs / str(n))
            finally:
                for e in ex.values():
                    e.stop()
    return figs, statistics.median(driver.charge_s)


def pct(x: float) -> str:
    return f"{x * 100:.2f}"


def verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def page(rows: dict[int, dict[str, Figures]], kepler: KeplerBinary, quick: bool,
         warmup_s: float, window_s: float, load: tuple[float, float],
         charge_s: dict[int, float]) -> str:
    import carbontrack

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    build = f"{kepler.build_s:.0f} s" if kepler.build_s is not None else "not recorded"
    out = [
        "# CarbonTrack's exporter beside Kepler",
        "",
        f"Generated by `python3 bench/bench_vs_kepler.py{' --quick' if quick else ''}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {cpu}, {os.cpu_count()} "
        f"logical CPUs, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, CarbonTrack {carbontrack.__version__}. Load average "
        f"{load[0]:.1f} at the start and {load[1]:.1f} at the end: the machine is shared, so "
        "wall times (scrapes) can be inflated; CPU times are per process.",
        "",
        f"Kepler {kepler.version} (commit `{COMMIT[:12]}`), built from source by "
        f"`bench/kepler_build.py` with CGO_ENABLED=1 (build {build}; source: {kepler.source}).",
        "",
        f"Fake node (bench/driven_node.py): {N_CPUS} CPUs, {len(PACKAGE_W)} RAPL packages "
        f"({' W and '.join(f'{w:.0f}' for w in PACKAGE_W)} W) with DRAM, cgroup v2 / systemd / "
        "containerd, one container plus the pause sandbox per pod, one process per container "
        "in /proc, and a system daemon outside every pod using one core. Each container uses "
        "a steady 0.01-0.10 cores. A driver advances energy, /proc/stat and the daemon every "
        f"{Driver.TICK_S} s and charges every container's CPU every {Driver.CHARGE_S:.0f} s, "
        "or as fast as it can write (below), with the aggregates (root cgroup, /proc/stat) "
        f"rewritten every {DrivenNode.CHUNK} containers. Both exporters run at the same time "
        f"at a {INTERVAL_S} s interval; "
        "CarbonTrack with `--idle-policy none --no-kube`, Kepler with its defaults (all metric "
        f"levels). CPU per cycle: process CPU over a {window_s:.0f} s window without scrapes "
        f"(after {warmup_s:.0f} s of warm-up) divided by its {window_s / INTERVAL_S:.0f} "
        "intervals. Scrapes: 10, one a second, after the driver stopped; Kepler recomputes "
        "on a scrape when its data is older than 500 ms. Error: each main container's package "
        "energy against the driver's truth (the linear model both document, "
        "E x busy/(CPUs x dt) x own CPU/busy, with exact inputs).",
        "",
        "| containers | exporter | CPU per cycle (ms) | % of a core | RSS (MiB) | peak RSS "
        "(MiB) | scrape wall (ms) | CPU per scrape (ms) | series (own) | KiB | error median / "
        "max (%) | containers missing | given / truth (%) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, figs in rows.items():
        for name, f in figs.items():
            err_med = pct(statistics.median(f.errors)) if f.errors else "-"
            err_max = pct(max(f.errors)) if f.errors else "-"
            out.append(
                f"| {n:,} | {name} | {f.cpu_ms:.1f} | {f.cpu_ms / 1e3 / INTERVAL_S * 100:.2f} | "
                f"{f.rss_mib:.0f} | {f.hwm_mib:.0f} | {statistics.median(f.scrape_ms):.1f} "
                f"({min(f.scrape_ms):.1f}-{max(f.scrape_ms):.1f}) | {f.scrape_cpu_ms:.1f} | "
                f"{f.series:,} ({f.own_series:,}) | {f.kib:.0f} | {err_med} / {err_max} | "
                f"{f.missing} | {f.given_ratio * 100:.2f} |")
    big = max(rows)
    ct, kp = rows[big]["carbontrack"], rows[big]["kepler"]
    cpu_x = ct.cpu_ms / kp.cpu_ms if kp.cpu_ms else float("inf")
    rss_x = ct.rss_mib / kp.rss_mib if kp.rss_mib else float("inf")
    ct_err = statistics.median(ct.errors) if ct.errors else float("inf")
    kp_err = statistics.median(kp.errors) if kp.errors else float("inf")
    out += [
        "",
        "The driver's charge of every container (bench process, not an exporter) took "
        + ", ".join(f"{charge_s[n] * 1e3:.0f} ms at {n:,}" for n in rows)
        + " containers (median).",
        "",
        "Why the errors differ: Kepler v0.11.4 splits an interval's package energy into "
        "active and idle with the CPU usage ratio of the interval before "
        "(internal/monitor/monitor.go: `calculatePower` runs `calculateNodePower` before "
        "`resources.Refresh`). Here the workload starts after both exporters' first reading "
        "and stops before the scrapes, so for one interval at each edge Kepler's containers "
        "get the wrong ratio; the error shrinks with longer steady runs and grows with "
        "churn. CarbonTrack reads the busy time of the same interval as the energy; what "
        "remains is reads that straddle a charge and rounding.",
        "",
        f"At {big:,} containers CarbonTrack's CPU per cycle is {cpu_x:.2f}x Kepler's (target "
        f"at most 0.4x: {verdict(cpu_x <= 0.4)}), its RSS {rss_x:.2f}x Kepler's (target at "
        f"most 0.5x: {verdict(rss_x <= 0.5)}), and its median per-container error "
        f"{pct(ct_err)} % against Kepler's {pct(kp_err)} % (target no worse: "
        f"{verdict(ct_err <= kp_err)}).",
        "",
    ]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kepler-git", type=Path, default=None,
                    help=f"git directory with tag {VERSION} (else the Go module proxy's zip)")
    ap.add_argument("--quick", action="store_true", help="shorter warm-up and window")
    ap.add_argument("--sizes", type=int, nargs="*", default=[100, 1000])
    a = ap.parse_args()
    kepler = ensure_kepler(a.kepler_git)
    print(f"kepler: {kepler}", file=sys.stderr)
    warmup_s, window_s = (20.0, 30.0) if a.quick else (50.0, 100.0)
    logs = REPO / "build" / "bench-vs-kepler"
    for n in a.sizes:
        (logs / str(n)).mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    rows, charge_s = {}, {}
    for n in a.sizes:
        rows[n], charge_s[n] = measure(n, kepler, warmup_s, window_s, logs)
        print(n, rows[n], file=sys.stderr)
    text = page(rows, kepler, a.quick, warmup_s, window_s, (load0, os.getloadavg()[0]),
                charge_s)
    pages.write(PAGE, text)
    print(PAGE.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
