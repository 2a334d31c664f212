"""CarbonTrack as a Kueue AdmissionCheck controller, with Kueue's real manager (v0.17.0,
built from its Go module) on the session's control plane: workloads of three Kueue-managed
kinds (a batch/v1 Job, a plain Pod, and a Kubeflow PyTorchJob run by the real
training-operator) queued while a Suspend CarbonBudget that selects them is exceeded are not
admitted; raising the budget's limit admits them and their pods run. A deferrable Job queued
in Kueue is admitted at its low-carbon window, not before.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import test_operator as op_e2e  # its in-process operator and helpers, as test_integrity does
from kubernetes import client

from carbontrack.devcluster.workloads import sim_job

pytestmark = pytest.mark.e2e

KUEUE = ("kueue.x-k8s.io", "v1beta2")
CHECK = "carbon-budget"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


@pytest.fixture(scope="module")
def kueue(devstack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from carbontrack.devcluster.binaries import ensure_workload_tools
    from carbontrack.devcluster.kube import api_client
    from carbontrack.devcluster.kueue import DEFAULT_FRAMEWORKS, ensure_kueue, start_kueue
    from carbontrack.devcluster.training_operator import start_training_operator

    cluster = devstack.cluster
    if not hasattr(cluster, "pki"):
        pytest.skip("Kueue runs beside the local control plane only (its webhooks use the harness CA)")
    state = tmp_path_factory.mktemp("kueue")
    files = ensure_kueue(log=state / "build.log")
    tools = ensure_workload_tools(log=state / "build.log")
    kubeconfig = Path(cluster.kubeconfig)
    # the PyTorchJob CRD must be served before Kueue starts its kubeflow.org/pytorchjob integration
    with api_client(kubeconfig) as api:
        training_operator = start_training_operator(api, kubeconfig, tools, devstack.supervisor)
    try:
        controller = start_kueue(files=files, kubeconfig=kubeconfig, pki=cluster.pki,
                                 supervisor=devstack.supervisor, state_dir=state,
                                 frameworks=(*DEFAULT_FRAMEWORKS, "kubeflow.org/pytorchjob"))
        try:
            yield controller
        finally:
            controller.stop()
    finally:
        devstack.supervisor.stop_one(training_operator)


def kueue_objects(custom: client.CustomObjectsApi, namespace: str) -> None:
    """A ResourceFlavor, our AdmissionCheck, a ClusterQueue that uses it (for this namespace
    only) and a LocalQueue ``lq`` in the namespace."""
    group, version = KUEUE
    cluster_objects = [
        ("resourceflavors", {"apiVersion": f"{group}/{version}", "kind": "ResourceFlavor",
                             "metadata": {"name": "default-flavor"}}),
        ("admissionchecks", {"apiVersion": f"{group}/{version}", "kind": "AdmissionCheck",
                             "metadata": {"name": CHECK},
                             "spec": {"controllerName": "carbontrack.io/carbon-budget"}}),
        ("clusterqueues", {
            "apiVersion": f"{group}/{version}", "kind": "ClusterQueue",
            "metadata": {"name": f"cq-{namespace}"},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "admissionChecksStrategy": {"admissionChecks": [{"name": CHECK}]},
                "resourceGroups": [{"coveredResources": ["cpu", "memory"], "flavors": [{
                    "name": "default-flavor",
                    "resources": [{"name": "cpu", "nominalQuota": "16"},
                                  {"name": "memory", "nominalQuota": "64Gi"}]}]}],
            }}),
    ]
    for plural, body in cluster_objects:
        try:
            custom.create_cluster_custom_object(group, version, plural, body)
        except client.exceptions.ApiException as err:
            if err.status != 409:  # the flavor and the check are shared by the module's tests
                raise
    custom.create_namespaced_custom_object(group, version, namespace, "localqueues", {
        "apiVersion": f"{group}/{version}", "kind": "LocalQueue",
        "metadata": {"name": "lq"}, "spec": {"clusterQueue": f"cq-{namespace}"}})


def queued_pod(name: str) -> dict[str, Any]:
    """A plain Pod for Kueue's pod integration, like the pods of ``sim_job``."""
    template = copy.deepcopy(sim_job(name, run_seconds=120.0, labels={"team": "nlp"})["spec"]["template"])
    template["metadata"]["labels"][QUEUE_LABEL] = "lq"
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, **template["metadata"]}, "spec": template["spec"]}


