"""Operator end to end on the real local control plane (tests/e2e harness): kube-apiserver,
Job controller, kwok nodes, node simulator, exporters, Prometheus. The operator runs
in-process (kopf in a thread, injectable clock) or as a process for the kill test."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from carbontrack.devcluster.workloads import sim_job

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_PATHS = (REPO_ROOT / "crds" / "carbonbudgets.carbontrack.io.yaml",
             REPO_ROOT / "crds" / "carbonrecords.carbontrack.io.yaml")
GROUP, VERSION, PLURAL = "carbontrack.io", "v1alpha1", "carbonbudgets"

# Fast settings for the local stack (scrape 1 s, exporter 0.5 s).
FAST = dict(
    scrape_interval_s=1.0,
    accounting_delay_s=1.0,
    no_data_after_s=6.0,
    retry_initial_s=0.5,
    retry_max_s=2.0,
    budget_interval_s=1.0,
    projection_interval_s=1.0,
    prometheus_timeout_s=3.0,
)


def install_crd(api: client.ApiClient) -> None:
    """The operator's CRDs (CarbonBudget, CarbonRecord), created or replaced, Established."""
    for path in CRD_PATHS:
        _install_one_crd(api, yaml.safe_load(path.read_text()))


def _install_one_crd(api: client.ApiClient, body: dict[str, Any]) -> None:
    ext = client.ApiextensionsV1Api(api)
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as err:
        if err.status != 409:
            raise
        current = ext.read_custom_resource_definition(body["metadata"]["name"])
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(body["metadata"]["name"], body)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(body["metadata"]["name"])
        if any(c.type == "Established" and c.status == "True"
               for c in (crd.status.conditions or [])):
            return
        time.sleep(0.2)
    raise AssertionError(f"CRD {body['metadata']['name']} not Established after 30 s")


@dataclass
class Clock:
    """Wall clock plus an offset the test can move (period resets without waiting)."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


class InProcessOperator:
    """`carbontrack.operator.cli.run` in a thread with its own event loop (what
    kopf.testing.KopfRunner does, but with the operator's own settings and clock)."""

    def __init__(self, kubeconfig: Path, prometheus_url: str, namespace: str,
                 clock: Clock | None = None, **overrides: Any) -> None:
        from carbontrack.operator.kubeconfig import load_endpoint
        from carbontrack.operator.settings import OperatorSettings

        self.settings = OperatorSettings(prometheus_url=prometheus_url, namespaces=(namespace,),
                                         **{**FAST, **overrides})
        self.endpoint = load_endpoint(str(kubeconfig))
        self.clock = clock or Clock()
        self.registry = CollectorRegistry()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="operator", daemon=True)

    def _main(self) -> None:
        from carbontrack.operator.cli import run

        try:
            asyncio.run(run(self.settings, self.endpoint, None, None, stop_flag=self._stop,
                            ready_flag=self._ready, registry=self.registry, clock=self.clock))
        except BaseException as err:  # surfaced by start()/stop()
            self._error = err

    def start(self) -> InProcessOperator:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise AssertionError(f"operator did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        if self._thread.is_alive():
            raise AssertionError("operator did not stop within 30 s")

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0


@contextmanager
def operator(kubeconfig: Path, prometheus_url: str, namespace: str, **kw: Any) -> Iterator[InProcessOperator]:
    op = InProcessOperator(kubeconfig, prometheus_url, namespace, **kw).start()
    try:
        yield op
    finally:
        op.stop()


def budget_body(name: str, limit: str, *, action: str = "Warn", thresholds: list[int] | None = None,
                selector: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "limit": limit,
        "period": {"type": "Calendar", "calendar": "Month", "timeZone": "Europe/Berlin"},
        "selector": selector if selector is not None else {"matchLabels": {"team": "nlp"}},
        "action": action,
    }
    if thresholds is not None:
        spec["thresholds"] = thresholds
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CarbonBudget",
            "metadata": {"name": name}, "spec": spec}


