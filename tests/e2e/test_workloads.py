"""Finished workloads beyond Jobs (operator/workloads/), end to end on the local stack.

- PyTorchJob with the REAL Kubeflow training-operator v1.8.1 (built from its Go module,
  devcluster/training_operator.py): master + workers on simulated GPU/CPU nodes.
- JobSet with the REAL JobSet controller v0.8.2 (built from its Go module).
- TrainJob with the REAL Kubeflow Trainer v2.0.0 controller manager (built from its Go module,
  devcluster/trainer.py): from a ClusterTrainingRuntime it creates the JobSet, the real JobSet
  controller the Job, and it marks the TrainJob Complete from the JobSet's condition.
- RayJob with its real CRD (KubeRay v1.4.0) but no controller in the harness (its controller
  asks the Ray dashboard in the head pod for the job's state, which simulated pods do not
  serve): the test creates what KubeRay creates (the submitter Job, the RayCluster with a head
  pod) and sets the status the way the controller does, as cited at each step.
- Bad owner chains (unknown kind, cycle, dangling owner): a Warning Event and the Job is still
  accounted by energy.

Each workload is accounted once (one CarbonRecord entry, one budget ledger entry), annotated,
and its CO2e equals the sum of its pods' series in Prometheus within 1e-5.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import test_operator as op_e2e  # its in-process operator and helpers, as test_integrity does
from kubernetes import client

from carbontrack.devcluster.workloads import sim_job

pytestmark = pytest.mark.e2e  # a real control plane and controllers: run with --e2e

GROUP, VERSION = "carbontrack.io", "v1alpha1"
CO2E = "carbontrack_container_co2e_grams_total"
ENERGY = "carbontrack_container_energy_joules_total"
KINDS = {  # kind -> (group, version, plural)
    "PyTorchJob": ("kubeflow.org", "v1", "pytorchjobs"),
    "JobSet": ("jobset.x-k8s.io", "v1alpha2", "jobsets"),
    "RayJob": ("ray.io", "v1", "rayjobs"),
    "RayCluster": ("ray.io", "v1", "rayclusters"),
    "TrainJob": ("trainer.kubeflow.org", "v1alpha1", "trainjobs"),
}


@pytest.fixture(scope="module")
def training_operator(devstack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The workload CRDs, the real training-operator and JobSet controller, for this module."""
    from carbontrack.devcluster.binaries import ensure_workload_tools
    from carbontrack.devcluster.kube import api_client
    from carbontrack.devcluster.training_operator import start_jobset_controller, start_training_operator

    state = tmp_path_factory.mktemp("wl")
    tools = ensure_workload_tools(log=state / "build.log")
    kubeconfig = Path(devstack.cluster.kubeconfig)
    with api_client(kubeconfig) as api:
        op_e2e.install_crd(api)
        procs = [start_training_operator(api, kubeconfig, tools, devstack.supervisor),
                 start_jobset_controller(kubeconfig, tools.jobset, state, devstack.supervisor)]
    try:
        yield procs[0]
    finally:
        for proc in procs:
            devstack.supervisor.stop_one(proc)


