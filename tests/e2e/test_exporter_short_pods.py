"""Short Jobs get a labelled energy series (operator benchmark finding: with 1,000
two-second Jobs, 145-215 never got one).

A 2-s Job pod's cgroup lives ~4 s on its kwok node (2 s running + the simulator's 2 s
cleanup lag). Its node exporter's pod watch can deliver the pod after the cgroup appeared
(or after it is gone); the energy it recorded meanwhile must still end up in a series with
the Job's owner labels, the one the operator selects (``owner_uid``), counted once. Real
apiserver, scheduler, Job controller, kwok, simulator, exporters and Prometheus.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytest

from carbontrack.devcluster.workloads import sim_job

pytestmark = pytest.mark.e2e

# a larger burst for measuring (docs/exporter.md gives the numbers): the env variable
N_JOBS = int(os.environ.get("CARBONTRACK_E2E_SHORT_JOBS", "30"))
RUN_S = 2.0
METRIC = "carbontrack_container_energy_joules_total"


def test_every_short_job_pod_has_an_owner_labelled_energy_series(
    namespace: str, batch_v1: Any, core_v1: Any, prometheus: Any, simulator: Any,
    wait_for: Any,
) -> None:
    names = [f"short-{i:03d}" for i in range(N_JOBS)]
    for name in names:  # created back to back, like the benchmark's burst
        batch_v1.create_namespaced_job(namespace, sim_job(name, run_seconds=RUN_S,
                                                          cpu_cores=1, cpu_request="10m",
                                                          memory_request="16Mi"))

    def all_done() -> dict[str, Any] | None:
        jobs = {j.metadata.name: j for j in batch_v1.list_namespaced_job(namespace).items}
        done = {n: j for n, j in jobs.items() if j.status.succeeded == 1}
        return done if len(done) == N_JOBS else None

    jobs = wait_for(f"{N_JOBS} short Jobs to succeed", all_done, 240 + N_JOBS)
    pods = {p.metadata.labels["job-name"]: p
            for p in core_v1.list_namespaced_pod(namespace).items}
    assert sorted(pods) == sorted(names)  # one pod per Job (backoffLimit 0, no retries)
    # A pod the node simulator never ran has no cgroup: nothing for an exporter to see. Under
    # load its pod watch can miss a pod that ran and ended within its relist gap (a
    # devcluster limitation, reported); such pods are left out of the exporter check and
    # said in a warning.
    never_ran = sorted(n for n in names if simulator.record(pods[n].metadata.uid) is None)
    if never_ran:
        warnings.warn(f"{len(never_ran)} of {N_JOBS} pods never ran in the node simulator "
                      f"(its pod watch missed them): {never_ran}", stacklevel=1)
    # A pod the simulator ran without drawing any energy (every component 0 J: seen once in
    # CI, a 2.06 s run on a cluster that had just started) has no energy to label either.
    drew_nothing = sorted(n for n in names if n not in never_ran and not any(
        simulator.record(pods[n].metadata.uid).joules.values()))
    if drew_nothing:
        warnings.warn(f"{len(drew_nothing)} of {N_JOBS} pods drew no simulated energy: "
                      f"{drew_nothing}", stacklevel=1)
    never_ran = sorted({*never_ran, *drew_nothing})
    assert len(never_ran) < N_JOBS // 2, "the node simulator ran too few pods to test"
    want = {jobs[n].metadata.uid: pods[n].metadata.uid for n in names
            if n not in never_ran}  # job uid -> pod uid

    def labelled() -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for s in prometheus.query(f'{METRIC}{{namespace="{namespace}",owner_kind="Job"}}'):
            found.setdefault(s["metric"]["owner_uid"], []).append(s)
        return found

    def every_job_labelled() -> dict[str, list[dict[str, Any]]] | None:
        found = labelled()
        return found if set(want) <= set(found) else None

    try:
        found = wait_for("every short Job's energy series with its owner_uid",
                         every_job_labelled, 90)
    except Exception as err:
        missing = sorted(set(want) - set(labelled()))
        # a pod the node simulator never ran (its watch saw only the final phase) has no
        # cgroup at all: a devcluster miss, not the exporter's; said apart
        detail = []
        for j in missing:
            rec = simulator.record(want[j])
            ran = None if rec is None or rec.ended is None else round(rec.ended - rec.started, 2)
            any_series = prometheus.query(f'{METRIC}{{pod_uid="{want[j]}"}}')
            detail.append((j, ran, dict(rec.joules) if rec else None,
                           [x["metric"].get("container") for x in any_series]))
        raise AssertionError(f"{len(missing)} of {len(want)} short Jobs have no energy series "
                             f"with their owner_uid (job uid, simulated run s, simulated "
                             f"joules, containers of any series): {detail}") from err
    for job_uid, series in found.items():
        if job_uid not in want:
            continue
        for s in series:
            m = s["metric"]
            # the Job's pod, named by the API (never a bare runtime id with an owner)
            assert (m["pod_uid"], m["owner_name"], m["namespace"]) == (
                want[job_uid], m["pod"].rsplit("-", 1)[0], namespace)
            assert float(s["value"][1]) > 0.0
    # no energy of these pods left in a series without owner labels (counted once: moved)
    pod_uids = "|".join(sorted(want.values()))
    stray = prometheus.query(f'{METRIC}{{pod_uid=~"{pod_uids}",owner_uid=""}}')
    assert stray == []