def create_budget(custom: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def get_budget(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return dict(custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))


def annotations(batch: client.BatchV1Api, namespace: str, name: str) -> dict[str, str]:
    return dict(batch.read_namespaced_job(name, namespace).metadata.annotations or {})


def accounted(batch: client.BatchV1Api, namespace: str, name: str) -> dict[str, str] | None:
    ann = annotations(batch, namespace, name)
    return ann if "carbontrack.io/accounted-at" in ann else None


def events(core: client.CoreV1Api, namespace: str, *, reason: str | None = None,
           kind: str | None = None, name: str | None = None) -> list[Any]:
    out = []
    for e in core.list_namespaced_event(namespace).items:
        if reason and e.reason != reason:
            continue
        if kind and e.involved_object.kind != kind:
            continue
        if name and e.involved_object.name != name:
            continue
        out.append(e)
    return out


def job_pod_uids(core: client.CoreV1Api, namespace: str, job_uid: str) -> set[str]:
    pods = core.list_namespaced_pod(namespace, label_selector=f"controller-uid={job_uid}").items
    pods += core.list_namespaced_pod(
        namespace, label_selector=f"batch.kubernetes.io/controller-uid={job_uid}").items
    return {p.metadata.uid for p in pods}


def simulated_joules(simulator: Any, pod_uids: set[str]) -> float:
    return sum(sum(simulator.joules(uid).values()) for uid in pod_uids)


def report(ann: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(ann["carbontrack.io/report"]))


def wait_job_finished(batch: client.BatchV1Api, namespace: str, name: str,
                      wait_for: Callable[..., Any], timeout_s: float = 60) -> Any:
    def done() -> Any:
        job = batch.read_namespaced_job(name, namespace)
        conds = job.status.conditions or []
        return job if any(c.type in ("Complete", "Failed") and c.status == "True" for c in conds) else None

    return wait_for(f"Job {name} to finish", done, timeout_s)


# ------------------------------------------------------------------------------ fixtures
pytestmark = pytest.mark.e2e

EXACT_NODE = "sim-small-0"  # no idle power: a pod keeping both cores busy gets exactly its energy
INVALID = yaml.safe_load(
    (REPO_ROOT / "tests" / "unit" / "operator" / "invalid_carbonbudgets.yaml").read_text()
)


@pytest.fixture(scope="session")
def crd(devstack: Any) -> None:
    from carbontrack.devcluster.kube import api_client

    with api_client(Path(devstack.cluster.kubeconfig)) as api:
        install_crd(api)


@pytest.fixture
def run_operator(
    crd: None, kubeconfig: Path, prometheus: Any, namespace: str
) -> Iterator[Callable[..., InProcessOperator]]:
    started: list[InProcessOperator] = []

    def start(**kw: Any) -> InProcessOperator:
        op = InProcessOperator(kubeconfig, kw.pop("prometheus_url", prometheus.url), namespace, **kw)
        started.append(op.start())
        return op

    yield start
    for op in started:
        if op._thread.is_alive():
            op.stop()


def nlp_job(name: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("run_seconds", 4.0)
    kw.setdefault("cpu_cores", 1.0)
    return sim_job(name, labels={"team": "nlp"}, **kw)


# ------------------------------------------------------------------------------ tests
def test_invalid_carbonbudgets_are_rejected_with_readable_messages(
    crd: None, namespace: str, custom_objects: Any
) -> None:
    assert len(INVALID) >= 10
    for case in INVALID:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CarbonBudget",
                "metadata": {"name": case["case"]}, "spec": case["spec"]}
        with pytest.raises(ApiException) as info:
            create_budget(custom_objects, namespace, body)
        assert info.value.status == 422, case["case"]
        message = json.loads(info.value.body)["message"]
        assert case["apiserver"] in message, (case["case"], message)
    # and a valid one is accepted, with the defaults filled in
    create_budget(custom_objects, namespace, budget_body("ok", "250kg"))
    spec = get_budget(custom_objects, namespace, "ok")["spec"]
    assert spec["thresholds"] == [50, 80] and spec["action"] == "Warn"


def test_job_accounted_end_to_end_matches_simulated_energy(
    run_operator: Any, namespace: str, batch_v1: Any, core_v1: Any, custom_objects: Any,
    simulator: Any, prometheus: Any, wait_for: Any,
) -> None:
    op = run_operator()
    create_budget(custom_objects, namespace, budget_body("nlp", "1kg"))
    job = batch_v1.create_namespaced_job(namespace, nlp_job("exact", run_seconds=5.0, cpu_cores=2.0,
                                                            node=EXACT_NODE))
    uid = job.metadata.uid
    wait_for("the accounting finalizer", lambda: "carbontrack.io/accounting" in (
        batch_v1.read_namespaced_job("exact", namespace).metadata.finalizers or []), 20)
    pods = wait_for("the Job's pod", lambda: job_pod_uids(core_v1, namespace, uid), 30)
    wait_job_finished(batch_v1, namespace, "exact", wait_for)
    ann = wait_for("the CO2e annotations", lambda: accounted(batch_v1, namespace, "exact"), 60)

    # The operator's number is exactly Prometheus' final counters of the Job's pods ...
    def final(metric: str) -> float:
        return sum(float(r["value"][1]) for r in prometheus.query(
            f'max_over_time({metric}{{owner_uid="{uid}"}}[10m])'))

    energy_prom = final("carbontrack_container_energy_joules_total")
    co2e_prom = final("carbontrack_container_co2e_grams_total")
    assert float(ann["carbontrack.io/energy-kwh"]) * 3.6e6 == pytest.approx(energy_prom, rel=1e-5)
    assert float(ann["carbontrack.io/co2e-grams"]) == pytest.approx(co2e_prom, rel=1e-5)
    assert ann["carbontrack.io/method"] == "measured"
    assert ann["carbontrack.io/grid-zone"] not in ("", "unknown")
    assert float(ann["carbontrack.io/intensity-g-per-kwh"]) > 0
    rep = report(ann)
    assert rep["job"]["outcome"] == "Complete" and rep["job"]["uid"] == uid
    assert rep["energyKwhByComponent"]["cpu"] * 3.6e6 == pytest.approx(energy_prom, rel=1e-5)
    assert rep["nodes"] == [EXACT_NODE] and rep["pods"] == 1
    assert rep["pue"][EXACT_NODE] >= 1.0
    assert "uncertainty" in rep and "intensityFactors" in rep and rep["toolVersion"]

    ev = wait_for("the CarbonAccounted Event", lambda: events(
        core_v1, namespace, reason="CarbonAccounted", name="exact"), 10)
    assert "CO2e" in ev[0].message and ev[0].involved_object.uid == uid
    wait_for("the finalizer to go", lambda: "carbontrack.io/accounting" not in (
        batch_v1.read_namespaced_job("exact", namespace).metadata.finalizers or []), 10)
    status = wait_for("the budget ledger", lambda: (
        st := get_budget(custom_objects, namespace, "nlp").get("status") or {}).get("jobsCounted") == 1 and st, 10)
    assert status["ledger"][uid]["co2eGrams"] == pytest.approx(float(ann["carbontrack.io/co2e-grams"]), rel=1e-5)
    assert status["usedGrams"] == pytest.approx(float(ann["carbontrack.io/co2e-grams"]), rel=1e-5)
    assert ann["carbontrack.io/accounted-uid"] == uid
    # the budget gauges the chart's dashboards and alerts read equal the status (set just after
    # the status write the wait above saw, so waited for too)
    gauge = {"namespace": namespace, "budget": "nlp"}
    wait_for("the budget gauge", lambda: op.metric("carbontrack_budget_used_grams", gauge) > 0, 10)
    assert op.metric("carbontrack_budget_used_grams", gauge) == pytest.approx(status["usedGrams"], rel=1e-9)
    assert op.metric("carbontrack_budget_limit_grams", gauge) == pytest.approx(1000.0)
    # the counters move just after the finalizer removal the wait above saw
    wait_for("the accounted counter and latency histogram", lambda: op.metric(
        "carbontrack_operator_jobs_accounted_total", {"result": "ok"}) == 1 and op.metric(
        "carbontrack_operator_accounting_latency_seconds_count") == 1, 10)
    # ... and, end to end, the energy the simulated hardware gave the pod (2 cores x 10 W).
    expected_j = simulated_joules(simulator, pods)
    assert expected_j > 50
    assert float(ann["carbontrack.io/energy-kwh"]) * 3.6e6 == pytest.approx(expected_j, rel=0.01)


def test_failed_job_is_accounted(
    run_operator: Any, namespace: str, batch_v1: Any, wait_for: Any
) -> None:
    run_operator()
    batch_v1.create_namespaced_job(namespace, nlp_job("broken", run_seconds=3.0, fail=True))
    job = wait_job_finished(batch_v1, namespace, "broken", wait_for)
    assert any(c.type == "Failed" for c in job.status.conditions)
    ann = wait_for("the CO2e annotations", lambda: accounted(batch_v1, namespace, "broken"), 60)
    assert float(ann["carbontrack.io/co2e-grams"]) > 0
    assert report(ann)["job"]["outcome"] == "Failed"


def test_job_deleted_right_after_finishing_is_still_counted(
    run_operator: Any, namespace: str, batch_v1: Any, core_v1: Any, custom_objects: Any,
    wait_for: Any,
) -> None:
    run_operator()
    create_budget(custom_objects, namespace, budget_body("nlp", "1kg"))
    body = nlp_job("ephemeral", run_seconds=3.0)
    body["spec"]["ttlSecondsAfterFinished"] = 0
    uid = batch_v1.create_namespaced_job(namespace, body).metadata.uid

    def gone() -> bool:
        try:
            batch_v1.read_namespaced_job("ephemeral", namespace)
        except ApiException as err:
            return err.status == 404
        return False

    wait_for("the TTL controller to delete the Job once accounted", gone, 90)
    status = wait_for("the ledger entry", lambda: (
        st := get_budget(custom_objects, namespace, "nlp").get("status") or {}).get("ledger", {}).get(uid) and st, 10)
    assert status["ledger"][uid]["co2eGrams"] > 0
    assert status["jobsCounted"] == 1
    assert events(core_v1, namespace, reason="CarbonAccounted", name="ephemeral")


def test_job_deleted_while_running_is_accounted_to_its_deletion_and_not_held(
    run_operator: Any, namespace: str, batch_v1: Any, core_v1: Any, custom_objects: Any,
    wait_for: Any,
) -> None:
    """`kubectl delete job` on a running Job: the Job controller stops managing it, so it never
    gets a Complete/Failed condition. Our finalizer used to hold it (and, with the default
    background propagation, its still-running pod) until the pod ended on its own, forever
    for a long training run. Now it is accounted up to its deletion and released; a queued
    (suspended, never started) Job is released at once with no ledger entry."""
    run_operator()
    create_budget(custom_objects, namespace, budget_body("nlp", "1kg"))
    uid = batch_v1.create_namespaced_job(namespace, nlp_job("doomed", run_seconds=600.0)).metadata.uid
    queued = nlp_job("queued", run_seconds=600.0)
    queued["spec"]["suspend"] = True
    queued_uid = batch_v1.create_namespaced_job(namespace, queued).metadata.uid

    def held(name: str) -> bool:
        return "carbontrack.io/accounting" in (batch_v1.read_namespaced_job(name, namespace).metadata.finalizers or [])

    wait_for("both finalizers", lambda: held("doomed") and held("queued"), 30)
    wait_for("the pod running", lambda: (batch_v1.read_namespaced_job("doomed", namespace).status.active or 0) == 1, 30)
    time.sleep(4)  # some energy
    for name in ("doomed", "queued"):
        batch_v1.delete_namespaced_job(name, namespace, propagation_policy="Background")

    def gone(name: str) -> bool:
        try:
            batch_v1.read_namespaced_job(name, namespace)
        except ApiException as err:
            return err.status == 404
        return False

    wait_for("the queued Job deleted", lambda: gone("queued"), 20)
    wait_for("the running Job accounted and deleted", lambda: gone("doomed"), 60)
    status = wait_for("the ledger entry", lambda: (
        st := get_budget(custom_objects, namespace, "nlp").get("status") or {}).get("ledger", {}).get(uid) and st, 10)
    assert status["ledger"][uid]["co2eGrams"] > 0 and queued_uid not in status["ledger"]
    assert (status["jobsCounted"], status["jobsWithoutData"]) == (1, 0)
    ev = wait_for("the CarbonAccounted Event", lambda: events(
        core_v1, namespace, reason="CarbonAccounted", name="doomed"), 10)
    assert "Deleted" in ev[0].message
    assert not events(core_v1, namespace, reason="CarbonAccounted", name="queued")


def test_job_suspended_after_running_then_deleted_is_still_accounted(
    run_operator: Any, namespace: str, batch_v1: Any, custom_objects: Any, wait_for: Any,
) -> None:
    """Suspending a Job deletes its pods and (Kubernetes >= 1.36) clears its startTime, so
    once deleted it looks like a Job that never ran; the operator remembers it saw it run."""
    run_operator()
    create_budget(custom_objects, namespace, budget_body("nlp", "1kg"))
    uid = batch_v1.create_namespaced_job(namespace, nlp_job("paused", run_seconds=600.0)).metadata.uid
    wait_for("the pod running", lambda: (batch_v1.read_namespaced_job("paused", namespace).status.active or 0) == 1, 30)
    time.sleep(4)  # some energy
    batch_v1.patch_namespaced_job("paused", namespace, {"spec": {"suspend": True}})
    wait_for("the Job suspended, its pod gone and startTime cleared", lambda: (
        j := batch_v1.read_namespaced_job("paused", namespace)).status.start_time is None
        and not j.status.active, 30)
    batch_v1.delete_namespaced_job("paused", namespace, propagation_policy="Background")
    status = wait_for("the ledger entry", lambda: (
        st := get_budget(custom_objects, namespace, "nlp").get("status") or {}).get("ledger", {}).get(uid) and st, 60)
    assert status["ledger"][uid]["co2eGrams"] > 0 and status["jobsWithoutData"] == 0


def test_two_jobs_with_the_same_name_are_two_entries(
    run_operator: Any, namespace: str, batch_v1: Any, custom_objects: Any, wait_for: Any,
) -> None:
    run_operator()
    create_budget(custom_objects, namespace, budget_body("nlp", "1kg"))
    grams = []
    uids: list[str] = []
    carried: dict[str, str] = {}
    for _ in range(2):
        # The second one is re-created from the first's manifest, accounting annotations
        # included (`kubectl get -o yaml | kubectl apply`): it must still be accounted.
        body = nlp_job("nightly", run_seconds=2.0)
        body["metadata"].setdefault("annotations", {}).update(carried)
        uid = batch_v1.create_namespaced_job(namespace, body).metadata.uid
        uids.append(uid)
        ann = wait_for("accounting", lambda uid=uid: (
            a := accounted(batch_v1, namespace, "nightly")) and a.get("carbontrack.io/accounted-uid") == uid and a, 60)
        assert json.loads(ann["carbontrack.io/report"])["job"]["uid"] == uid
        grams.append(float(ann["carbontrack.io/co2e-grams"]))
        carried = {k: v for k, v in ann.items() if k.startswith("carbontrack.io/")}
        batch_v1.delete_namespaced_job("nightly", namespace, propagation_policy="Background")
        wait_for("deletion", lambda: not [j for j in batch_v1.list_namespaced_job(namespace).items
                                          if j.metadata.name == "nightly"], 30)
    assert uids[0] != uids[1]
    status = wait_for("both entries", lambda: (
        st := get_budget(custom_objects, namespace, "nlp").get("status") or {}).get("jobsCounted") == 2 and st, 10)
    assert set(status["ledger"]) == set(uids)
    assert status["usedGrams"] == pytest.approx(sum(grams), rel=1e-5)


def test_operator_killed_mid_accounting_and_restarted_counts_once(
    crd: None, namespace: str, kubeconfig: Path, prometheus: Any, batch_v1: Any,
    custom_objects: Any, start_process: Any, wait_for: Any, devstack: Any,
) -> None:
    def argv(delay: float) -> list[str]:
        return [sys.executable, "-m", "carbontrack", "operator", f"--prometheus-url={prometheus.url}",
                f"--namespace={namespace}", "--standalone", f"--kubeconfig={kubeconfig}",
                "--listen=127.0.0.1:0", "--scrape-interval=1", f"--accounting-delay={delay}",
                "--budget-interval=1", "--projection-interval=0"]

    create_budget(custom_objects, namespace, budget_body("nlp", "1kg"))
    # A long accounting delay keeps the first operator waiting on the finished Job.
    first = start_process("operator-1", argv(delay=30))
    # A cold `python -m carbontrack operator` on a busy machine takes a while to start: the
    # budget's status appearing is the sign that it watches.
    wait_for("the first operator to watch", lambda: first.running() and (
        get_budget(custom_objects, namespace, "nlp").get("status") or {}).get("periodName"), 90)
    uid = batch_v1.create_namespaced_job(namespace, nlp_job("resilient", run_seconds=2.0)).metadata.uid
    wait_for("the first operator's finalizer", lambda: "carbontrack.io/accounting" in (
        batch_v1.read_namespaced_job("resilient", namespace).metadata.finalizers or []), 30)
    wait_job_finished(batch_v1, namespace, "resilient", wait_for)
    time.sleep(2)  # the finished Job is now in the first operator's queue
    os.killpg(first.pgid, signal.SIGKILL)
    devstack.supervisor.stop_one(first)
    assert accounted(batch_v1, namespace, "resilient") is None

    # Simulate the narrowest crash window too: the ledger already has this Job (written by
    # an operator that died before annotating it).
    budget = get_budget(custom_objects, namespace, "nlp")
    preexisting = {"name": "resilient", "finishedAt": budget["status"]["periodStart"],
                   "accountedAt": budget["status"]["periodStart"], "co2eGrams": 0.5, "energyKwh": 0.001}
    custom_objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "nlp", {"status": {"ledger": {uid: preexisting}}},
        _content_type="application/merge-patch+json")

    start_process("operator-2", argv(delay=1))
    ann = wait_for("accounting by the restarted operator",
                   lambda: accounted(batch_v1, namespace, "resilient"), 90)
    assert float(ann["carbontrack.io/co2e-grams"]) > 0
    status = wait_for("the budget status", lambda: (
        st := get_budget(custom_objects, namespace, "nlp").get("status") or {}).get("jobsCounted") == 1 and st, 10)
    assert list(status["ledger"]) == [uid]
    assert status["ledger"][uid]["co2eGrams"] == 0.5  # the first accounting wins: never twice
    assert status["usedGrams"] == pytest.approx(0.5)