@pytest.fixture(scope="module")
def trainer(training_operator: Any, devstack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real Kubeflow Trainer v2 controller manager and its CRDs, beside the JobSet
    controller that runs the JobSets it creates (training_operator), for this module."""
    from carbontrack.devcluster.kube import api_client
    from carbontrack.devcluster.trainer import ensure_trainer, start_trainer

    tools = ensure_trainer(log=tmp_path_factory.mktemp("trainer") / "build.log")
    kubeconfig = Path(devstack.cluster.kubeconfig)
    with api_client(kubeconfig) as api:
        proc = start_trainer(api, kubeconfig, tools, devstack.supervisor)
    try:
        yield proc
    finally:
        devstack.supervisor.stop_one(proc)


def now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def controller(kind: str, name: str, uid: str, api_version: str | None = None) -> dict[str, Any]:
    group, version, _ = KINDS.get(kind, ("", "", ""))
    return {"apiVersion": api_version or f"{group}/{version}", "kind": kind, "name": name, "uid": uid,
            "controller": True}


def get(custom: client.CustomObjectsApi, ns: str, kind: str, name: str) -> dict[str, Any]:
    group, version, plural = KINDS[kind]
    return dict(custom.get_namespaced_custom_object(group, version, ns, plural, name))


def create(custom: client.CustomObjectsApi, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    group, version, plural = KINDS[body["kind"]]
    return dict(custom.create_namespaced_custom_object(group, version, ns, plural, body))


def set_status(custom: client.CustomObjectsApi, ns: str, kind: str, name: str, status: dict[str, Any]) -> None:
    group, version, plural = KINDS[kind]
    custom.patch_namespaced_custom_object_status(group, version, ns, plural, name, {"status": status})


def accounted(body: dict[str, Any]) -> dict[str, str] | None:
    ann = body["metadata"].get("annotations") or {}
    return ann if ann.get("carbontrack.io/accounted-uid") == body["metadata"]["uid"] else None


def pod_series_total(prometheus: Any, metric: str, pod_uids: set[str]) -> float:
    """The pods' own series (by pod UID, whatever their owner labels say), final values."""
    regex = "|".join(sorted(pod_uids))
    return sum(float(r["value"][1]) for r in prometheus.query(
        f'max_over_time({metric}{{pod_uid=~"{regex}"}}[10m])'))


def owner_labels(prometheus: Any, pod_uids: set[str]) -> set[tuple[str, str]]:
    regex = "|".join(sorted(pod_uids))
    return {(r["metric"].get("owner_kind", ""), r["metric"].get("owner_uid", ""))
            for r in prometheus.query(f'max_over_time({ENERGY}{{pod_uid=~"{regex}"}}[10m])')}


def record_entries(custom: client.CustomObjectsApi, ns: str, uid: str) -> list[dict[str, Any]]:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, ns, "carbonrecords")["items"]
    return [e for item in items for key, e in (item["spec"].get("entries") or {}).items() if key == uid]


def pods_of(core: client.CoreV1Api, ns: str, owner_uids: set[str]) -> set[str]:
    return {p.metadata.uid for p in core.list_namespaced_pod(ns).items
            if any(r.uid in owner_uids for r in p.metadata.owner_references or [])}


def assert_accounted_once(custom: client.CustomObjectsApi, core: client.CoreV1Api, prometheus: Any, ns: str,
                          kind: str, uid: str, ann: dict[str, str], pod_uids: set[str], budget: str) -> None:
    """Once (one record entry, one ledger entry), annotated, and equal to its pods' series."""
    co2e = float(ann["carbontrack.io/co2e-grams"])
    assert co2e > 0
    assert co2e == pytest.approx(pod_series_total(prometheus, CO2E, pod_uids), rel=1e-5)
    assert float(ann["carbontrack.io/energy-kwh"]) * 3.6e6 == pytest.approx(
        pod_series_total(prometheus, ENERGY, pod_uids), rel=1e-5)
    assert owner_labels(prometheus, pod_uids) == {(kind, uid)}  # the exporter leads pods to the root
    report = json.loads(ann["carbontrack.io/report"])
    assert report["job"]["uid"] == uid and report["pods"] == len(pod_uids)
    entries = record_entries(custom, ns, uid)
    assert len(entries) == 1 and entries[0]["job"]["kind"] == kind
    status = op_e2e.get_budget(custom, ns, budget).get("status") or {}
    assert uid in status["ledger"]
    assert status["ledger"][uid]["co2eGrams"] == pytest.approx(co2e, rel=1e-5)
    ev = op_e2e.events(core, ns, reason="CarbonAccounted", kind=kind)
    assert [e.involved_object.uid for e in ev] == [uid]


def sim_template(name: str, *, run_seconds: float, cpu_cores: float = 1.0, gpus: int = 0,
                 node: str | None = None, container: str = "main") -> dict[str, Any]:
    """A simulated pod template (sim_job's) with the container name a controller wants."""
    template: dict[str, Any] = sim_job(name, run_seconds=run_seconds, cpu_cores=cpu_cores, gpus=gpus,
                                       node=node)["spec"]["template"]
    template["spec"]["containers"][0]["name"] = container
    return template


