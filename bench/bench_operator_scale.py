"""Operator at scale on the local control plane: accounting throughput and latency with
1,000 and 5,000 Jobs, and memory with 10,000 Jobs present.

bench/bench_operator.py (the operator owner's bench) measures one run of N Jobs; this one
runs the sizes issue 9 asks for in one go and writes docs/performance/operator-scale.md.

1. Throughput/latency: N short Jobs (one kwok pod each, 2 s) created over a spread, a
   `carbontrack operator` process accounting them; per Job, first watch event showing it
   finished -> first showing `carbontrack.io/accounted-at`. Throughput = Jobs accounted /
   (last annotation - first completion).
2. Memory with 10,000 Jobs present: 10,000 suspended Jobs (no pods: the API objects, the
   operator's watch cache and its per-Job finalizer patch, without 10,000 simulated pods
   that this 2-CPU machine cannot run at once); operator RSS sampled every second until it
   has put its finalizer on every Job, then for 20 s more.

Run: python3 bench/bench_operator_scale.py [--quick]   (--quick: 200 and 1,000 Jobs, 2,000
present). Needs the local control plane binaries (see docs/e2e.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "performance" / "operator-scale.md"
sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages  # noqa: E402
from bench_operator import JobWatch, percentile, rss_mib  # noqa: E402  (the owner's helpers)

FINALIZER = "carbontrack.io/accounting"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_operator(stack: Any, ns: str, kubeconfig: Path, name: str) -> Any:
    return stack.supervisor.start(name, [
        sys.executable, "-m", "carbontrack", "operator", f"--prometheus-url={stack.prometheus.url}",
        f"--namespace={ns}", "--standalone", f"--kubeconfig={kubeconfig}",
        "--listen=127.0.0.1:0", "--scrape-interval=1", "--accounting-delay=1",
        "--projection-interval=0", "--budget-interval=5", "--log-level=WARNING",
    ])


def make_namespace(api: Any, ns: str) -> None:
    from kubernetes import client

    client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "carbontrack.io", "v1alpha1", ns, "carbonbudgets",
        {"apiVersion": "carbontrack.io/v1alpha1", "kind": "CarbonBudget",
         "metadata": {"name": "all"},
         "spec": {"limit": "1t", "period": {"type": "Calendar", "calendar": "Month"},
                  "selector": {}}})


def throughput(stack: Any, api: Any, kubeconfig: Path, n: int, timeout_s: float) -> dict[str, float]:
    from kubernetes import client

    from carbontrack.devcluster.workloads import sim_job

    batch = client.BatchV1Api(api)
    ns = f"bench-scale-{n}"
    make_namespace(api, ns)
    op = start_operator(stack, ns, kubeconfig, f"operator-{n}")
    watch = JobWatch(batch, ns)
    watch.start()
    time.sleep(3)
    rss: list[float] = []
    spread = max(30.0, n / 20)  # ~20 Jobs/s at most: the kwok node and scheduler keep up
    t0 = time.monotonic()
    for i in range(n):
        due = t0 + spread * i / n
        while time.monotonic() < due:
            time.sleep(0.005)
        batch.create_namespaced_job(ns, sim_job(f"j{i:05d}", run_seconds=2.0, cpu_cores=0.01,
                                                memory_request="4Mi"))
        if i % 100 == 0 and (r := rss_mib(op.pid)) is not None:
            rss.append(r)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(watch.accounted) < n:
        if (r := rss_mib(op.pid)) is not None:
            rss.append(r)
        time.sleep(1)
    watch.stop.set()
    cpu = cpu_seconds(op.pid)
    stack.supervisor.stop_one(op)
    lat = [watch.accounted[j] - watch.finished[j] for j in watch.accounted if j in watch.finished]
    lat_data = [watch.accounted[j] - watch.finished[j] for j in watch.accounted
                if j in watch.finished and j not in watch.no_data]
    first = min(watch.finished.values()) if watch.finished else float("nan")
    last = max(watch.accounted.values()) if watch.accounted else float("nan")
    return {"n": n, "finished": len(watch.finished), "accounted": len(watch.accounted),
            "p50": statistics.median(lat) if lat else float("nan"),
            "p99": percentile(lat, 0.99) if lat else float("nan"),
            "max": max(lat) if lat else float("nan"),
            "no_data": len(watch.no_data), "failed": len(watch.failed_jobs),
            "p99_data": percentile(lat_data, 0.99) if lat_data else float("nan"),
            "rate": len(watch.accounted) / (last - first) if last > first else float("nan"),
            "rss": max(rss) if rss else float("nan"), "cpu": cpu, "spread": spread}


def memory_present(stack: Any, api: Any, kubeconfig: Path, n: int,
                   timeout_s: float) -> dict[str, float]:
    from kubernetes import client

    from carbontrack.devcluster.workloads import sim_job

    batch = client.BatchV1Api(api)
    ns = f"bench-present-{n}"
    make_namespace(api, ns)
    t0 = time.monotonic()

    def create(i: int) -> None:
        body = sim_job(f"p{i:05d}", run_seconds=60.0, cpu_cores=0.01, memory_request="4Mi")
        body["spec"]["suspend"] = True  # present, never started
        batch.create_namespaced_job(ns, body)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(create, range(n)))
    created_s = time.monotonic() - t0
    op = start_operator(stack, ns, kubeconfig, f"operator-present-{n}")
    rss: list[float] = []
    done = threading.Event()
    t1 = time.monotonic()

    def sample() -> None:
        while not done.is_set():
            if (r := rss_mib(op.pid)) is not None:
                rss.append(r)
            time.sleep(1)

    threading.Thread(target=sample, daemon=True).start()
    finalized = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        items = batch.list_namespaced_job(ns, limit=n + 1).items
        finalized = sum(1 for j in items if FINALIZER in (j.metadata.finalizers or []))
        if finalized >= n:
            break
        time.sleep(5)
    seen_s = time.monotonic() - t1
    time.sleep(20)  # steady state with every Job watched and finalized
    done.set()
    steady = rss_mib(op.pid) or float("nan")
    cpu = cpu_seconds(op.pid)
    stack.supervisor.stop_one(op)
    return {"n": n, "created_s": created_s, "finalized": finalized, "seen_s": seen_s,
            "peak": max(rss) if rss else float("nan"), "steady": steady, "cpu": cpu}


def write_page(quick: bool, present: int, mem: dict[str, float] | None,
               rows: list[dict[str, float]], sizes: tuple[int, ...]) -> None:
    load = os.getloadavg()[0]
    lines = [
        "# Operator at scale",
        "",
        f"Generated by `python3 bench/bench_operator_scale.py{' --quick' if quick else ''}` "
        f"on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. {os.cpu_count()} logical CPUs "
        "shared with the whole local control plane (etcd, kube-apiserver, controller-manager, "
        "scheduler, kwok, node simulator, 3 exporters, Prometheus) and other jobs; 1-minute "
        f"load average {load:.1f} at the end. One run per size. Operator flags: "
        "`--scrape-interval=1 --accounting-delay=1 --budget-interval=5`, one CarbonBudget "
        "selecting every Job.",
        "",
        "## Throughput and latency",
        "",
        "| Jobs | created over (s) | finished / accounted | Jobs/s accounted | completion -> "
        "annotation p50 / p99 / max (s) | p99 of Jobs with data (s) | \"no data\" Jobs "
        "| operator RSS peak (MiB) | operator CPU (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {int(r['n']):,} | {r['spread']:.0f} | {int(r['finished']):,} / "
            f"{int(r['accounted']):,} | {r['rate']:.1f} | {r['p50']:.1f} / {r['p99']:.1f} / "
            f"{r['max']:.1f} | {r['p99_data']:.1f} | {int(r['no_data']):,} | {r['rss']:.0f} | "
            f"{r['cpu']:.0f} |")
    lines += [
        "",
        "Latency includes the operator's deliberate wait: one scrape interval plus the "
        "accounting delay after completion (2 s here), so Prometheus has the final counters. "
        "A \"no data\" Job is one whose pod no exporter cycle saw (a 2 s pod between two 1 s "
        "cycles of a loaded exporter, or one the cluster ran while the node simulator lagged): "
        "the operator annotates it after `--no-data-after` (300 s), which is where a tail of "
        "about 300 s comes from; the p99 of Jobs with data leaves those out.",
        "",
        f"## Memory with {present:,} Jobs present",
        "",
    ]
    if mem is None:
        lines += ["Not measured yet in this run (it runs after the throughput sizes).", ""]
    else:
        lines += [
            f"{present:,} suspended Jobs (created in {mem['created_s']:.0f} s, in their own "
            "namespace, after the throughput runs) before the operator starts; it watched all "
            f"of them and put its accounting finalizer on {int(mem['finalized']):,} within "
            f"{mem['seen_s']:.0f} s. Operator default `--list-chunk-size=500` (paged start-up "
            "list).",
            "",
            "| Jobs present | operator RSS peak (MiB) | RSS 20 s after (MiB) | operator CPU (s) |",
            "|---|---|---|---|",
            f"| {present:,} | {mem['peak']:.0f} | {mem['steady']:.0f} | {mem['cpu']:.0f} |",
            "",
        ]
    missing = [n for n in sizes if n not in {int(r["n"]) for r in rows}]
    if missing:
        lines += [f"Not measured in this run (stopped before it finished): "
                  f"{', '.join(f'{n:,}' for n in missing)} Jobs.", ""]
    pages.write(PAGE, "\n".join(lines) + "\n")  # keeps the page's dated "## Notes"
    print("\n".join(lines))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--sizes", type=lambda t: tuple(int(x) for x in t.split(",")), default=None,
                    help="comma-separated Job counts for the throughput runs (default 1000,5000)")
    a = ap.parse_args(argv)
    sizes = a.sizes or ((200, 1000) if a.quick else (1000, 5000))
    present = 2000 if a.quick else 10000

    import tempfile

    import yaml
    from kubernetes import client

    from carbontrack.devcluster.binaries import ensure_all
    from carbontrack.devcluster.kube import api_client
    from carbontrack.devcluster.process import install_cleanup
    from carbontrack.devcluster.stack import start_stack

    state = Path(tempfile.mkdtemp(prefix="bench-operator-scale-"))
    binaries = ensure_all(root=REPO, log=state / "build.log")
    stack = start_stack(state, binaries)
    unregister = install_cleanup(stack.stop)
    rows: list[dict[str, float]] = []
    mem: dict[str, float] | None = None
    try:
        kubeconfig = Path(stack.cluster.kubeconfig)
        with api_client(kubeconfig) as api:
            for name in ("carbonbudgets", "carbonrecords"):  # the operator's CRDs
                crd = yaml.safe_load((REPO / "crds" / f"{name}.carbontrack.io.yaml").read_text())
                client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
            time.sleep(2)
            # throughput first, on an API server not yet holding the 10,000 suspended Jobs
            for n in sizes:
                rows.append(throughput(stack, api, kubeconfig, n, a.timeout))
                print(f"throughput: {rows[-1]}", file=sys.stderr)
                write_page(a.quick, present, mem, rows, sizes)  # a page even if stopped later
            mem = memory_present(stack, api, kubeconfig, present, a.timeout)
            print(f"present: {mem}", file=sys.stderr)
    finally:
        stack.stop()
        unregister()

    write_page(a.quick, present, mem, rows, sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