def test_prometheus_down_then_up(
    run_operator: Any, namespace: str, batch_v1: Any, prometheus: Any, devstack: Any,
    simulator: Any, core_v1: Any, wait_for: Any,
) -> None:
    # Accounting starts 1 + 6 s after completion: Prometheus is gone by then.
    op = run_operator(accounting_delay_s=6.0)
    uid = batch_v1.create_namespaced_job(namespace, nlp_job("outage", run_seconds=4.0, cpu_cores=2.0,
                                                            node=EXACT_NODE)).metadata.uid
    pods = wait_for("the pod", lambda: job_pod_uids(core_v1, namespace, uid), 30)
    proc = prometheus.process
    wait_job_finished(batch_v1, namespace, "outage", wait_for)
    time.sleep(2.0)  # let Prometheus scrape the final counters, then take it away
    devstack.supervisor.stop_one(proc)
    try:
        wait_for("failed accounting attempts", lambda: op.metric(
            "carbontrack_operator_accounting_failures_total", {"reason": "temporary"}) >= 2, 30)
        assert accounted(batch_v1, namespace, "outage") is None  # no number while it is down
    finally:
        prometheus.process = devstack.supervisor.start("prometheus", proc.argv)
        wait_for("Prometheus back", lambda: prometheus.query("up") is not None, 30)
    ann = wait_for("accounting after the outage", lambda: accounted(batch_v1, namespace, "outage"), 60)
    energy_prom = sum(float(r["value"][1]) for r in prometheus.query(
        f'max_over_time(carbontrack_container_energy_joules_total{{owner_uid="{uid}"}}[10m])'))
    assert float(ann["carbontrack.io/energy-kwh"]) * 3.6e6 == pytest.approx(energy_prom, rel=1e-5)
    assert energy_prom > 0.5 * simulated_joules(simulator, pods)  # the pod's data, not a stub


