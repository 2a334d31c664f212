"""Operator faults on the real local control plane: the operator SIGKILLed at random points
while Jobs finish and are accounted (20+ kills), and the API server restarted mid-accounting.
Afterwards every Job is accounted exactly once: one ledger entry per Job UID, the budget's
used grams equal the sum of the Jobs' annotations, no Job left unaccounted."""

from __future__ import annotations

import os
import random
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_operator import (
    accounted,
    budget_body,
    create_budget,
    get_budget,
    install_crd,
    job_pod_uids,
    nlp_job,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def crd(devstack: Any) -> None:
    from carbontrack.devcluster.kube import api_client

    with api_client(Path(devstack.cluster.kubeconfig)) as api:
        install_crd(api)  # idempotent: replaces the definition if test_operator installed it


def operator_argv(prometheus_url: str, namespace: str, kubeconfig: Path,
                  fold_after_s: float = 300.0) -> list[str]:
    return [sys.executable, "-m", "carbontrack", "operator", f"--prometheus-url={prometheus_url}",
            f"--namespace={namespace}", "--standalone", f"--kubeconfig={kubeconfig}",
            "--listen=127.0.0.1:0", "--scrape-interval=1", "--accounting-delay=1",
            "--budget-interval=1", "--projection-interval=0", f"--ledger-fold-after={fold_after_s}"]


def assert_each_job_once(batch_v1: Any, custom_objects: Any, namespace: str,
                         jobs: dict[str, str], wait_for: Any, timeout_s: float,
                         budget: str = "all") -> dict[str, Any]:
    """All Jobs annotated; every Job in the ledger exactly once (as its own entry, or folded
    into a 15-minute total under its UID tag); used == Σ annotations."""
    def all_accounted() -> dict[str, dict[str, str]] | None:
        anns = {name: accounted(batch_v1, namespace, name) for name in jobs}
        return anns if all(a is not None for a in anns.values()) else None  # type: ignore[misc]

    anns: dict[str, dict[str, str]] = wait_for("every Job accounted", all_accounted, timeout_s)

    def settled() -> dict[str, Any] | None:
        st = get_budget(custom_objects, namespace, budget).get("status") or {}
        return st if st.get("jobsCounted") == len(jobs) else None

    status = wait_for("the budget ledger", settled, 30)
    entries = status.get("ledger") or {}
    buckets = status.get("ledgerFolded") or {}
    tags = [b["uidTags"][i:i + 12] for b in buckets.values() for i in range(0, len(b["uidTags"]), 12)]
    assert set(entries) <= set(jobs.values())  # no entry of another Job
    folded = {uid.replace("-", "")[:12] for uid in jobs.values() if uid not in entries}
    assert sorted(tags) == sorted(folded)  # every other Job folded exactly once
    assert sum(b["jobs"] for b in buckets.values()) == len(folded)
    total = folded_total = 0.0
    for name, uid in jobs.items():
        grams = float(anns[name]["carbontrack.io/co2e-grams"])
        assert grams > 0
        if uid in entries:  # the annotation and the entry come from the same final counters
            assert entries[uid]["co2eGrams"] == pytest.approx(grams, rel=1e-5)
        else:
            folded_total += grams
        total += grams
    assert sum(b["co2eGrams"] for b in buckets.values()) == pytest.approx(folded_total, rel=1e-5, abs=1e-9)
    assert status["usedGrams"] == pytest.approx(total, rel=1e-5)
    return status


def kill_operators(n_kills: int, n_jobs: int, namespace: str, kubeconfig: Path,
                   prometheus: Any, batch_v1: Any, custom_objects: Any, start_process: Any,
                   wait_for: Any, devstack: Any) -> None:
    rng = random.Random(int(os.environ.get("CARBONTRACK_FAULT_SEED", "9")))
    create_budget(custom_objects, namespace, budget_body("all", "10t", selector={}))
    # the same Jobs in a rolling window: its ledger folds too (the window starts on 15-minute steps)
    rolling = budget_body("rolling", "10t", selector={})
    rolling["spec"]["period"] = {"type": "Rolling", "window": "12h"}
    create_budget(custom_objects, namespace, rolling)
    # entries fold as soon as a Job's annotation is seen: kills land during folding too
    argv = operator_argv(prometheus.url, namespace, kubeconfig, fold_after_s=0)
    jobs: dict[str, str] = {}
    kills = mid_accounting = 0
    for i in range(n_kills):
        if i < n_jobs:  # Jobs keep finishing while operators come and go
            name = f"job-{i:03d}"
            body = nlp_job(name, run_seconds=rng.uniform(1.0, 4.0), cpu_cores=1.0)
            jobs[name] = batch_v1.create_namespaced_job(namespace, body).metadata.uid
        proc = start_process(f"operator-{i}", argv)
        # an operator needs a few seconds to start and reach its queue: kill anywhere from
        # start-up through watching, querying Prometheus, committing ledgers and patching
        time.sleep(rng.uniform(2.0, 12.0))
        os.killpg(proc.pgid, signal.SIGKILL)
        devstack.supervisor.stop_one(proc)
        kills += 1
        log = Path(proc.log_path).read_text(errors="replace")
        mid_accounting += "accounted Job" in log
    before_final = sum(1 for name in jobs if accounted(batch_v1, namespace, name) is not None)
    start_process("operator-final", argv)
    status = assert_each_job_once(batch_v1, custom_objects, namespace, jobs, wait_for, 300)
    folded = sum(b["jobs"] for b in (status.get("ledgerFolded") or {}).values())
    rolling_status = assert_each_job_once(batch_v1, custom_objects, namespace, jobs, wait_for, 60, "rolling")
    assert rolling_status["usedGrams"] == pytest.approx(status["usedGrams"], rel=1e-9)
    assert sum(b["jobs"] for b in (rolling_status.get("ledgerFolded") or {}).values()) > 0
    print(f"[figures] {kills} SIGKILLs, {mid_accounting} of them after that operator had "
          f"accounted a Job; {before_final}/{len(jobs)} Jobs accounted by operators that were "
          f"later killed; ledger {len(status.get('ledger') or {})} entries + {folded} folded, "
          f"{status['usedGrams']} g")
    assert folded > 0  # folding ran (and was killed into) in this test


def test_operator_sigkilled_at_random_points_accounts_every_job_once(
    crd: None, namespace: str, kubeconfig: Path, prometheus: Any, batch_v1: Any,
    custom_objects: Any, start_process: Any, wait_for: Any, devstack: Any,
) -> None:
    kill_operators(22, 12, namespace, kubeconfig, prometheus, batch_v1, custom_objects,
                   start_process, wait_for, devstack)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # 100 operator lives of 2-12 s each, then the final accounting
def test_soak_operator_sigkilled_100_times_accounts_every_job_once(
    crd: None, namespace: str, kubeconfig: Path, prometheus: Any, batch_v1: Any,
    custom_objects: Any, start_process: Any, wait_for: Any, devstack: Any,
) -> None:
    kill_operators(100, 60, namespace, kubeconfig, prometheus, batch_v1, custom_objects,
                   start_process, wait_for, devstack)


def test_apiserver_restarted_mid_accounting_counts_every_job_once(
    crd: None, namespace: str, kubeconfig: Path, prometheus: Any, batch_v1: Any,
    custom_objects: Any, start_process: Any, wait_for: Any, devstack: Any,
) -> None:
    create_budget(custom_objects, namespace, budget_body("all", "10t", selector={}))
    start_process("operator", operator_argv(prometheus.url, namespace, kubeconfig))
    jobs = {f"api-{i}": batch_v1.create_namespaced_job(
        namespace, nlp_job(f"api-{i}", run_seconds=1.5 + i, cpu_cores=1.0)).metadata.uid
        for i in range(4)}
    wait_for("the first Job accounted", lambda: accounted(batch_v1, namespace, "api-0"), 90)

    sup = devstack.supervisor
    api = sup.get("kube-apiserver")
    sup.stop_one(api)  # the others are finishing or queued for accounting right now
    time.sleep(3.0)
    sup.start("kube-apiserver", api.argv)

    def ready() -> bool:
        try:
            return bool(devstack.cluster.https_get("/readyz")[0] == 200)
        except OSError:
            return False

    wait_for("kube-apiserver /readyz after the restart", ready, 90)
    status = assert_each_job_once(batch_v1, custom_objects, namespace, jobs, wait_for, 180)
    print(f"[figures] apiserver restart: {len(status['ledger'])} ledger entries for "
          f"{len(jobs)} Jobs, {status['usedGrams']} g")


def test_exporter_restarted_mid_job_continues_counters_without_double_count(
    crd: None, namespace: str, kubeconfig: Path, prometheus: Any, batch_v1: Any, core_v1: Any,
    custom_objects: Any, start_process: Any, wait_for: Any, devstack: Any, simulator: Any,
) -> None:
    """The node's exporter is SIGKILLed mid-Job and restarted from its state directory.
    Prometheus sees no counter reset (totals continue), the Job's accounted energy never
    exceeds what the simulated hardware gave its pod, and it misses at most the energy of
    the downtime plus one collection interval."""
    node = "sim-small-0"  # no idle power: the pod gets exactly the energy it drew
    create_budget(custom_objects, namespace, budget_body("all", "10t", selector={}))
    start_process("operator", operator_argv(prometheus.url, namespace, kubeconfig))
    run_s = 24.0  # long enough that the loss bound below is well under the total
    uid = batch_v1.create_namespaced_job(namespace, nlp_job(
        "restart", run_seconds=run_s, cpu_cores=2.0, node=node)).metadata.uid
    pods = wait_for("the Job's pod", lambda: job_pod_uids(core_v1, namespace, uid), 30)
    wait_for("energy for the pod", lambda: sum(
        sum(simulator.joules(p).values()) for p in pods) > 0, 30)
    time.sleep(3.0)

    sup = devstack.supervisor
    old = devstack.exporters[node].process
    t_kill = time.monotonic()
    os.killpg(old.pgid, signal.SIGKILL)
    sup.stop_one(old)
    time.sleep(1.0)
    env = dict(os.environ)
    sim = simulator.nodes[node]
    if sim.gpu_backend is not None:  # the same fake NVML as at stack start
        env["LD_LIBRARY_PATH"] = str(sim.gpu_backend.lib_dir)
        env["CARBONTRACK_FAKE_NVML_STATE"] = str(sim.nvml_state)
    new = sup.start(old.name, old.argv, env=env)
    devstack.exporters[node].process = new
    url = devstack.exporters[node].url + "/metrics"

    def serving() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    wait_for("the restarted exporter", serving, 60)
    down_s = time.monotonic() - t_kill

    ann = wait_for("accounting", lambda: accounted(batch_v1, namespace, "restart"), 120)
    simulated = sum(sum(simulator.joules(p).values()) for p in pods)
    accounted_j = float(ann["carbontrack.io/energy-kwh"]) * 3.6e6
    watts = simulated / run_s
    lost_bound = watts * (down_s + 2 * 0.5 + 1.0)  # downtime, a cycle each side, start-up
    print(f"[figures] exporter restart: simulated {simulated:.1f} J, accounted "
          f"{accounted_j:.1f} J, down {down_s:.1f} s, loss bound {lost_bound:.1f} J")
    assert accounted_j <= simulated * (1 + 1e-5)  # nothing invented, nothing twice
    assert accounted_j >= simulated - lost_bound
    resets = prometheus.query(
        f'resets(carbontrack_container_energy_joules_total{{owner_uid="{uid}"}}[10m])')
    assert resets and all(float(r["value"][1]) == 0 for r in resets)  # totals continued
    status = assert_each_job_once(batch_v1, custom_objects, namespace, {"restart": uid},
                                  wait_for, 30)
    assert status["jobsCounted"] == 1