# ------------------------------------------------------------------------------ tests
def test_pytorchjob_with_the_real_training_operator_is_accounted_once(
    training_operator: Any, namespace: str, custom_objects: Any, core_v1: Any, prometheus: Any,
    kubeconfig: Path, wait_for: Any,
) -> None:
    custom_objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "carbonbudgets",
        op_e2e.budget_body("train", "1kg", selector={"matchLabels": {"team": "vision"}}))
    # Workers finish before the master: the PyTorchJob succeeds when its Master succeeds
    # (pytorchjob_controller.go:385-398), so every pod has ended by its completionTime. The
    # 6 s margin covers workers that start late on a loaded machine (the operator does not
    # count a pod's energy after the workload's accounting; docs/operator.md).
    master = sim_template("m", run_seconds=7.0, gpus=1, node="sim-gpu-0", container="pytorch")
    worker = sim_template("w", run_seconds=1.0, cpu_cores=2.0, node="sim-cpu-0", container="pytorch")
    body = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "metadata": {"name": "resnet", "labels": {"team": "vision"}},
            "spec": {"runPolicy": {"backoffLimit": 0},
                     "pytorchReplicaSpecs": {
                         "Master": {"replicas": 1, "restartPolicy": "Never", "template": master},
                         "Worker": {"replicas": 2, "restartPolicy": "Never", "template": worker}}}}
    # the operator's default accounting delay (5 s), not op_e2e.FAST's 1 s: the GPU master's
    # final reading can reach Prometheus a few scrapes after its completion time, and once
    # accounting took ~2 s (6fd9aba) the 1-s delay raced it (2 of 5 runs this session)
    with op_e2e.operator(kubeconfig, prometheus.url, namespace, accounting_delay_s=5.0):
        uid = create(custom_objects, namespace, body)["metadata"]["uid"]
        wait_for("the accounting finalizer on the PyTorchJob", lambda: "carbontrack.io/accounting" in (
            get(custom_objects, namespace, "PyTorchJob", "resnet")["metadata"].get("finalizers") or []), 30)
        pods = wait_for("3 pods from the training-operator", lambda: len(p := pods_of(core_v1, namespace, {uid})) == 3
                        and p, 60)
        done = wait_for("the Succeeded condition from the training-operator", lambda: any(
            c["type"] == "Succeeded" and c["status"] == "True"
            for c in (get(custom_objects, namespace, "PyTorchJob", "resnet").get("status") or {}).get(
                "conditions") or []), 60)
        assert done
        ann = wait_for("the PyTorchJob's accounting", lambda: accounted(
            get(custom_objects, namespace, "PyTorchJob", "resnet")), 60)
        wait_for("the budget ledger", lambda: uid in ((op_e2e.get_budget(
            custom_objects, namespace, "train").get("status") or {}).get("ledger") or {}), 15)
        assert_accounted_once(custom_objects, core_v1, prometheus, namespace, "PyTorchJob", uid, ann, pods, "train")
        assert ann["carbontrack.io/method"] == "measured"
        assert "gpu" in json.loads(ann["carbontrack.io/report"])["energyKwhByComponent"]
        wait_for("the finalizer to go", lambda: "carbontrack.io/accounting" not in (
            get(custom_objects, namespace, "PyTorchJob", "resnet")["metadata"].get("finalizers") or []), 15)