def test_threshold_and_exceeded_events(
    run_operator: Any, namespace: str, batch_v1: Any, core_v1: Any, custom_objects: Any,
    wait_for: Any,
) -> None:
    run_operator()
    create_budget(custom_objects, namespace, budget_body("nlp", "1t", thresholds=[50, 80]))
    batch_v1.create_namespaced_job(namespace, nlp_job("first", run_seconds=3.0))
    ann = wait_for("first accounted", lambda: accounted(batch_v1, namespace, "first"), 60)
    first_mg = float(ann["carbontrack.io/co2e-grams"]) * 1000
    # A limit the first Job uses 60 % of: the 50 % threshold fires on the recompute.
    custom_objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "nlp", {"spec": {"limit": f"{first_mg / 0.6:.3f}mg"}},
        _content_type="application/merge-patch+json")
    ev = wait_for("the 50% threshold Event", lambda: events(
        core_v1, namespace, reason="ThresholdCrossed", kind="CarbonBudget"), 20)
    assert len(ev) == 1 and ev[0].message.startswith("50% of the CO2e budget used")
    # A second, identical Job takes it to ~120 %: exceeded, on the budget and on the Job.
    batch_v1.create_namespaced_job(namespace, nlp_job("second", run_seconds=3.0))
    wait_for("second accounted", lambda: accounted(batch_v1, namespace, "second"), 60)
    on_budget = wait_for("BudgetExceeded on the budget", lambda: events(
        core_v1, namespace, reason="BudgetExceeded", kind="CarbonBudget"), 20)
    on_job = wait_for("BudgetExceeded on the Job", lambda: events(
        core_v1, namespace, reason="BudgetExceeded", kind="Job", name="second"), 20)
    assert "exceeded" in on_budget[0].message and "pushed CarbonBudget nlp over" in on_job[0].message
    status = get_budget(custom_objects, namespace, "nlp")["status"]
    assert status["exceeded"] is True and status["percent"] > 100
    assert {c["type"]: c["status"] for c in status["conditions"]}["Exceeded"] == "True"
    assert len(events(core_v1, namespace, reason="ThresholdCrossed", kind="CarbonBudget")) == 2  # 50, 80