def queued_pytorchjob(name: str) -> dict[str, Any]:
    """A PyTorchJob (master + one worker) whose pods run like ``sim_job``'s."""
    template = sim_job(name, run_seconds=120.0, labels={"team": "nlp"})["spec"]["template"]
    template["spec"]["containers"][0]["name"] = "pytorch"  # the training-operator's container name
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "metadata": {"name": name, "labels": {"team": "nlp", QUEUE_LABEL: "lq"}},
            "spec": {"runPolicy": {"backoffLimit": 0}, "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "restartPolicy": "Never", "template": copy.deepcopy(template)},
                "Worker": {"replicas": 1, "restartPolicy": "Never", "template": copy.deepcopy(template)}}}}


def pods_owned_by(core: client.CoreV1Api, namespace: str, uid: str) -> list[Any]:
    return [p for p in core.list_namespaced_pod(namespace).items
            if any(ref.uid == uid for ref in p.metadata.owner_references or [])]


def workload_of(custom: client.CustomObjectsApi, namespace: str, owner_uid: str) -> dict[str, Any] | None:
    for wl in custom.list_namespaced_custom_object(*KUEUE, namespace, "workloads")["items"]:
        if any(ref.get("uid") == owner_uid for ref in wl["metadata"].get("ownerReferences") or []):
            return dict(wl)
    return None


def blank_check_message(custom: client.CustomObjectsApi, wl: dict[str, Any] | None) -> None:
    """As an admin: our check's entry back to Pending with no message (server-side apply)."""
    assert wl is not None
    entry = {**our_check(wl), "state": "Pending", "message": ""}
    custom.patch_namespaced_custom_object_status(
        *KUEUE, wl["metadata"]["namespace"], "workloads", wl["metadata"]["name"],
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
         "metadata": {"name": wl["metadata"]["name"], "namespace": wl["metadata"]["namespace"]},
         "status": {"admissionChecks": [entry]}},
        field_manager="e2e-test", force=True, _content_type="application/apply-patch+yaml")
    assert our_check(custom.get_namespaced_custom_object(
        *KUEUE, wl["metadata"]["namespace"], "workloads", wl["metadata"]["name"]))["message"] == ""


def our_check(wl: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (wl.get("status") or {}).get("admissionChecks") or []
                 if c["name"] == CHECK), {})


def admitted(wl: dict[str, Any] | None) -> bool:
    return wl is not None and any(c["type"] == "Admitted" and c["status"] == "True"
                                  for c in (wl.get("status") or {}).get("conditions") or [])


