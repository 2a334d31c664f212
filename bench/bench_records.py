"""Size of the operator's CarbonRecords at 100,000 accounted Jobs a month (no cluster needed).

Builds record entries exactly as the operator does (``build_accounting`` from query answers,
``Accounting.annotations``, ``build_entry``) for Jobs shaped like real training Jobs (pods on
1-4 nodes, CPU + DRAM + GPU components, a team and model label, a pod template with GPU
limits and a node selector, the PromQL the accountant runs), files them into record objects
as the record store does (namespace, UTC day, 16 UID shards, 768 KiB per object before a
link), and reports the entry and object sizes against etcd's 1.5 MiB request limit. Writes
docs/performance/records.md.

Run: `python3 bench/bench_records.py [--jobs-per-month N]`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "performance" / "records.md"
ETCD_LIMIT = 1.5 * 2**20


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs-per-month", type=int, default=100_000)
    a = ap.parse_args(argv)

    from carbontrack.operator import promql
    from carbontrack.operator.accounting import build_accounting
    from carbontrack.operator.jobs import job_facts
    from carbontrack.operator.prometheus import Sample

    from carbontrack.core.records import MAX_OBJECT_BYTES, build_entry, entry_bytes, record_day, shard_of

    rng = random.Random(14)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    sizes: list[int] = []
    objects: dict[tuple[str, int], int] = defaultdict(int)  # (day, shard) -> bytes, one namespace
    for i in range(a.jobs_per_month):
        uid = str(uuid.UUID(int=rng.getrandbits(128)))
        created = start + timedelta(seconds=rng.uniform(0, 30 * 86400 - 7200))
        ended = created + timedelta(seconds=rng.uniform(60, 7200))
        nodes = [f"gpu-node-{rng.randrange(200):03d}" for _ in range(rng.choice((1, 1, 2, 4)))]
        job = job_facts({
            "metadata": {"uid": uid, "name": f"train-llm-{i:06d}", "namespace": "ml-research",
                         "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "labels": {"team": "nlp", "carbontrack.io/model": "llm-7b",
                                    "app.kubernetes.io/part-of": "pretraining"},
                         "annotations": {"carbontrack.io/mlflow-run-id": uuid.uuid4().hex}},
            "spec": {"parallelism": len(nodes), "template": {"spec": {
                "nodeSelector": {"node.kubernetes.io/instance-type": "p4d.24xlarge"},
                "containers": [{"name": "train", "image": "x", "resources": {
                    "requests": {"cpu": "8", "memory": "64Gi"}, "limits": {"nvidia.com/gpu": "8"}}}]}}},
            "status": {"startTime": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "completionTime": ended.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "conditions": [{"type": "Complete", "status": "True"}]},
        })
        energy, co2e = [], []
        for node in nodes:
            for comp, method, joules in (("cpu", "measured", 3e6), ("dram", "measured", 4e5),
                                         ("gpu", "measured", 2e7)):
                labels = {"node": node, "component": comp, "method": method}
                energy.append(Sample(labels, joules * rng.uniform(0.5, 1.5)))
                co2e.append(Sample(labels, joules / 3.6e6 * 380 * rng.uniform(0.5, 1.5)))
        pue = [Sample({"node": n}, 1.12) for n in nodes]
        intensity = [Sample({"node": n, "zone": "US-CAL-CISO", "source": "Electricity Maps 2024",
                             "basis": "average, lifecycle, location-based"}, 250.0) for n in nodes]
        pods = [Sample({"pod_uid": str(uuid.uuid4()), "component": "gpu"}, 1) for _ in nodes]
        acc = build_accounting(job, created, ended + timedelta(seconds=60), energy, co2e, pue, intensity, pods)
        window_s = (ended - created).total_seconds() + 60
        queries = {"energy": promql.job_totals(promql.ENERGY, uid, window_s),
                   "co2e": promql.job_totals(promql.CO2E, uid, window_s),
                   "pue": promql.node_pue(nodes, window_s),
                   "intensity": promql.node_intensity(nodes, window_s),
                   "pods": promql.job_pods(uid, window_s)}
        data = build_entry(
            uid=uid, namespace=job.namespace, name=job.name, kind="Job", outcome="Complete",
            started_at=created, finished_at=ended, accounted_at=ended + timedelta(seconds=40),
            co2e_grams=acc.co2e_grams, energy_kwh=acc.energy_kwh, labels=job.labels,
            budgets=frozenset({"ml-research/nlp-monthly"}), annotations=acc.annotations(ended),
            inputs={"carbontrack.io/mlflow-run-id": job.annotations["carbontrack.io/mlflow-run-id"]},
            template=job.template, parallelism=job.parallelism, queries=queries)
        size = entry_bytes(data)
        sizes.append(size)
        objects[(record_day(ended), shard_of(uid))] += size + len(json.dumps(uid)) + 1
    write_page(a.jobs_per_month, sizes, objects, MAX_OBJECT_BYTES)
    return 0


def write_page(jobs: int, sizes: list[int], objects: dict[tuple[str, int], int], max_object: int) -> None:
    per_object = sorted(objects.values())
    days = len({d for d, _ in objects})
    needing_link = sum(1 for v in per_object if v > max_object)
    PAGE.write_text(f"""# Operator records: sizes at {jobs:,} Jobs a month

Written by `bench/bench_records.py` (no cluster: entries are built with the operator's own
`build_accounting`, `Accounting.annotations` and `build_entry`, for Jobs on 1-4 GPU nodes with
CPU, DRAM and GPU components, labels, an MLflow run id, a pod template and the accountant's
PromQL), all {jobs:,} in **one** namespace (the worst case for object size), finish times spread
over 30 days, filed as the record store files them (UTC day x 16 UID shards).

| figure | value |
|---|---|
| entry size median / max | {statistics.median(sizes):,.0f} / {max(sizes):,} bytes |
| record objects | {len(per_object):,} ({days} days x up to 16 shards) |
| object size median / max | {statistics.median(per_object) / 1024:,.0f} / {per_object[-1] / 1024:,.0f} KiB |
| objects that would need a link object (> {max_object // 1024} KiB) | {needing_link} |
| largest object vs etcd's request limit (1.5 MiB) | {100 * per_object[-1] / ETCD_LIMIT:.0f} % |
| total per month | {sum(per_object) / 2**20:,.1f} MiB |
""")
    print(PAGE.read_text())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