def test_suspend_enforced_and_released_at_period_reset(
    run_operator: Any, namespace: str, batch_v1: Any, core_v1: Any, custom_objects: Any,
    wait_for: Any,
) -> None:
    clock = Clock()
    run_operator(clock=clock)
    create_budget(custom_objects, namespace, budget_body("nlp", "0.01mg", action="Suspend"))
    batch_v1.create_namespaced_job(namespace, nlp_job("spender", run_seconds=2.0))
    wait_for("spender accounted", lambda: accounted(batch_v1, namespace, "spender"), 60)
    wait_for("the budget exceeded", lambda: (
        get_budget(custom_objects, namespace, "nlp").get("status") or {}).get("exceeded"), 20)

    batch_v1.create_namespaced_job(namespace, nlp_job("blocked", run_seconds=2.0))
    job = wait_for("the new Job suspended", lambda: (
        j := batch_v1.read_namespaced_job("blocked", namespace)).spec.suspend and j, 20)
    assert job.metadata.annotations["carbontrack.io/suspended-by"] == f"{namespace}/nlp"
    ev = wait_for("the suspension Event", lambda: events(
        core_v1, namespace, reason="SuspendedByCarbonBudget", name="blocked"), 10)
    assert "resumes when the period resets or the limit is raised" in ev[0].message

    # Next calendar month in Europe/Berlin: the budget's period resets.
    now = clock()
    clock.offset = timedelta(days=32 - now.day)
    job = wait_for("the Job resumed", lambda: not (
        j := batch_v1.read_namespaced_job("blocked", namespace)).spec.suspend and j, 20)
    assert "carbontrack.io/suspended-by" not in (job.metadata.annotations or {})
    wait_for("the resume Event", lambda: events(
        core_v1, namespace, reason="ResumedByCarbonBudget", name="blocked"), 10)
    status = get_budget(custom_objects, namespace, "nlp")["status"]
    assert status["exceeded"] is False and status["usedGrams"] == 0


