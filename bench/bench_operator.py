"""Operator accounting throughput and latency on the local control plane.

Starts the devcluster stack (etcd, kube-apiserver, controller-manager, scheduler, kwok,
node simulator, exporters, Prometheus), the CarbonBudget CRD and `carbontrack operator` as a
process; creates N short Jobs (default 1,000) so that they finish within about a minute;
watches the Jobs and records, per Job, when the watch first showed it finished and when it
first showed the `carbontrack.io/accounted-at` annotation. Samples the operator's RSS from
/proc every second. Writes docs/performance/operator.md.

Run: `python3 bench/bench_operator.py [--jobs N] [--create-over S]`.
Targets (issue 6): all annotated within 60 s of their final scrape; p99 completion ->
annotation under scrape interval + 5 s; RSS under 150 MiB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "performance" / "operator.md"
sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages  # noqa: E402

SCRAPE_S = 1.0  # the devcluster's Prometheus scrape interval
NO_DATA_AFTER_S = 60.0  # a Job without series is declared "no data" this long after it ends


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class JobWatch(threading.Thread):
    """Records first-seen times (monotonic) of 'finished' and 'accounted' per Job name."""

    def __init__(self, batch: Any, namespace: str) -> None:
        super().__init__(daemon=True)
        self.batch, self.namespace = batch, namespace
        self.finished: dict[str, float] = {}
        self.accounted: dict[str, float] = {}
        self.no_data: set[str] = set()
        self.failed_jobs: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        from kubernetes import watch

        rv = None
        while not self.stop.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(self.batch.list_namespaced_job, self.namespace,
                                   resource_version=rv, timeout_seconds=30):
                    job = ev["object"]
                    rv = job.metadata.resource_version
                    now = time.monotonic()
                    name = job.metadata.name
                    conds = job.status.conditions or [] if job.status else []
                    for c in conds:
                        if c.type in ("Complete", "Failed") and c.status == "True":
                            self.finished.setdefault(name, now)
                            if c.type == "Failed":
                                self.failed_jobs.add(name)
                    ann = job.metadata.annotations or {}
                    if "carbontrack.io/accounted-at" in ann:
                        self.accounted.setdefault(name, now)
                        if ann.get("carbontrack.io/co2e-grams") == "no-data":
                            self.no_data.add(name)
                    if self.stop.is_set():
                        break
            except Exception:  # watch expired or connection reset: resume from the last rv
                rv = None
                time.sleep(0.5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--create-over", type=float, default=45.0, help="spread creation over S seconds")
    p.add_argument("--run-seconds", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=600.0)
    args = p.parse_args(argv)

    import tempfile

    import yaml
    from kubernetes import client

    from carbontrack.devcluster.binaries import ensure_all
    from carbontrack.devcluster.kube import api_client
    from carbontrack.devcluster.process import install_cleanup
    from carbontrack.devcluster.stack import start_stack
    from carbontrack.devcluster.workloads import sim_job

    state = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    binaries = ensure_all(root=REPO, log=state / "build.log")
    stack = start_stack(state, binaries)
    unregister = install_cleanup(stack.stop)
    try:
        kubeconfig = Path(stack.cluster.kubeconfig)
        with api_client(kubeconfig) as api:
            ext = client.ApiextensionsV1Api(api)
            for name in ("carbonbudgets", "carbonrecords"):  # the operator's CRDs
                crd = yaml.safe_load((REPO / "crds" / f"{name}.carbontrack.io.yaml").read_text())
                ext.create_custom_resource_definition(crd)
            core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
            ns = "bench-operator"
            core.create_namespace({"metadata": {"name": ns}})
            time.sleep(2)  # CRD established
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                "carbontrack.io", "v1alpha1", ns, "carbonbudgets",
                {"apiVersion": "carbontrack.io/v1alpha1", "kind": "CarbonBudget",
                 "metadata": {"name": "all"},
                 "spec": {"limit": "1t", "period": {"type": "Calendar", "calendar": "Month"},
                          "selector": {}}})
            op = stack.supervisor.start("operator", [
                sys.executable, "-m", "carbontrack", "operator", f"--prometheus-url={stack.prometheus.url}",
                f"--namespace={ns}", "--standalone", f"--kubeconfig={kubeconfig}",
                "--listen=127.0.0.1:0", f"--scrape-interval={SCRAPE_S:g}", "--accounting-delay=1",
                "--projection-interval=0", "--budget-interval=5", "--log-level=WARNING",
                f"--no-data-after={NO_DATA_AFTER_S:g}",
            ])
            watch = JobWatch(batch, ns)
            watch.start()
            time.sleep(3)
            rss: list[float] = []
            t0 = time.monotonic()
            for i in range(args.jobs):
                due = t0 + args.create_over * i / args.jobs
                while time.monotonic() < due:
                    time.sleep(0.01)
                body = sim_job(f"b{i:04d}", run_seconds=args.run_seconds, cpu_cores=0.05,
                               memory_request="8Mi")
                batch.create_namespaced_job(ns, body)
                if i % 50 == 0 and (r := rss_mib(op.pid)) is not None:
                    rss.append(r)
            created_s = time.monotonic() - t0
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline and len(watch.accounted) < args.jobs:
                if (r := rss_mib(op.pid)) is not None:
                    rss.append(r)
                time.sleep(1)
            watch.stop.set()
            total_s = time.monotonic() - t0
            latencies = [watch.accounted[n] - watch.finished[n]
                         for n in watch.accounted if n in watch.finished and n not in watch.no_data]
            last_finish = max(watch.finished.values()) - t0 if watch.finished else float("nan")
            write_page(args, created_s, total_s, last_finish, len(watch.finished),
                       len(watch.accounted), len(watch.failed_jobs), latencies, rss,
                       len(watch.no_data))
    finally:
        stack.stop()
        unregister()
    return 0


def write_page(args: argparse.Namespace, created_s: float, total_s: float, last_finish_s: float,
               finished: int, accounted: int, failed: int, latencies: list[float],
               rss: list[float], no_data: int) -> None:
    load = os.getloadavg()[0]
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = percentile(latencies, 0.99) if latencies else float("nan")
    worst = max(latencies) if latencies else float("nan")
    peak = max(rss) if rss else float("nan")
    all_in_60 = accounted == args.jobs and worst - SCRAPE_S <= 60
    lines = [
        "# Operator accounting throughput and latency",
        "",
        f"Measured by `bench/bench_operator.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC;",
        f"{os.cpu_count()} logical CPUs shared with the whole local control plane (etcd, kube-apiserver,",
        "controller-manager, scheduler, kwok, node simulator, 3 exporters, Prometheus) and other jobs;",
        f"1-minute load average {load:.1f} at the end. One run.",
        "",
        f"Workload: {args.jobs} Jobs (one pod each, {args.run_seconds:g} s on a kwok node) created",
        f"over {created_s:.0f} s; Prometheus scrape interval {SCRAPE_S:g} s; operator settings",
        f"`--scrape-interval=1 --accounting-delay=1 --no-data-after={NO_DATA_AFTER_S:g}`. Latency = first",
        "watch event showing `carbontrack.io/accounted-at` minus first watch event showing the Job",
        "finished, over the Jobs with energy data (a Job whose pods have no series waits",
        "`--no-data-after` by design before it is declared \"no data\"; those are counted apart).",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| Jobs finished / accounted | {finished} / {accounted} (failed: {failed}) | all |",
        f"| of those, no energy series (exporter) | {no_data} | 0 |",
        f"| last Job finished after start | {last_finish_s:.0f} s | ~60 s |",
        f"| completion -> annotation p50 | {p50:.1f} s | |",
        f"| completion -> annotation p99 | {p99:.1f} s | < {SCRAPE_S + 5:g} s |",
        f"| completion -> annotation max | {worst:.1f} s | <= 60 s after final scrape |",
        f"| operator RSS peak | {peak:.0f} MiB | < 150 MiB |",
        f"| whole run | {total_s:.0f} s | |",
        "",
        f"All Jobs annotated; those with data within 60 s of their final scrape: "
        f"**{'met' if all_in_60 else 'NOT met'}**; "
        f"p99 target: **{'met' if p99 < SCRAPE_S + 5 else 'NOT met'}**; "
        f"RSS target: **{'met' if peak < 150 else 'NOT met'}**.",
        "",
    ]
    pages.write(PAGE, "\n".join(lines))  # keeps the page's dated "## Notes"
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
