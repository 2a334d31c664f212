"""Job creation latency with and without CarbonTrack's admission policies, side by side.

Starts the local control plane (etcd, kube-apiserver 1.36, controller-manager, scheduler,
kwok), the CarbonBudget/CarbonRecord CRDs and, in one namespace, two CarbonBudgets (one
exceeded with action Suspend, one not) as the mutating policy's parameters. Then creates Jobs
in alternating rounds, policies off / on (the chart's ValidatingAdmissionPolicy and
MutatingAdmissionPolicy with their bindings, rendered by helm), and times each create call
from the client. Half of the Jobs match the exceeded budget (the mutating policy suspends
them), half do not. Every Job is created with spec.suspend so that no pods are made in either
round (the comparison is of admission, not of the Job controller). Writes
docs/performance/admission.md.

Run: `python3 bench/bench_admission.py [--jobs-per-round N] [--rounds R]`.
Target (issue 14): the policies add <= 10 ms to Job creation p99.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "performance" / "admission.md"
NS = "bench-admission"
TARGET_MS = 10.0
_PROBES = itertools.count()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def render_policies(helm: Path) -> list[dict[str, Any]]:
    import yaml

    text = subprocess.run(
        [str(helm), "template", "bench", str(REPO / "charts" / "carbontrack"), "-n", "carbontrack",
         "--kube-version", "1.36.3", "--show-only", "templates/admission-policies.yaml"],
        capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def job(name: str, team: str) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": {"team": team}},
            "spec": {"suspend": True, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "registry.invalid/x:1"}]}}}}


def timed_round(batch: Any, tag: str, n: int) -> list[float]:
    out = []
    for i in range(n):
        body = job(f"{tag}-{i:04d}", "hold" if i % 2 == 0 else "free")
        t0 = time.perf_counter()
        batch.create_namespaced_job(NS, body)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def wait_policies(batch: Any, active: bool) -> None:
    """Each policy reaches admission through its own informer: probe both (the validating one
    refuses a forged annotation, the mutating one holds a matching Job) until both are as
    wanted, so no round is measured with one policy half on."""
    from kubernetes.client.exceptions import ApiException

    for _ in range(300):
        tag = f"{int(active)}-{next(_PROBES)}"
        forged = job(f"probe-v{tag}", "x")
        forged["metadata"]["annotations"] = {"carbontrack.io/accounted-at": "2026-01-01T00:00:00Z"}
        try:
            batch.create_namespaced_job(NS, forged)
            refused = False
        except ApiException as err:
            refused = err.status == 403
        made = batch.create_namespaced_job(NS, job(f"probe-m{tag}", "hold"))
        held = "carbontrack.io/suspended-by" in (made.metadata.annotations or {})
        if refused == active and held == active:
            return
        time.sleep(0.2)
    raise RuntimeError("admission policies did not reach the wanted state")


def held_in(batch: Any, prefix: str) -> int:
    return sum(1 for j in batch.list_namespaced_job(NS).items
               if j.metadata.name.startswith(prefix)
               and (j.metadata.annotations or {}).get("carbontrack.io/suspended-by") == f"{NS}/hold")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs-per-round", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of each kind, interleaved")
    a = ap.parse_args(argv)

    import yaml
    from kubernetes import client, dynamic
    from kubernetes.client.exceptions import ApiException

    from carbontrack.devcluster.binaries import ensure_all
    from carbontrack.devcluster.controlplane import start_local_cluster
    from carbontrack.devcluster.kube import api_client
    from carbontrack.devcluster.process import install_cleanup

    state = Path("/tmp/carbontrack-bench-admission")
    subprocess.run(["rm", "-rf", str(state)], check=True)
    binaries = ensure_all(root=REPO, log=state / "build.log")
    cluster = start_local_cluster(state, binaries, nodes=())
    unregister = install_cleanup(cluster.stop)
    samples: dict[str, list[float]] = {"off": [], "on": []}
    try:
        with api_client(Path(cluster.kubeconfig)) as api:
            ext = client.ApiextensionsV1Api(api)
            for name in ("carbonbudgets", "carbonrecords"):
                ext.create_custom_resource_definition(
                    yaml.safe_load((REPO / "crds" / f"{name}.carbontrack.io.yaml").read_text()))
            time.sleep(2)
            client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
            custom = client.CustomObjectsApi(api)
            for name, exceeded in (("hold", True), ("other", False)):
                custom.create_namespaced_custom_object("carbontrack.io", "v1alpha1", NS, "carbonbudgets", {
                    "apiVersion": "carbontrack.io/v1alpha1", "kind": "CarbonBudget", "metadata": {"name": name},
                    "spec": {"limit": "1g", "period": {"type": "Calendar", "calendar": "Month"},
                             "selector": {"matchLabels": {"team": name}}, "action": "Suspend"}})
                custom.patch_namespaced_custom_object_status(
                    "carbontrack.io", "v1alpha1", NS, "carbonbudgets", name, {"status": {"exceeded": exceeded}})
            batch = client.BatchV1Api(api)
            dyn = dynamic.DynamicClient(api)
            docs = render_policies(binaries.helm)
            timed_round(batch, "warmup", 50)
            for r in range(a.rounds):
                for kind in ("off", "on"):
                    for doc in docs:
                        res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
                        if kind == "on":
                            res.create(body=doc)
                        else:
                            with contextlib.suppress(ApiException):  # absent in the first round
                                res.delete(name=doc["metadata"]["name"])
                    wait_policies(batch, kind == "on")
                    samples[kind] += timed_round(batch, f"{kind}-{r}", a.jobs_per_round)
                    print(f"round {r} {kind}: p99 {percentile(samples[kind], 99):.1f} ms", file=sys.stderr)
            held = {kind: held_in(batch, f"{kind}-") for kind in ("off", "on")}
    finally:
        cluster.stop()
        unregister()
    write_page(samples, a, held)
    return 0


def write_page(samples: dict[str, list[float]], a: argparse.Namespace, held: dict[str, int]) -> None:
    def row(name: str, fn: Any) -> str:
        off, on = fn(samples["off"]), fn(samples["on"])
        return f"| {name} | {off:.1f} ms | {on:.1f} ms | {on - off:+.1f} ms |"

    p99_delta = percentile(samples["on"], 99) - percentile(samples["off"], 99)
    load = Path("/proc/loadavg").read_text().split()[0]
    PAGE.write_text(f"""# Admission policies: Job creation latency

Measured by `bench/bench_admission.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; local
control plane (kube-apiserver 1.36.3 built from Go modules, etcd without fsync) on the same
2 logical CPUs as the client; 1-minute load average {load} at the end. One run.

Workload: {a.rounds} rounds of {a.jobs_per_round} Job creations with the policies off and
{a.rounds} with them on, interleaved (off, on, off, on, ...), one client, sequential creates;
half of the Jobs match an exceeded Suspend budget (created held: {held["on"]} with the policies
on, {held["off"]} with them off), two CarbonBudgets in the namespace as parameters. Before each
round both policies are probed until they are wholly on or off. Latency is the client-side time
of the create call (TLS connection reused).

| statistic | policies off | policies on | difference |
|---|---|---|---|
{row("p50", statistics.median)}
{row("p90", lambda v: percentile(v, 90))}
{row("p99", lambda v: percentile(v, 99))}
{row("max", max)}

Creates per kind: {len(samples["off"])}. Target: the policies add at most {TARGET_MS:.0f} ms to p99:
**{"met" if p99_delta <= TARGET_MS else "not met"}** ({p99_delta:+.1f} ms).
""")
    print(PAGE.read_text())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