def test_job_without_energy_data_gets_no_data_not_zero(
    run_operator: Any, namespace: str, batch_v1: Any, custom_objects: Any, wait_for: Any,
) -> None:
    op = run_operator(no_data_after_s=3.0)
    create_budget(custom_objects, namespace, budget_body("nlp", "1kg"))
    body = nlp_job("empty")
    body["spec"]["parallelism"] = 0
    body["spec"]["completions"] = 0  # completes at once without ever running a pod
    batch_v1.create_namespaced_job(namespace, body)
    ann = wait_for("the no-data annotation", lambda: accounted(batch_v1, namespace, "empty"), 60)
    assert ann["carbontrack.io/co2e-grams"] == "no-data"
    assert "owner_uid" in report(ann)["noData"]
    status = wait_for("the budget status", lambda: (
        st := get_budget(custom_objects, namespace, "nlp").get("status") or {}).get("jobsCounted") == 1 and st, 10)
    assert status["jobsWithoutData"] == 1 and status["usedGrams"] == 0
    # The counter moves after the Event and the finalizer removal, i.e. after the annotation
    # and the budget status the waits above saw: wait for it rather than race it.
    wait_for("the no_data counter", lambda: op.metric(
        "carbontrack_operator_jobs_accounted_total", {"result": "no_data"}) == 1, 10)