def test_exceeded_suspend_budget_keeps_kueue_workloads_queued_until_the_limit_is_raised(
    kueue: Any, kubeconfig: Path, prometheus: Any, namespace: str, core_v1: Any, batch_v1: Any,
    custom_objects: Any, wait_for: Any,
) -> None:
    from carbontrack.devcluster.kube import api_client
    from carbontrack.devcluster.kueue import MANAGED_LABEL

    with api_client(kubeconfig) as api:
        op_e2e.install_crd(api)  # the CarbonBudget and CarbonRecord CRDs

    core_v1.patch_namespace(namespace, {"metadata": {"labels": {MANAGED_LABEL: "true"}}})
    kueue_objects(custom_objects, namespace)
    op = op_e2e.InProcessOperator(kubeconfig, prometheus.url, namespace, kueue_admission=True).start()
    try:
        check = wait_for("the AdmissionCheck marked Active", lambda: next((
            c for c in (custom_objects.get_cluster_custom_object(*KUEUE, "admissionchecks", CHECK)
                        .get("status") or {}).get("conditions") or []
            if c["type"] == "Active" and c["status"] == "True"), None), 60)
        assert check["reason"] == "Active"

        # A Job outside Kueue (no queue name) spends the whole budget.
        op_e2e.create_budget(custom_objects, namespace, op_e2e.budget_body("nlp", "0.01mg", action="Suspend"))
        batch_v1.create_namespaced_job(namespace, op_e2e.nlp_job("spender", run_seconds=2.0))
        wait_for("spender accounted", lambda: op_e2e.accounted(batch_v1, namespace, "spender"), 90)
        wait_for("the budget exceeded", lambda: (
            op_e2e.get_budget(custom_objects, namespace, "nlp").get("status") or {}).get("exceeded"), 30)

        # Three kinds queued in Kueue, all of team nlp: a Job, a plain Pod and a PyTorchJob.
        job = sim_job("queued-job", run_seconds=120.0, labels={"team": "nlp"})
        job["metadata"]["labels"][QUEUE_LABEL] = "lq"  # the Job is queued, not its pods
        queued = {
            "Job": batch_v1.create_namespaced_job(namespace, job).metadata.uid,
            "Pod": core_v1.create_namespaced_pod(namespace, queued_pod("queued-pod")).metadata.uid,
            "PyTorchJob": custom_objects.create_namespaced_custom_object(
                "kubeflow.org", "v1", namespace, "pytorchjobs", queued_pytorchjob("queued-pytorchjob")
            )["metadata"]["uid"],
        }
        held = f"held by CarbonBudget {namespace}/nlp: exceeded"
        for kind, uid in queued.items():
            wl = wait_for(f"the {kind}'s Workload held with our message", lambda uid=uid: (
                w := workload_of(custom_objects, namespace, uid)) and held in our_check(w).get("message", "") and w, 60)
            check_state = our_check(wl)
            assert check_state["state"] == "Pending"
            assert check_state["message"].endswith(
                f"{kind} {namespace}/queued-{kind.lower()} is admitted when the period resets or the limit is raised")
            # Kueue reserved quota (it adds the checks then) but does not admit
            assert any(c["type"] == "QuotaReserved" and c["status"] == "True" for c in wl["status"]["conditions"])
            assert not admitted(wl)
        # held, not just slow: nothing has started
        assert batch_v1.read_namespaced_job("queued-job", namespace).spec.suspend is True
        pod = core_v1.read_namespaced_pod("queued-pod", namespace)
        assert "kueue.x-k8s.io/admission" in [g.name for g in pod.spec.scheduling_gates or []]
        assert pod.spec.node_name is None
        pytorchjob = custom_objects.get_namespaced_custom_object(
            "kubeflow.org", "v1", namespace, "pytorchjobs", "queued-pytorchjob")
        assert pytorchjob["spec"]["runPolicy"]["suspend"] is True
        for kind in ("Job", "PyTorchJob"):
            assert not pods_owned_by(core_v1, namespace, queued[kind])
        for uid in queued.values():
            assert not admitted(workload_of(custom_objects, namespace, uid))
        # the held Job's membership survives an operator restart and relabelling: the
        # operator-owned annotation names the budget (kueue_checks.holds reads it)
        wait_for("the held Job's budget membership", lambda: (
            batch_v1.read_namespaced_job("queued-job", namespace).metadata.annotations or {}
        ).get("carbontrack.io/budgets") == f"{namespace}/nlp", 30)

        # A restarted operator decides before its budget watch may have caught up: it must
        # still hold them. The checks' messages are blanked while it is down (as Kueue does
        # when it resets a check), so its fresh decision is seen when it writes them again.
        op.stop()
        for uid in queued.values():
            blank_check_message(custom_objects, workload_of(custom_objects, namespace, uid))
        op = op_e2e.InProcessOperator(kubeconfig, prometheus.url, namespace, kueue_admission=True).start()
        for kind, uid in queued.items():
            wl = wait_for(f"the {kind}'s Workload held again after the restart", lambda uid=uid: (
                w := workload_of(custom_objects, namespace, uid)) and held in our_check(w).get("message", "") and w, 60)
            assert our_check(wl)["state"] == "Pending" and not admitted(wl)

        # The budget manager raises the limit: all three are admitted and their pods run.
        custom_objects.patch_namespaced_custom_object(
            "carbontrack.io", "v1alpha1", namespace, "carbonbudgets", "nlp", {"spec": {"limit": "10kg"}})
        for kind, uid in queued.items():
            wl = wait_for(f"the {kind}'s Workload admitted", lambda uid=uid: admitted(
                w := workload_of(custom_objects, namespace, uid)) and w, 60)
            assert our_check(wl)["state"] == "Ready"
            assert our_check(wl)["message"] == (
                f"no exceeded Suspend CarbonBudget holds {kind} {namespace}/queued-{kind.lower()}")
        wait_for("the Job's pod Running", lambda: any(
            p.status.phase == "Running" for p in pods_owned_by(core_v1, namespace, queued["Job"])), 60)
        assert batch_v1.read_namespaced_job("queued-job", namespace).spec.suspend is False
        wait_for("the Pod Running", lambda: core_v1.read_namespaced_pod(
            "queued-pod", namespace).status.phase == "Running", 60)
        pods = wait_for("the PyTorchJob's master and worker Running", lambda: (
            ps := [p for p in pods_owned_by(core_v1, namespace, queued["PyTorchJob"]) if p.status.phase == "Running"]
        ) and len(ps) == 2 and ps, 90)
        assert sorted(p.metadata.labels["training.kubeflow.org/replica-type"] for p in pods) == ["master", "worker"]
    finally:
        op.stop()
        # the namespace's deletion takes its Workloads; the ClusterQueue is cluster-scoped
        with contextlib.suppress(client.exceptions.ApiException):
            custom_objects.delete_cluster_custom_object(*KUEUE, "clusterqueues", f"cq-{namespace}")