def test_jobset_with_its_real_controller_and_rayjob_are_accounted_once(
    training_operator: Any, namespace: str, custom_objects: Any, core_v1: Any, batch_v1: Any,
    prometheus: Any, kubeconfig: Path, wait_for: Any,
) -> None:
    custom_objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "carbonbudgets",
        op_e2e.budget_body("llm", "1kg", selector={"matchLabels": {"team": "llm"}}))
    from carbontrack.devcluster.training_operator import jobset_defaults

    job_template = {"parallelism": 2, "completions": 2, "backoffLimit": 0,
                    "template": sim_template("js", run_seconds=4.0, cpu_cores=1.0, node="sim-cpu-0")}
    jobset = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
              "metadata": {"name": "pretrain", "labels": {"team": "llm"}},
              "spec": jobset_defaults({"replicatedJobs": [{"name": "workers", "replicas": 1,
                                                          "template": {"spec": job_template}}]})}
    rayjob = {"apiVersion": "ray.io/v1", "kind": "RayJob",
              "metadata": {"name": "tune", "labels": {"team": "llm"}},
              "spec": {"entrypoint": "python tune.py", "shutdownAfterJobFinishes": True,
                       "rayClusterSpec": {"headGroupSpec": {"rayStartParams": {},
                                                           "template": sim_template("h", run_seconds=5.0)}}}}
    with op_e2e.operator(kubeconfig, prometheus.url, namespace, accounting_delay_s=5.0):
        js_uid = create(custom_objects, namespace, jobset)["metadata"]["uid"]

        rj = create(custom_objects, namespace, rayjob)
        rj_uid = rj["metadata"]["uid"]
        start = now_text()
        # RayJob status on leaving New (rayjob_controller.go:781-787): Initializing, startTime
        set_status(custom_objects, namespace, "RayJob", "tune",
                   {"jobDeploymentStatus": "Initializing", "jobStatus": "PENDING", "startTime": start})
        # what KubeRay creates: the RayCluster (controller: the RayJob) with a head pod, and the
        # submitter Job (K8sJobMode; controller: the RayJob)
        cluster = create(custom_objects, namespace, {
            "apiVersion": "ray.io/v1", "kind": "RayCluster",
            "metadata": {"name": "tune-raycluster", "ownerReferences": [controller("RayJob", "tune", rj_uid)]},
            "spec": rayjob["spec"]["rayClusterSpec"]})
        head = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "tune-raycluster-head",
                             "ownerReferences": [controller("RayCluster", "tune-raycluster",
                                                            cluster["metadata"]["uid"])],
                             "annotations": rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"][
                                 "metadata"]["annotations"]},
                "spec": rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]}
        head_uid = core_v1.create_namespaced_pod(namespace, head).metadata.uid
        submitter = sim_job("tune-submitter", run_seconds=3.0, cpu_cores=0.5, node="sim-cpu-0")
        submitter["metadata"]["ownerReferences"] = [controller("RayJob", "tune", rj_uid)]
        sub_uid = batch_v1.create_namespaced_job(namespace, submitter).metadata.uid
        set_status(custom_objects, namespace, "RayJob", "tune",
                   {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING", "startTime": start})

        # the JobSet controller creates the Job (its controller: the JobSet), the Job
        # controller its pods, and the JobSet controller marks it Completed
        child = wait_for("the JobSet controller's Job", lambda: [
            j for j in batch_v1.list_namespaced_job(namespace).items
            if any(r.uid == js_uid and r.controller for r in j.metadata.owner_references or [])], 60)[0]
        child_uid = child.metadata.uid
        js_pods = wait_for("the JobSet's pods", lambda: len(p := pods_of(core_v1, namespace, {child_uid})) == 2
                           and p, 30)
        wait_for("the Completed condition from the JobSet controller", lambda: any(
            c["type"] == "Completed" and c["status"] == "True"
            for c in (get(custom_objects, namespace, "JobSet", "pretrain").get("status") or {}).get(
                "conditions") or []), 60)

        rj_pods = {head_uid} | wait_for("the submitter's pod", lambda: pods_of(core_v1, namespace, {sub_uid}), 30)
        op_e2e.wait_job_finished(batch_v1, namespace, "tune-submitter", wait_for)
        wait_for("the head pod to end", lambda: core_v1.read_namespaced_pod(
            "tune-raycluster-head", namespace).status.phase == "Succeeded", 30)
        # RayJob end (rayjob_controller.go:795-802): Complete with endTime
        set_status(custom_objects, namespace, "RayJob", "tune", {
            "jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "startTime": start,
            "endTime": now_text(), "succeeded": 1, "failed": 0})

        js_ann = wait_for("the JobSet's accounting", lambda: accounted(
            get(custom_objects, namespace, "JobSet", "pretrain")), 60)
        rj_ann = wait_for("the RayJob's accounting", lambda: accounted(
            get(custom_objects, namespace, "RayJob", "tune")), 60)
        wait_for("both in the budget", lambda: {js_uid, rj_uid} <= set((op_e2e.get_budget(
            custom_objects, namespace, "llm").get("status") or {}).get("ledger") or {}), 15)
        assert_accounted_once(custom_objects, core_v1, prometheus, namespace, "JobSet", js_uid, js_ann, js_pods, "llm")
        assert_accounted_once(custom_objects, core_v1, prometheus, namespace, "RayJob", rj_uid, rj_ann, rj_pods, "llm")
        # the Jobs under them are not units of accounting: no record, no annotation, no finalizer
        for name, uid in ((child.metadata.name, child_uid), ("tune-submitter", sub_uid)):
            job = batch_v1.read_namespaced_job(name, namespace)
            assert "carbontrack.io/accounted-at" not in (job.metadata.annotations or {})
            assert "carbontrack.io/accounting" not in (job.metadata.finalizers or [])
            assert record_entries(custom_objects, namespace, uid) == []


def test_trainjob_with_the_real_trainer_and_jobset_controllers_is_accounted_once(
    trainer: Any, namespace: str, custom_objects: Any, core_v1: Any, batch_v1: Any,
    prometheus: Any, kubeconfig: Path, wait_for: Any,
) -> None:
    custom_objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "carbonbudgets",
        op_e2e.budget_body("ft", "1kg", selector={"matchLabels": {"team": "nlp"}}))
    from carbontrack.devcluster.training_operator import jobset_defaults

    # The runtime's trainer step is the replicated Job labelled trainjob-ancestor-step=trainer;
    # the Trainer sets its parallelism and completions to the TrainJob's numNodes
    # (github.com/kubeflow/trainer/v2@v2.0.0 pkg/runtime/framework/plugins/plainml/plainml.go:51-56,
    # plugins/jobset/builder.go:111-117) and fills its container "node" from the TrainJob.
    pod = sim_template("tj", run_seconds=4.0, cpu_cores=1.0, node="sim-cpu-0", container="node")
    runtime_name = f"sim-{namespace}"  # cluster-scoped: named after the test's namespace
    runtime = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "ClusterTrainingRuntime",
               "metadata": {"name": runtime_name},
               "spec": {"template": {"spec": jobset_defaults({"replicatedJobs": [{
                   "name": "node", "replicas": 1,
                   "template": {"metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
                                "spec": {"backoffLimit": 0, "template": pod}}}]})}}}
    trainjob = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
                "metadata": {"name": "finetune", "labels": {"team": "nlp"}},
                "spec": {"runtimeRef": {"name": runtime_name}, "trainer": {"numNodes": 2}}}
    custom_objects.create_cluster_custom_object("trainer.kubeflow.org", "v1alpha1", "clustertrainingruntimes",
                                                runtime)
    try:
        with op_e2e.operator(kubeconfig, prometheus.url, namespace, accounting_delay_s=5.0):
            uid = create(custom_objects, namespace, trainjob)["metadata"]["uid"]
            # the Trainer creates the JobSet (its controller: the TrainJob; plugins/jobset/jobset.go:243-289),
            # the JobSet controller its Job, the Job controller the pods
            js = wait_for("the Trainer's JobSet", lambda: [
                j for j in custom_objects.list_namespaced_custom_object(
                    "jobset.x-k8s.io", "v1alpha2", namespace, "jobsets")["items"]
                if any(r["uid"] == uid and r.get("controller") for r in j["metadata"].get("ownerReferences") or [])
            ], 60)[0]
            js_uid = js["metadata"]["uid"]
            child = wait_for("the JobSet controller's Job", lambda: [
                j for j in batch_v1.list_namespaced_job(namespace).items
                if any(r.uid == js_uid and r.controller for r in j.metadata.owner_references or [])], 60)[0]
            child_uid = child.metadata.uid
            pods = wait_for("the TrainJob's 2 pods", lambda: len(p := pods_of(core_v1, namespace, {child_uid})) == 2
                            and p, 30)
            # the Trainer copies the JobSet's Completed condition as Complete (plugins/jobset/jobset.go:291-305)
            wait_for("the Complete condition from the Trainer", lambda: any(
                c["type"] == "Complete" and c["status"] == "True"
                for c in (get(custom_objects, namespace, "TrainJob", "finetune").get("status") or {}).get(
                    "conditions") or []), 60)
            ann = wait_for("the TrainJob's accounting", lambda: accounted(
                get(custom_objects, namespace, "TrainJob", "finetune")), 60)
            wait_for("the budget ledger", lambda: uid in ((op_e2e.get_budget(
                custom_objects, namespace, "ft").get("status") or {}).get("ledger") or {}), 15)
            assert_accounted_once(custom_objects, core_v1, prometheus, namespace, "TrainJob", uid, ann, pods, "ft")
            # the JobSet and the Job under it are not units of accounting
            js_meta = get(custom_objects, namespace, "JobSet", js["metadata"]["name"])["metadata"]
            job_meta = batch_v1.read_namespaced_job(child.metadata.name, namespace).metadata
            for annotations, finalizers in ((js_meta.get("annotations"), js_meta.get("finalizers")),
                                            (job_meta.annotations, job_meta.finalizers)):
                assert "carbontrack.io/accounted-at" not in (annotations or {})
                assert "carbontrack.io/accounting" not in (finalizers or [])
            for child_of in (js_uid, child_uid):
                assert record_entries(custom_objects, namespace, child_of) == []
            assert op_e2e.events(core_v1, namespace, reason="CarbonAccounted", kind="JobSet") == []
            wait_for("the finalizer to go", lambda: "carbontrack.io/accounting" not in (
                get(custom_objects, namespace, "TrainJob", "finetune")["metadata"].get("finalizers") or []), 15)
    finally:
        custom_objects.delete_cluster_custom_object("trainer.kubeflow.org", "v1alpha1", "clustertrainingruntimes",
                                                    runtime_name)


