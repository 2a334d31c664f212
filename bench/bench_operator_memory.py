"""Operator memory with 10,000 workloads present (issue 15): Jobs only, as
docs/performance/operator-scale.md measured it, and mixed Jobs, PyTorchJobs and JobSets.

Each set is created in its own namespace before a fresh `carbontrack operator` process
starts: 10,000 suspended Jobs (the earlier page's measure, so the figures compare), then
10,000 suspended workloads a third each Job, PyTorchJob (runPolicy.suspend) and JobSet
(spec.suspend), with their CRDs installed and no workload controller running, so only those
10,000 objects exist. Suspended, not finished: the operator watches both alike and holds its
finalizer on every suspended one (more work than a finished, accounted workload, whose
finalizer it removes), while 10,000 finished workloads would need 10,000 simulated runs this
2-CPU machine cannot make in a bench. Operator memory is sampled every second from /proc:
VmRSS (the earlier page's measure) and RssAnon (its anonymous memory: what a container's
working set counts of this process, page cache aside), until its finalizer is on every
workload, then for 20 s more.

Run: python3 bench/bench_operator_memory.py [--present N] [--sets jobs,mixed] [--profile DIR]
(--profile: the operator runs under bench/traced_operator.py, which writes tracemalloc's top
allocation sites and live objects by type to DIR; its figures are not written to the page).
Needs the local control plane binaries and the workload CRDs (docs/e2e.md). Writes
docs/performance/operator-memory.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "performance" / "operator-memory.md"
sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages  # noqa: E402
from bench_operator_scale import cpu_seconds, make_namespace  # noqa: E402

FINALIZER = "carbontrack.io/accounting"
KINDS = {  # kind -> (group, version, plural)
    "Job": ("batch", "v1", "jobs"),
    "PyTorchJob": ("kubeflow.org", "v1", "pytorchjobs"),
    "JobSet": ("jobset.x-k8s.io", "v1alpha2", "jobsets"),
}
SETS = {"jobs": ("Job",), "mixed": ("Job", "PyTorchJob", "JobSet")}


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and RssAnon of a process in MiB (empty once it has gone)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon"):
                out[key] = int(line.split()[1]) / 1024
    except OSError:
        return {}
    return out


def pod_template(name: str, container: str) -> dict[str, Any]:
    from carbontrack.devcluster.workloads import sim_job

    template: dict[str, Any] = sim_job(name, run_seconds=60.0, cpu_cores=0.01,
                                       memory_request="4Mi")["spec"]["template"]
    template["spec"]["containers"][0]["name"] = container  # the training-operator wants "pytorch"
    return template


def suspended(kind: str, name: str) -> dict[str, Any]:
    """A suspended workload of ``kind`` (never started)."""
    from carbontrack.devcluster.training_operator import jobset_defaults
    from carbontrack.devcluster.workloads import sim_job

    if kind == "Job":
        body = sim_job(name, run_seconds=60.0, cpu_cores=0.01, memory_request="4Mi")
        body["spec"]["suspend"] = True
        return body
    if kind == "PyTorchJob":
        return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name},
                "spec": {"runPolicy": {"backoffLimit": 0, "suspend": True},
                         "pytorchReplicaSpecs": {"Master": {
                             "replicas": 1, "restartPolicy": "Never",
                             "template": pod_template(name, "pytorch")}}}}
    job = {"parallelism": 1, "completions": 1, "backoffLimit": 0, "template": pod_template(name, "main")}
    spec = jobset_defaults({"replicatedJobs": [{"name": "w", "replicas": 1, "template": {"spec": job}}]})
    spec["suspend"] = True
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": name},
            "spec": spec}


def start_operator(stack: Any, ns: str, kubeconfig: Path, name: str, trace: Path | None) -> Any:
    """bench_operator_scale's operator command line, under the tracer when asked."""
    head = [sys.executable, "-m", "carbontrack"] if trace is None else [
        sys.executable, str(REPO / "bench" / "traced_operator.py"), str(trace)]
    return stack.supervisor.start(name, [
        *head, "operator", f"--prometheus-url={stack.prometheus.url}",
        f"--namespace={ns}", "--standalone", f"--kubeconfig={kubeconfig}",
        "--listen=127.0.0.1:0", "--scrape-interval=1", "--accounting-delay=1",
        "--projection-interval=0", "--budget-interval=5", "--log-level=WARNING",
    ])