def test_a_workload_decided_before_the_budget_watch_caught_up_is_held(
    kueue: Any, kubeconfig: Path, namespace: str, core_v1: Any, batch_v1: Any, custom_objects: Any,
    wait_for: Any,
) -> None:
    """The controller driven by hand against the real API server, as right after a restart:
    a Workload event before any CarbonBudget event. It lists the namespace's budgets before
    deciding, so the exceeded budget holds the Workload (it would have been Ready)."""
    from carbontrack.operator.apiclient import ApiTransport
    from carbontrack.operator.kubeconfig import load_endpoint
    from carbontrack.operator.kueue_admission import KueueAdmission, KueueApi

    from carbontrack.devcluster.kube import api_client
    from carbontrack.devcluster.kueue import MANAGED_LABEL

    with api_client(kubeconfig) as api:
        op_e2e.install_crd(api)
    core_v1.patch_namespace(namespace, {"metadata": {"labels": {MANAGED_LABEL: "true"}}})
    kueue_objects(custom_objects, namespace)
    # the budget's status as the operator writes it when the budget is exceeded (no operator
    # runs here, so nothing rewrites it)
    op_e2e.create_budget(custom_objects, namespace, op_e2e.budget_body("nlp", "1g", action="Suspend"))
    custom_objects.patch_namespaced_custom_object_status(
        "carbontrack.io", "v1alpha1", namespace, "carbonbudgets", "nlp",
        {"status": {"exceeded": True, "used": "1.5 g", "usedGrams": 1.5, "periodName": "2026-12"}})
    transport = ApiTransport(load_endpoint(str(kubeconfig)))
    admission = KueueAdmission(KueueApi(transport), op_e2e.Clock())
    check = custom_objects.get_cluster_custom_object(*KUEUE, "admissionchecks", CHECK)

    job = sim_job("early", run_seconds=30.0, labels={"team": "nlp"})
    job["metadata"]["labels"][QUEUE_LABEL] = "lq"
    uid = batch_v1.create_namespaced_job(namespace, job).metadata.uid

    async def drive() -> dict[str, Any]:
        try:
            await admission.on_check_event("ADDED", dict(check))  # Active: the ClusterQueue reserves quota
            wl = await asyncio.to_thread(wait_for, "our check on the Workload", lambda: (
                w := workload_of(custom_objects, namespace, uid)) and our_check(w) and w, 60)
            assert admission.budgets == {}  # no budget event has come
            await admission.on_workload_event("ADDED", wl)
            return dict(workload_of(custom_objects, namespace, uid) or {})
        finally:
            await transport.aclose()

    wl = asyncio.run(drive())
    assert our_check(wl)["state"] == "Pending"
    assert our_check(wl)["message"].startswith(
        f"held by CarbonBudget {namespace}/nlp: exceeded (1.5 g of 1g in 2026-12)")
    assert not admitted(wl)
    assert batch_v1.read_namespaced_job("early", namespace).spec.suspend is True