def test_bad_owner_chains_give_an_event_and_the_job_is_still_accounted(
    training_operator: Any, namespace: str, custom_objects: Any, core_v1: Any, batch_v1: Any,
    prometheus: Any, kubeconfig: Path, wait_for: Any,
) -> None:
    def job(name: str, owner: dict[str, Any] | None = None, suspend: bool = False) -> dict[str, Any]:
        body = sim_job(name, run_seconds=3.0, cpu_cores=1.0, node="sim-cpu-0")
        if owner is not None:
            body["metadata"]["ownerReferences"] = [owner]
        body["spec"]["suspend"] = suspend
        return body

    with op_e2e.operator(kubeconfig, prometheus.url, namespace, accounting_delay_s=5.0):
        # a controller of a kind CarbonTrack does not know (and no API serves)
        unknown = batch_v1.create_namespaced_job(namespace, job("under-widget", controller(
            "Widget", "w", str(uuid.uuid4()), api_version="example.com/v1")))
        # a controller that does not exist: a RayService (a known kind whose CRD is not
        # installed here, so the garbage collector cannot judge it and leaves the Job alone)
        dangling = batch_v1.create_namespaced_job(namespace, job("orphan", controller(
            "RayService", "gone", str(uuid.uuid4()), api_version="ray.io/v1")))
        # a cycle: a -> b -> a (b never runs)
        a = batch_v1.create_namespaced_job(namespace, job("cycle-a", suspend=True))
        b = batch_v1.create_namespaced_job(namespace, job("cycle-b", controller(
            "Job", "cycle-a", a.metadata.uid, api_version="batch/v1"), suspend=True))
        batch_v1.patch_namespaced_job("cycle-a", namespace, {
            "metadata": {"ownerReferences": [controller("Job", "cycle-b", b.metadata.uid, api_version="batch/v1")]},
            "spec": {"suspend": False}})
        cases = {"under-widget": (unknown.metadata.uid, "CarbonOwnerUnknownKind", "Widget w"),
                 "orphan": (dangling.metadata.uid, "CarbonOwnerDangling", "does not exist"),
                 "cycle-a": (a.metadata.uid, "CarbonOwnerCycle", "Job cycle-a -> Job cycle-b -> Job cycle-a")}
        for name, (uid, reason, text) in cases.items():
            ev = wait_for(f"the {reason} Event", lambda n=name, r=reason: op_e2e.events(
                core_v1, namespace, reason=r, name=n), 30)
            assert ev[0].type == "Warning" and text in ev[0].message and ev[0].involved_object.uid == uid
        for name, (uid, _, _) in cases.items():
            op_e2e.wait_job_finished(batch_v1, namespace, name, wait_for)
            ann = wait_for(f"{name}'s accounting", lambda n=name: op_e2e.accounted(batch_v1, namespace, n), 60)
            pods = op_e2e.job_pod_uids(core_v1, namespace, uid)
            assert len(pods) == 1
            assert float(ann["carbontrack.io/co2e-grams"]) > 0
            assert float(ann["carbontrack.io/co2e-grams"]) == pytest.approx(
                pod_series_total(prometheus, CO2E, pods), rel=1e-5)
            assert owner_labels(prometheus, pods) == {("Job", uid)}
            assert len(record_entries(custom_objects, namespace, uid)) == 1
        # cycle-b never ran (suspended): whichever way its walk went (before the cycle closed
        # it belonged to cycle-a; after, it is its own root), nothing is recorded for it
        assert record_entries(custom_objects, namespace, b.metadata.uid) == []
        assert op_e2e.accounted(batch_v1, namespace, "cycle-b") is None