def test_running_job_gets_emissions_so_far_and_a_projection(
    run_operator: Any, namespace: str, batch_v1: Any, wait_for: Any,
) -> None:
    run_operator()
    batch_v1.create_namespaced_job(namespace, nlp_job(
        "long", run_seconds=12.0, annotations={"carbontrack.io/expected-duration": "12s"}))

    def projected() -> dict[str, str] | None:
        ann = annotations(batch_v1, namespace, "long")
        return ann if "carbontrack.io/projected-co2e-grams" in ann else None

    ann = wait_for("a projection while running", projected, 30)
    so_far = float(ann["carbontrack.io/co2e-grams-so-far"])
    assert 0 < so_far <= float(ann["carbontrack.io/projected-co2e-grams"])
    assert ann["carbontrack.io/projection-basis"] == "expected-duration 12s"
    assert "carbontrack.io/accounted-at" not in ann


def test_without_finalizer_a_deleted_job_is_counted_from_the_last_watch_event(
    run_operator: Any, namespace: str, batch_v1: Any, core_v1: Any, custom_objects: Any,
    wait_for: Any,
) -> None:
    run_operator(finalizer=False)
    create_budget(custom_objects, namespace, budget_body("nlp", "1kg"))
    body = nlp_job("fleeting", run_seconds=2.0)
    body["spec"]["ttlSecondsAfterFinished"] = 0
    uid = batch_v1.create_namespaced_job(namespace, body).metadata.uid
    status = wait_for("the ledger entry of the deleted Job", lambda: (
        st := get_budget(custom_objects, namespace, "nlp").get("status") or {}).get("ledger", {}).get(uid) and st, 60)
    assert status["ledger"][uid]["co2eGrams"] > 0
    assert not [j for j in batch_v1.list_namespaced_job(namespace).items if j.metadata.uid == uid]
    assert wait_for("the Event on the deleted Job", lambda: events(
        core_v1, namespace, reason="CarbonAccounted", name="fleeting"), 10)