def test_a_deferrable_kueue_job_is_admitted_at_its_low_carbon_window_not_before(
    kueue: Any, kubeconfig: Path, prometheus: Any, namespace: str, core_v1: Any, batch_v1: Any,
    custom_objects: Any, wait_for: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Time compressed (forecast points 4 s apart, served by a local HTTP server in the
    Electricity Maps shape, as test_deferral does): Kueue creates the deferrable Job suspended,
    the operator plans its window and keeps our check Pending until then; at the window the
    check goes Ready and Kueue admits and resumes the Job."""
    from test_deferral import STEP, ForecastServer, parse

    from carbontrack.devcluster.kube import api_client
    from carbontrack.devcluster.kueue import MANAGED_LABEL
    from carbontrack.intensity.selection import IntensityConfig

    with api_client(kubeconfig) as api:
        op_e2e.install_crd(api)
    core_v1.patch_namespace(namespace, {"metadata": {"labels": {MANAGED_LABEL: "true"}}})
    kueue_objects(custom_objects, namespace)
    server = ForecastServer()
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", "tok-e2e-kueue-deferral")
    intensity = IntensityConfig(provider="electricitymaps", base_url=server.api.url, cache_ttl_s=0)
    op = op_e2e.InProcessOperator(kubeconfig, prometheus.url, namespace, kueue_admission=True,
                                  deferral_zone="DE", intensity=intensity).start()
    try:
        t0 = server.start_now()
        window = t0 + 5 * STEP  # the forecast minimum, before the 90 s deadline
        job = sim_job("deferred", run_seconds=2.0, labels={"team": "defer"}, annotations={
            "carbontrack.io/deferrable-until": "90s", "carbontrack.io/expected-duration": "4s"})
        job["metadata"]["labels"][QUEUE_LABEL] = "lq"
        uid = batch_v1.create_namespaced_job(namespace, job).metadata.uid

        def planned() -> dict[str, Any]:
            ann = batch_v1.read_namespaced_job("deferred", namespace).metadata.annotations or {}
            value = json.loads(ann.get("carbontrack.io/deferral", "null"))
            return value if isinstance(value, dict) and value.get("state") == "held" else {}
        plan = wait_for("the deferral's plan", planned, 30)
        assert parse(plan["plannedStart"]) == window
        wl = wait_for("the Workload held for its window", lambda: (
            w := workload_of(custom_objects, namespace, uid)) and "low-carbon window" in our_check(w).get(
                "message", "") and w, 30)
        assert our_check(wl)["state"] == "Pending"
        assert our_check(wl)["message"].startswith(
            f"Job {namespace}/deferred deferred to its low-carbon window starting {plan['plannedStart']}")
        assert not admitted(wl)

        # not admitted before the window (the Job stays suspended, no pod), admitted at it
        while datetime.now(timezone.utc) < window - timedelta(seconds=1):
            wl = workload_of(custom_objects, namespace, uid)
            assert not admitted(wl) and our_check(wl or {})["state"] == "Pending"
            assert batch_v1.read_namespaced_job("deferred", namespace).spec.suspend is True
            assert not pods_owned_by(core_v1, namespace, uid)
            time.sleep(0.5)
        wl = wait_for("the Workload admitted at its window", lambda: admitted(
            w := workload_of(custom_objects, namespace, uid)) and w, 30)
        assert our_check(wl)["state"] == "Ready"
        at = parse(next(c["lastTransitionTime"] for c in wl["status"]["conditions"] if c["type"] == "Admitted"))
        assert window <= at < window + timedelta(seconds=5)
        started = wait_for("the Job started", lambda: batch_v1.read_namespaced_job(
            "deferred", namespace).status.start_time, 60)
        assert started >= window
        released = json.loads((batch_v1.read_namespaced_job("deferred", namespace).metadata.annotations
                               or {})["carbontrack.io/deferral"])
        assert released["state"] == "released" and parse(released["releasedAt"]) >= window
    finally:
        op.stop()
        server.api.close()
        with contextlib.suppress(client.exceptions.ApiException):
            custom_objects.delete_cluster_custom_object(*KUEUE, "clusterqueues", f"cq-{namespace}")