def memory_present(stack: Any, api: Any, kubeconfig: Path, n: int, label: str,
                   timeout_s: float, trace: Path | None) -> dict[str, Any]:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    kinds = SETS[label]
    ns = f"bench-memory-{label}-{n}"
    make_namespace(api, ns)

    def create(i: int) -> None:
        body = suspended(kinds[i % len(kinds)], f"p{i:05d}")
        group, version, plural = KINDS[body["kind"]]
        custom.create_namespaced_custom_object(group, version, ns, plural, body)

    t0 = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(create, range(n)))
    created_s = time.monotonic() - t0
    op = start_operator(stack, ns, kubeconfig, f"operator-memory-{label}", trace)
    samples: list[dict[str, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            if m := memory_mib(op.pid):
                samples.append(m)
            time.sleep(1)

    threading.Thread(target=sample, daemon=True).start()
    t1 = time.monotonic()
    finalized = 0
    while time.monotonic() < t1 + timeout_s:
        finalized = 0
        for kind in set(kinds):
            group, version, plural = KINDS[kind]
            page: Any = custom.list_namespaced_custom_object(group, version, ns, plural, limit=n + 1)
            items = page["items"]
            finalized += sum(1 for o in items if FINALIZER in (o["metadata"].get("finalizers") or []))
        if finalized >= n:
            break
        time.sleep(5)
    seen_s = time.monotonic() - t1
    time.sleep(20)  # steady state with every workload watched and finalized
    done.set()
    steady = memory_mib(op.pid)
    cpu = cpu_seconds(op.pid)
    stack.supervisor.stop_one(op)
    client.CoreV1Api(api).delete_namespace(ns)  # the next set's operator starts on a lighter server
    nan = float("nan")
    return {"label": label, "n": n, "created_s": created_s, "finalized": finalized, "seen_s": seen_s,
            "peak": max((s["VmRSS"] for s in samples), default=nan),
            "anon_peak": max((s.get("RssAnon", nan) for s in samples), default=nan),
            "steady": steady.get("VmRSS", nan), "anon_steady": steady.get("RssAnon", nan), "cpu": cpu}


def write_page(mems: list[dict[str, Any]], shown: str) -> None:
    load = os.getloadavg()[0]
    lines = [
        "# Operator memory with 10,000 workloads present",
        "",
        f"Generated by `python3 bench/bench_operator_memory.py{shown}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. {os.cpu_count()} logical CPUs shared "
        "with the whole local control plane (etcd, kube-apiserver, controller-manager, scheduler, "
        "kwok, node simulator, 3 exporters, Prometheus) and other jobs; 1-minute load average "
        f"{load:.1f} at the end. One run per set. Target (issue 15): operator working set at most "
        "150 MiB with 10,000 workloads present.",
        "",
        "Suspended workloads created before the operator starts, each set in its own namespace "
        "with a fresh operator (flags as docs/performance/operator-scale.md: `--scrape-interval=1 "
        "--accounting-delay=1 --budget-interval=5`, default `--list-chunk-size=500`, one "
        "CarbonBudget selecting every workload); no workload controller runs, so only these "
        "objects exist. RSS is VmRSS (the measure of docs/performance/operator-scale.md), "
        "anonymous is RssAnon (what a container's working set counts of this process).",
        "",
        "| workloads present | created in (s) | finalized / within (s) | RSS peak (MiB) | "
        "RSS 20 s after (MiB) | anonymous peak / 20 s after (MiB) | operator CPU (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in mems:
        what = "Jobs" if m["label"] == "jobs" else "mixed (Jobs, PyTorchJobs, JobSets, a third each)"
        lines.append(
            f"| {m['n']:,} {what} | {m['created_s']:.0f} | {m['finalized']:,} / {m['seen_s']:.0f} | "
            f"{m['peak']:.0f} | {m['steady']:.0f} | {m['anon_peak']:.0f} / {m['anon_steady']:.0f} | "
            f"{m['cpu']:.0f} |")
    pages.write(PAGE, "\n".join(lines) + "\n")  # keeps the page's dated "## Notes"
    print("\n".join(lines))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--present", type=int, default=10000)
    ap.add_argument("--sets", default="jobs,mixed", help="comma-separated: jobs, mixed")
    ap.add_argument("--profile", type=Path, default=None, help="a folder for the tracer's reports")
    ap.add_argument("--timeout", type=float, default=900.0)
    a = ap.parse_args(argv)
    sets = [s for s in a.sets.split(",") if s]
    if unknown := [s for s in sets if s not in SETS]:
        ap.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(SETS)}")

    import tempfile

    from carbontrack.devcluster.binaries import ensure_all, ensure_workload_tools
    from carbontrack.devcluster.kube import api_client
    from carbontrack.devcluster.process import install_cleanup
    from carbontrack.devcluster.stack import start_stack
    from carbontrack.devcluster.training_operator import install_crds

    state = Path(tempfile.mkdtemp(prefix="bench-operator-memory-"))
    binaries = ensure_all(root=REPO, log=state / "build.log")
    tools = ensure_workload_tools(root=REPO, log=state / "build.log")
    stack = start_stack(state, binaries)
    unregister = install_cleanup(stack.stop)
    mems: list[dict[str, Any]] = []
    try:
        kubeconfig = Path(stack.cluster.kubeconfig)
        with api_client(kubeconfig) as api:
            install_crds(api, [REPO / "crds" / f"{p}.carbontrack.io.yaml" for p in ("carbonbudgets", "carbonrecords")]
                         + tools.crds())
            for label in sets:
                trace = None
                if a.profile is not None:
                    a.profile.mkdir(parents=True, exist_ok=True)
                    trace = a.profile / f"trace-{label}.txt"
                mems.append(memory_present(stack, api, kubeconfig, a.present, label, a.timeout, trace))
                print(f"present: {mems[-1]}", file=sys.stderr)
                if a.profile is None:
                    write_page(mems, f" {' '.join(argv)}" if argv else "")
    finally:
        stack.stop()
        unregister()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