def test_integrity_policies_guard_the_new_kinds(
    training_operator: Any, devstack: Any, namespace: str, custom_objects: Any, api_client: Any,
) -> None:
    """The chart's workload-integrity policies (templates/workload-admission-policies.yaml) in
    the real API server: nobody but the operator's ServiceAccount writes the operator's
    carbontrack.io/ annotations on a JobSet or a PyTorchJob; user keys stay writable."""
    import subprocess

    import yaml
    from kubernetes import dynamic
    from kubernetes.client.exceptions import ApiException

    release = f"wl{uuid.uuid4().hex[:6]}"
    chart = Path(__file__).parents[2] / "charts" / "carbontrack"
    text = subprocess.run(
        [str(devstack.cluster.binaries.helm), "template", release, str(chart), "-n", "carbontrack",
         "--kube-version", "1.36.3", "--set-json", f'operator.watchNamespaces=["{namespace}"]',
         "--show-only", "templates/workload-admission-policies.yaml"],
        capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert sorted(d["kind"] for d in docs) == (
        ["ValidatingAdmissionPolicy"] * 2 + ["ValidatingAdmissionPolicyBinding"] * 2)
    dyn = dynamic.DynamicClient(api_client)
    resources = [(dyn.resources.get(api_version=d["apiVersion"], kind=d["kind"]), d) for d in docs]
    for resource, doc in resources:
        resource.create(body=doc)
    forged = {"carbontrack.io/co2e-grams": "0.001", "carbontrack.io/accounted-at": now_text()}

    def jobset(name: str, annotations: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
                "metadata": {"name": name, "annotations": annotations},
                "spec": {"suspend": True, "replicatedJobs": [{"name": "w", "replicas": 1, "template": {"spec": {
                    "template": sim_template("x", run_seconds=1.0)}}}]}}

    def refused(call: Any) -> str:
        with pytest.raises(ApiException) as info:
            call()
        assert info.value.status in (403, 422), info.value
        return str(json.loads(info.value.body)["message"])

    try:
        # policies reach admission through informers: wait until the first refusal
        deadline = time.monotonic() + 30
        while True:
            try:
                create(custom_objects, namespace, jobset("probe", forged))
                custom_objects.delete_namespaced_custom_object("jobset.x-k8s.io", "v1alpha2", namespace, "jobsets",
                                                               "probe")
            except ApiException as err:
                if err.status in (403, 422) and "written only by the CarbonTrack operator" in str(err.body):
                    break
                raise
            assert time.monotonic() < deadline, "the workload integrity policy never took effect"
            time.sleep(0.5)
        message = refused(lambda: create(custom_objects, namespace, jobset("forged", forged)))
        assert "carbontrack.io/accounted-at" in message and "carbontrack.io/co2e-grams" in message
        assert "JobSet" in message
        pytorch = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                   "metadata": {"name": "forged", "annotations": forged},
                   "spec": {"runPolicy": {"suspend": True}, "pytorchReplicaSpecs": {"Master": {
                       "replicas": 1, "template": sim_template("m", run_seconds=1.0, container="pytorch")}}}}
        assert "PyTorchJob" in refused(lambda: create(custom_objects, namespace, pytorch))
        # a clean JobSet is admitted, a user key may be written, an operator key may not
        create(custom_objects, namespace, jobset("clean", {"carbontrack.io/expected-duration": "1h"}))
        custom_objects.patch_namespaced_custom_object(
            "jobset.x-k8s.io", "v1alpha2", namespace, "jobsets", "clean",
            {"metadata": {"annotations": {"carbontrack.io/expected-duration": "2h"}}})
        refused(lambda: custom_objects.patch_namespaced_custom_object(
            "jobset.x-k8s.io", "v1alpha2", namespace, "jobsets", "clean",
            {"metadata": {"annotations": {"carbontrack.io/energy-kwh": "0"}}}))
    finally:
        for resource, doc in reversed(resources):
            try:
                resource.delete(name=doc["metadata"]["name"])
            except ApiException as err:
                if err.status != 404:
                    raise
