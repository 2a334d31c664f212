"""Mixed finished workloads at scale: Jobs, PyTorchJobs (real Kubeflow training-operator) and
JobSets (real JobSet controller) on the local control plane, accounted by a `carbontrack
operator` process; writes docs/performance/workloads.md.

N workloads, a third of each kind, created over a spread (~10 a second): a Job with one 2 s
pod; a PyTorchJob with a Master (2 s) and a Worker (1 s); a JobSet with one Job of one 2 s
pod. Latency per workload = the operator's CarbonRecord entry: ``accountedAt`` (the operator's
clock when it wrote the record) minus ``finishedAt`` (the completion time the workload's
controller wrote, which Kubernetes stores to the second, so each latency is over-stated by up
to 1 s). "Exactly once" is checked too: one record entry per workload UID, and no entry for a
JobSet's Jobs.

Run: python3 bench/bench_workloads.py [--n 1000] [--timeout 900]. Needs the local control
plane binaries and the workload controllers (scripts/build-control-plane.sh).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "performance" / "workloads.md"
sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages  # noqa: E402
from bench_operator import percentile, rss_mib  # noqa: E402  (the operator bench's helpers)
from bench_operator_scale import cpu_seconds, make_namespace, start_operator  # noqa: E402

KINDS = ("Job", "PyTorchJob", "JobSet")


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(timezone.utc)


def workload(kind: str, i: int) -> dict[str, Any]:
    from carbontrack.devcluster.training_operator import jobset_defaults
    from carbontrack.devcluster.workloads import sim_job

    def template(run_s: float, container: str = "train") -> dict[str, Any]:
        t: dict[str, Any] = sim_job("t", run_seconds=run_s, cpu_cores=0.01, memory_request="4Mi")["spec"]["template"]
        t["spec"]["containers"][0]["name"] = container
        return t

    if kind == "Job":
        return sim_job(f"j{i:05d}", run_seconds=2.0, cpu_cores=0.01, memory_request="4Mi")
    if kind == "PyTorchJob":
        return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": f"p{i:05d}"},
                "spec": {"runPolicy": {"backoffLimit": 0}, "pytorchReplicaSpecs": {
                    "Master": {"replicas": 1, "restartPolicy": "Never", "template": template(2.0, "pytorch")},
                    "Worker": {"replicas": 1, "restartPolicy": "Never", "template": template(1.0, "pytorch")}}}}
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": f"s{i:05d}"},
            "spec": jobset_defaults({"replicatedJobs": [{"name": "w", "replicas": 1, "template": {"spec": {
                "parallelism": 1, "completions": 1, "backoffLimit": 0, "template": template(2.0)}}}]})}


def create(api: Any, ns: str, body: dict[str, Any]) -> str:
    from kubernetes import client

    if body["kind"] == "Job":
        return str(client.BatchV1Api(api).create_namespaced_job(ns, body).metadata.uid)
    group, version = body["apiVersion"].split("/")
    plural = {"PyTorchJob": "pytorchjobs", "JobSet": "jobsets"}[body["kind"]]
    return str(client.CustomObjectsApi(api).create_namespaced_custom_object(group, version, ns, plural, body)[
        "metadata"]["uid"])


def record_entries(api: Any, ns: str) -> list[dict[str, Any]]:
    from kubernetes import client

    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "carbontrack.io", "v1alpha1", ns, "carbonrecords")["items"]
    return [{"uid": uid, **e} for item in items for uid, e in (item["spec"].get("entries") or {}).items()]


def run(stack: Any, api: Any, kubeconfig: Path, n: int, timeout_s: float) -> dict[str, Any]:
    ns = f"bench-workloads-{n}"
    make_namespace(api, ns)
    op = start_operator(stack, ns, kubeconfig, f"operator-workloads-{n}")
    time.sleep(3)
    uids: dict[str, str] = {}
    spread = max(30.0, n / 10)
    rss: list[float] = []
    t0 = time.monotonic()
    for i in range(n):
        due = t0 + spread * i / n
        while time.monotonic() < due:
            time.sleep(0.005)
        kind = KINDS[i % 3]
        uids[create(api, ns, workload(kind, i))] = kind
        if i % 100 == 0 and (r := rss_mib(op.pid)) is not None:
            rss.append(r)
    deadline = time.monotonic() + timeout_s
    entries: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        entries = record_entries(api, ns)
        if (r := rss_mib(op.pid)) is not None:
            rss.append(r)
        if len({e["uid"] for e in entries} & set(uids)) >= n:
            break
        time.sleep(2)
    cpu = cpu_seconds(op.pid)
    stack.supervisor.stop_one(op)
    per_uid = Counter(e["uid"] for e in entries)
    ours = [e for e in entries if e["uid"] in uids]
    lat: dict[str, list[float]] = {k: [] for k in KINDS}
    with_data: list[float] = []
    for e in ours:
        seconds = (_parse(e["accountedAt"]) - _parse(e["finishedAt"])).total_seconds()
        lat[uids[e["uid"]]].append(seconds)
        if e.get("co2eGrams") is not None:
            with_data.append(seconds)
    every = [x for v in lat.values() for x in v]
    return {"n": n, "spread": spread, "accounted": len(ours), "twice": sum(1 for c in per_uid.values() if c > 1),
            "foreign": len(entries) - len(ours), "no_data": len(ours) - len(with_data),
            "p50": statistics.median(every) if every else float("nan"),
            "p99": percentile(every, 0.99) if every else float("nan"),
            "max": max(every) if every else float("nan"),
            "p99_data": percentile(with_data, 0.99) if with_data else float("nan"),
            "by_kind": {k: (len(v), percentile(v, 0.99) if v else float("nan")) for k, v in lat.items()},
            "rss": max(rss) if rss else float("nan"), "cpu": cpu}


def write_page(r: dict[str, Any], load: float) -> None:
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Mixed workloads at scale",
        "",
        f"Generated by `python3 bench/bench_workloads.py --n {r['n']}` on {generated}. 2 logical CPUs shared "
        "with the whole local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok, node "
        "simulator, exporters, Prometheus), the Kubeflow training-operator v1.8.1 and the JobSet controller "
        f"v0.8.2, and other work; 1-minute load average {load:.1f} at the end. One run. Operator flags: "
        "`--scrape-interval=1 --accounting-delay=1 --budget-interval=5`, one CarbonBudget selecting "
        "every workload.",
        "",
        "| workloads (Job / PyTorchJob / JobSet) | created over (s) | accounted | recorded twice | entries for "
        "a JobSet's Jobs | completion -> record p50 / p99 / max (s) | p99 with data (s) | \"no data\" "
        "| operator RSS peak (MiB) | operator CPU (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {r['n']:,} | {r['spread']:.0f} | {r['accounted']:,} | {r['twice']} | {r['foreign']} | "
        f"{r['p50']:.1f} / {r['p99']:.1f} / {r['max']:.1f} | {r['p99_data']:.1f} | {r['no_data']} | "
        f"{r['rss']:.0f} | {r['cpu']:.0f} |",
        "",
        "| kind | accounted | p99 completion -> record (s) |",
        "|---|---|---|",
        *[f"| {k} | {c:,} | {p:.1f} |" for k, (c, p) in r["by_kind"].items()],
        "",
        "Latency includes the operator's deliberate wait (one scrape interval plus the accounting delay, "
        "2 s here) and up to 1 s from Kubernetes' whole-second completion times. The target (issue 15) is "
        "p99 <= scrape interval + 5 s = 6 s.",
        "",
    ]
    pages.write(PAGE, "\n".join(lines))
    print("\n".join(lines))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=900.0)
    a = ap.parse_args(argv)

    import os

    import yaml
    from kubernetes import client

    from carbontrack.devcluster.binaries import ensure_all, ensure_workload_tools
    from carbontrack.devcluster.kube import api_client
    from carbontrack.devcluster.process import install_cleanup
    from carbontrack.devcluster.stack import start_stack
    from carbontrack.devcluster.training_operator import start_jobset_controller, start_training_operator

    state = Path(tempfile.mkdtemp(prefix="bench-workloads-"))
    binaries = ensure_all(root=REPO, log=state / "build.log")
    tools = ensure_workload_tools(root=REPO, log=state / "build.log")
    stack = start_stack(state, binaries)
    unregister = install_cleanup(stack.stop)
    try:
        kubeconfig = Path(stack.cluster.kubeconfig)
        with api_client(kubeconfig) as api:
            for name in ("carbonbudgets", "carbonrecords"):  # the operator's CRDs
                crd = yaml.safe_load((REPO / "crds" / f"{name}.carbontrack.io.yaml").read_text())
                client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
            start_training_operator(api, kubeconfig, tools, stack.supervisor)
            start_jobset_controller(kubeconfig, tools.jobset, state, stack.supervisor)
            time.sleep(5)
            result = run(stack, api, kubeconfig, a.n, a.timeout)
            print(f"result: {result}", file=sys.stderr)
    finally:
        stack.stop()
        unregister()
    write_page(result, os.getloadavg()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