def test_accounted_job_is_logged_to_the_mlflow_run_it_names(
    run_operator: Any, namespace: str, batch_v1: Any, wait_for: Any, tmp_path: Path,
) -> None:
    """--mlflow-tracking-uri: the Job's annotation names a run on a real MLflow server; after
    accounting, that run has the Job's CO2e and energy, equal to the annotations."""
    mlflow = pytest.importorskip("mlflow", reason="needs the [mlflow] extra")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_ct_reports_servers", REPO_ROOT / "tests" / "unit" / "reports" / "servers.py")
    assert spec is not None and spec.loader is not None
    servers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(servers)
    with servers.mlflow_server(tmp_path) as uri:
        client_ = mlflow.MlflowClient(tracking_uri=uri)
        run_id = client_.create_run(client_.create_experiment("operator-e2e")).info.run_id
        op = run_operator(mlflow_tracking_uri=uri)
        batch_v1.create_namespaced_job(namespace, nlp_job(
            "tracked", run_seconds=2.0, annotations={"carbontrack.io/mlflow-run-id": run_id}))
        ann = wait_for("accounting", lambda: accounted(batch_v1, namespace, "tracked"), 60)
        metrics = wait_for("the MLflow run's metrics", lambda: (
            m := client_.get_run(run_id).data.metrics).get("carbontrack.co2e_g") is not None and m, 30)
        assert metrics["carbontrack.co2e_g"] == pytest.approx(float(ann["carbontrack.io/co2e-grams"]), rel=1e-5)
        assert metrics["carbontrack.energy_kwh"] == pytest.approx(float(ann["carbontrack.io/energy-kwh"]), rel=1e-5)
        # The counter is bumped on the operator's loop after log_batch returns, so the run can show
        # the metrics a moment before the counter moves: wait for it, then check it counted once.
        logged = wait_for("the mlflow_logs counter", lambda: op.metric(
            "carbontrack_operator_mlflow_logs_total", {"result": "ok"}), 30)
        assert logged == 1
        assert op.metric("carbontrack_operator_mlflow_logs_total", {"result": "failed"}) == 0
