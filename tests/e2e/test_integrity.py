"""Accounting no namespace user can forge or escape, on the real API server (Kubernetes 1.36).

The chart's admission policies, user roles and operator RBAC are rendered by helm and applied;
the operator runs with a token of the chart's own ServiceAccount, and "alice" is a real
ServiceAccount bound to the built-in ``edit`` role in her namespace (not an admin). Every
write alice attempts goes through authentication, RBAC and admission like a user's would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import test_operator as op_e2e  # its in-process operator and helpers, as test_faults_operator does
import yaml
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from carbontrack.devcluster.workloads import sim_job

pytestmark = pytest.mark.e2e
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GROUP, VERSION = "carbontrack.io", "v1alpha1"
POLICY_TEMPLATES = ("templates/admission-policies.yaml", "templates/user-rbac.yaml",
                    "templates/operator-rbac.yaml")
OWNED_BY_OPERATOR = "are written only by the CarbonTrack operator"



@dataclass
class Guarded:
    """A namespace under the chart's policies: clients for admin, alice, and the operator."""

    namespace: str
    release: str
    admin: client.ApiClient
    alice: client.ApiClient
    operator_kubeconfig: Path
    alice_kubeconfig: Path
    docs: list[dict[str, Any]]

    def batch(self, who: client.ApiClient) -> client.BatchV1Api:
        return client.BatchV1Api(who)

    def custom(self, who: client.ApiClient) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(who)


def _kubeconfig_for(admin_kubeconfig: Path, token: str, out: Path) -> Path:
    config = yaml.safe_load(admin_kubeconfig.read_text())
    config["users"] = [{"name": "sa", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "sa"
    out.write_text(yaml.safe_dump(config))
    return out


def _token(core: client.CoreV1Api, namespace: str, name: str) -> str:
    return str(core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 7200}}).status.token)


def _render(helm: Path, release: str, namespace: str, watched: str) -> list[dict[str, Any]]:
    args = [str(helm), "template", release, str(REPO / "charts" / "carbontrack"), "-n", namespace,
            "--kube-version", "1.36.3", "--set-json", f'operator.watchNamespaces=["{watched}"]']
    for template in POLICY_TEMPLATES:
        args += ["--show-only", template]
    text = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def _apply(api: client.ApiClient, docs: list[dict[str, Any]]) -> None:
    dyn = dynamic.DynamicClient(api)
    for doc in docs:
        resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        resource.create(body=doc, namespace=doc["metadata"].get("namespace"))


def _delete(api: client.ApiClient, docs: list[dict[str, Any]]) -> None:
    dyn = dynamic.DynamicClient(api)
    for doc in docs:
        resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        try:
            resource.delete(name=doc["metadata"]["name"], namespace=doc["metadata"].get("namespace"))
        except ApiException as err:
            if err.status != 404:
                raise


def _forbidden(call: Callable[[], Any]) -> str:
    """The API server's message for a refused write (fails the test if it was allowed)."""
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status in (403, 422), info.value
    return str(json.loads(info.value.body)["message"])


@pytest.fixture(scope="module")
def guarded(devstack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    from carbontrack.devcluster.kube import api_client

    kubeconfig = Path(devstack.cluster.kubeconfig)
    tmp = tmp_path_factory.mktemp("integrity")
    suffix = uuid.uuid4().hex[:6]
    ns, system, release = f"team-{suffix}", f"ct-system-{suffix}", f"ct{suffix}"
    admin = api_client(kubeconfig)
    op_e2e.install_crd(admin)
    core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    for name in (ns, system):
        core.create_namespace({"metadata": {"name": name}})
    docs = _render(devstack.cluster.binaries.helm, release, system, ns)
    _apply(admin, docs)
    operator_sa = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
    core.create_namespaced_service_account(ns, {"metadata": {"name": "alice"}})
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": "alice-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "alice", "namespace": ns}]})
    alice_kc = _kubeconfig_for(kubeconfig, _token(core, ns, "alice"), tmp / "alice.kubeconfig")
    operator_kc = _kubeconfig_for(kubeconfig, _token(core, system, operator_sa), tmp / "operator.kubeconfig")
    alice = api_client(alice_kc)
    g = Guarded(ns, release, admin, alice, operator_kc, alice_kc, docs)
    # policies and RBAC reach the API server's admission and authorizer through informers
    probe = sim_job("probe", annotations={"carbontrack.io/accounted-at": "2026-01-01T00:00:00Z"})
    deadline = time.monotonic() + 30
    while True:
        try:
            g.batch(alice).create_namespaced_job(ns, probe)
            g.batch(admin).delete_namespaced_job("probe", ns, propagation_policy="Background")
        except ApiException as err:
            if err.status == 403 and OWNED_BY_OPERATOR in str(err.body):
                break
        assert time.monotonic() < deadline, "the admission policy never took effect"
        time.sleep(0.5)
    try:
        yield g
    finally:
        _delete(admin, docs)
        for name in (ns, system):
            core.delete_namespace(name)
        alice.close()
        admin.close()


class OperatorRun:
    """The module's operator, acting as the chart's ServiceAccount (chart RBAC only)."""

    def __init__(self, g: Guarded, prometheus_url: str) -> None:
        self._args = (g.operator_kubeconfig, prometheus_url, g.namespace)
        self.op = op_e2e.InProcessOperator(*self._args).start()

    def restart(self) -> None:
        self.op.stop()
        self.op = op_e2e.InProcessOperator(*self._args).start()

    def metric(self, name: str, labels: dict[str, str]) -> float:
        return float(self.op.metric(name, labels))


@pytest.fixture(scope="module")
def guarded_operator(guarded: Guarded, devstack: Any) -> Iterator[OperatorRun]:
    run = OperatorRun(guarded, devstack.prometheus.url)
    try:
        yield run
    finally:
        run.op.stop()


def _records(g: Guarded) -> dict[str, dict[str, Any]]:
    objs = g.custom(g.admin).list_namespaced_custom_object(GROUP, VERSION, g.namespace, "carbonrecords")
    return {uid: e for o in objs["items"] for uid, e in (o["spec"].get("entries") or {}).items()}


def _record_of(g: Guarded, uid: str, wait_for: Any, timeout: float = 90) -> dict[str, Any]:
    return dict(wait_for(f"the operator's record of {uid}", lambda: _records(g).get(uid), timeout))


def _budget(g: Guarded, name: str) -> dict[str, Any]:
    return dict(g.custom(g.admin).get_namespaced_custom_object(GROUP, VERSION, g.namespace, "carbonbudgets", name))


def _job(name: str, team: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("run_seconds", 3.0)
    return sim_job(name, labels={"team": team}, **kw)


def _recorded_jobs(g: Guarded, bodies: list[dict[str, Any]], wait_for: Any) -> dict[str, dict[str, Any]]:
    """Create the Jobs as alice and wait for the operator's record of each: UID -> entry,
    in creation order."""
    uids = [g.batch(g.alice).create_namespaced_job(g.namespace, b).metadata.uid for b in bodies]
    return {uid: _record_of(g, uid, wait_for) for uid in uids}


# ------------------------------------------------------------------------------ tests
def test_users_cannot_set_or_change_the_operators_annotations(guarded: Guarded) -> None:
    g, ns = guarded, guarded.namespace
    batch = g.batch(g.alice)
    forged = _job("forged", "x", annotations={"carbontrack.io/accounted-uid": "anything",
                                             "carbontrack.io/co2e-grams": "0"})
    message = _forbidden(lambda: batch.create_namespaced_job(ns, forged))
    # both keys named (in the order the API server iterates the map) and who may write them
    assert "carbontrack.io/accounted-uid" in message and "carbontrack.io/co2e-grams" in message
    assert OWNED_BY_OPERATOR in message
    assert "carbontrack.io/expected-duration" in message  # says what users may set

    # user inputs are fine, at create and at update
    job = batch.create_namespaced_job(ns, _job("honest", "x", run_seconds=60,
                                               annotations={"carbontrack.io/expected-duration": "1h"}))
    batch.patch_namespaced_job("honest", ns, {"metadata": {"annotations": {"carbontrack.io/mlflow-run-id": "r1"}}})
    for key, value in (("carbontrack.io/accounted-uid", job.metadata.uid),
                       ("carbontrack.io/accounted-at", "2026-01-01T00:00:00Z"),
                       ("carbontrack.io/budgets", ""), ("carbontrack.io/suspended-by", f"{ns}/x")):
        message = _forbidden(lambda k=key, v=value: batch.patch_namespaced_job(
            "honest", ns, {"metadata": {"annotations": {k: v}}}))
        assert f"annotation(s) {key} {OWNED_BY_OPERATOR}" in message
    # the admin is a namespace user too as far as the policy goes: only the operator is exempt
    _forbidden(lambda: g.batch(g.admin).patch_namespaced_job(
        "honest", ns, {"metadata": {"annotations": {"carbontrack.io/co2e-grams": "1"}}}))
    g.batch(g.admin).delete_namespaced_job("honest", ns, propagation_policy="Background")


def test_job_forged_before_the_policy_is_still_accounted_with_its_true_co2e(
    guarded: Guarded, guarded_operator: OperatorRun, devstack: Any, wait_for: Any,
) -> None:
    g, ns = guarded, guarded.namespace
    binding = next(d for d in g.docs if d["kind"] == "ValidatingAdmissionPolicyBinding")
    job = g.batch(g.alice).create_namespaced_job(ns, _job("sneaky", "sneak", run_seconds=4.0))
    uid = job.metadata.uid
    _delete(g.admin, [binding])  # as on a cluster where the policy is not (yet) installed
    try:
        def forge() -> bool:
            try:
                g.batch(g.alice).patch_namespaced_job("sneaky", ns, {"metadata": {"annotations": {
                    "carbontrack.io/accounted-uid": uid, "carbontrack.io/accounted-at": "2026-01-01T00:00:00Z",
                    "carbontrack.io/co2e-grams": "0", "carbontrack.io/energy-kwh": "0"}}})
                return True
            except ApiException as err:
                if err.status == 403:
                    return False  # the deleted binding is still in the API server's cache
                raise
        wait_for("the forged annotations to be accepted", forge, 30)
    finally:
        _apply(g.admin, [binding])
    record = _record_of(g, uid, wait_for)
    op_e2e.wait_job_finished(g.batch(g.admin), ns, "sneaky", wait_for)

    def true_annotations() -> dict[str, str] | None:
        ann = g.batch(g.admin).read_namespaced_job("sneaky", ns).metadata.annotations or {}
        want = record["annotations"]["carbontrack.io/co2e-grams"]
        return ann if ann.get("carbontrack.io/co2e-grams") == want else None

    ann = wait_for("the operator's true values on the Job", true_annotations, 30)
    prom = sum(float(r["value"][1]) for r in devstack.prometheus.query(
        f'max_over_time(carbontrack_container_co2e_grams_total{{owner_uid="{uid}"}}[10m])'))
    assert record["co2eGrams"] > 0 and record["co2eGrams"] == pytest.approx(prom, rel=1e-5)
    assert float(ann["carbontrack.io/co2e-grams"]) == pytest.approx(record["co2eGrams"], rel=1e-5)
    assert ann["carbontrack.io/accounted-at"] != "2026-01-01T00:00:00Z"

    # changed again after the accounting (still no policy): the operator restores its copy
    _delete(g.admin, [binding])
    try:
        def tamper() -> bool:
            try:
                g.batch(g.alice).patch_namespaced_job("sneaky", ns, {"metadata": {"annotations": {
                    "carbontrack.io/co2e-grams": "0"}}})
                return True
            except ApiException as err:
                if err.status == 403:
                    return False
                raise
        wait_for("the tampering to be accepted", tamper, 30)
    finally:
        _apply(g.admin, [binding])
    wait_for("the record's value restored", true_annotations, 30)
    assert guarded_operator.metric("carbontrack_operator_accounting_failures_total",
                                   {"reason": "forged_annotations"}) >= 1


def test_budget_created_mid_period_counts_earlier_jobs_and_holds_50_new_ones_at_admission(
    guarded: Guarded, guarded_operator: OperatorRun, wait_for: Any,
) -> None:
    g, ns = guarded, guarded.namespace
    batch = g.batch(g.alice)
    early = _recorded_jobs(g, [_job(f"early-{i}", "hold", run_seconds=2.0) for i in range(2)], wait_for)
    uids, records = list(early), list(early.values())
    # created after the Jobs were accounted: its ledger has them (the period's earlier Jobs)
    g.custom(g.admin).create_namespaced_custom_object(GROUP, VERSION, ns, "carbonbudgets", op_e2e.budget_body(
        "hold", "0.01mg", action="Suspend", selector={"matchLabels": {"team": "hold"}}))
    status = wait_for("the budget to count the earlier Jobs", lambda: (
        st := _budget(g, "hold").get("status") or {}).get("jobsCounted") == 2 and st, 30)
    assert set(status["ledger"]) == set(uids)
    assert status["usedGrams"] == pytest.approx(sum(r["co2eGrams"] for r in records), rel=1e-9)
    assert status["exceeded"] is True

    # 50 new matching Jobs: every one created suspended by the API server itself, no pod ever
    held = [batch.create_namespaced_job(ns, _job(f"held-{i:02d}", "hold", run_seconds=1.0)) for i in range(50)]
    assert all(j.spec.suspend is True for j in held)
    assert {j.metadata.annotations["carbontrack.io/suspended-by"] for j in held} == {f"{ns}/hold"}
    unmatched = batch.create_namespaced_job(ns, _job("free", "other", run_seconds=1.0))
    assert not unmatched.spec.suspend
    wait_for("the unmatched Job's pod (the Job controller is working)", lambda: client.CoreV1Api(g.admin)
             .list_namespaced_pod(ns, label_selector="batch.kubernetes.io/job-name=free").items, 30)
    time.sleep(3)  # what the Job controller would have done by now, it has done for "free"
    held_uids = {j.metadata.uid for j in held}
    pods = client.CoreV1Api(g.admin).list_namespaced_pod(ns).items
    assert [p.metadata.name for p in pods
            if p.metadata.labels.get("batch.kubernetes.io/controller-uid") in held_uids] == []

    event = wait_for("the hold explained on the Job", lambda: op_e2e.events(
        client.CoreV1Api(g.admin), ns, reason="SuspendedByCarbonBudget", name="held-00"), 20)[0]
    assert event.message.startswith(f"held at admission: CarbonBudget {ns}/hold is exceeded")

    # the user cannot lift the hold, alone or with forged "already accounted" annotations
    message = _forbidden(lambda: batch.patch_namespaced_job("held-00", ns, {"spec": {"suspend": False}}))
    assert f"held by CarbonBudget {ns}/hold" in message
    _forbidden(lambda: batch.patch_namespaced_job("held-01", ns, {
        "metadata": {"annotations": {"carbontrack.io/accounted-uid": held[1].metadata.uid,
                                     "carbontrack.io/accounted-at": "2026-01-01T00:00:00Z"}},
        "spec": {"suspend": False}}))
    # relabelling out of the budget does not release it either
    batch.patch_namespaced_job("held-02", ns, {"metadata": {"labels": {"team": "escaped"}}})
    time.sleep(2)
    assert g.batch(g.admin).read_namespaced_job("held-02", ns).spec.suspend is True
    for j in held:
        g.batch(g.admin).delete_namespaced_job(j.metadata.name, ns, propagation_policy="Background")


def test_relabelling_a_running_job_does_not_take_it_out_of_its_budget(
    guarded: Guarded, guarded_operator: OperatorRun, wait_for: Any,
) -> None:
    g, ns = guarded, guarded.namespace
    g.custom(g.admin).create_namespaced_custom_object(GROUP, VERSION, ns, "carbonbudgets", op_e2e.budget_body(
        "nlp", "1kg", selector={"matchLabels": {"team": "nlp"}}))
    wait_for("the budget's first status", lambda: (_budget(g, "nlp").get("status") or {}).get("periodName"), 20)
    batch = g.batch(g.alice)
    uid = batch.create_namespaced_job(ns, _job("escape", "nlp", run_seconds=6.0)).metadata.uid
    wait_for("the operator to note the Job's budget", lambda: (batch.read_namespaced_job(
        "escape", ns).metadata.annotations or {}).get("carbontrack.io/budgets") == f"{ns}/nlp", 20)
    batch.patch_namespaced_job("escape", ns, {"metadata": {"labels": {"team": "somebody-else"}}})
    record = _record_of(g, uid, wait_for)
    status = wait_for("the ledger entry", lambda: (
        st := _budget(g, "nlp").get("status") or {}).get("ledger", {}).get(uid) and st, 20)
    assert status["ledger"][uid]["co2eGrams"] == pytest.approx(record["co2eGrams"], rel=1e-9)
    assert record["labels"]["team"] == "somebody-else" and record["budgets"] == [f"{ns}/nlp"]


def test_budgets_are_readable_by_edit_but_writable_only_with_the_budget_manager_role(
    guarded: Guarded, wait_for: Any,
) -> None:
    g, ns = guarded, guarded.namespace
    alice = g.custom(g.alice)
    body = op_e2e.budget_body("mine", "100kg", selector={"matchLabels": {"team": "mine"}})
    assert _forbidden(lambda: alice.create_namespaced_custom_object(GROUP, VERSION, ns, "carbonbudgets", body))
    alice.list_namespaced_custom_object(GROUP, VERSION, ns, "carbonbudgets")  # view: allowed
    g.custom(g.admin).create_namespaced_custom_object(GROUP, VERSION, ns, "carbonbudgets", op_e2e.budget_body(
        "team-limit", "1kg", selector={"matchLabels": {"team": "limit"}}))
    _forbidden(lambda: alice.patch_namespaced_custom_object(
        GROUP, VERSION, ns, "carbonbudgets", "team-limit", {"spec": {"limit": "100t"}}))
    _forbidden(lambda: alice.delete_namespaced_custom_object(GROUP, VERSION, ns, "carbonbudgets", "team-limit"))
    alice.list_namespaced_custom_object(GROUP, VERSION, ns, "carbonrecords")
    _forbidden(lambda: alice.create_namespaced_custom_object(GROUP, VERSION, ns, "carbonrecords", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CarbonRecord", "metadata": {"name": "fake"},
        "spec": {"day": "2026-01-01", "shard": 0, "link": 0, "entries": {}}}))
    manager = next(d for d in g.docs
                   if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-budget-manager"))
    client.RbacAuthorizationV1Api(g.admin).create_namespaced_role_binding(ns, {
        "metadata": {"name": "alice-budgets"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": manager["metadata"]["name"]},
        "subjects": [{"kind": "ServiceAccount", "name": "alice", "namespace": ns}]})

    def create() -> bool:
        try:
            alice.create_namespaced_custom_object(GROUP, VERSION, ns, "carbonbudgets", body)
            return True
        except ApiException as err:
            if err.status == 403:
                return False
            raise
    wait_for("the budget-manager role to apply", create, 30)
    # status stays the operator's
    _forbidden(lambda: alice.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, "carbonbudgets", "mine", {"status": {"usedGrams": 0}}))


def test_month_report_lists_ttl_deleted_jobs_and_equals_the_ledger_across_an_operator_restart(
    guarded: Guarded, guarded_operator: OperatorRun, devstack: Any, wait_for: Any, tmp_path: Path,
) -> None:
    g, ns = guarded, guarded.namespace
    g.custom(g.admin).create_namespaced_custom_object(GROUP, VERSION, ns, "carbonbudgets", op_e2e.budget_body(
        "ttl", "1kg", selector={"matchLabels": {"team": "ttl"}}))
    bodies = [_job(f"ttl-{i}", "ttl", run_seconds=2.0 + i) for i in range(3)]
    for body in bodies:
        body["spec"]["ttlSecondsAfterFinished"] = 0
    records = _recorded_jobs(g, bodies, wait_for)
    uids = list(records)

    def all_gone() -> bool:
        names = {j.metadata.name for j in g.batch(g.admin).list_namespaced_job(ns).items}
        return not names & {b["metadata"]["name"] for b in bodies}
    wait_for("the TTL controller to delete the Jobs", all_gone, 60)
    status = wait_for("the ledger", lambda: (
        st := _budget(g, "ttl").get("status") or {}).get("jobsCounted") == 3 and st, 20)
    period = datetime.now(timezone.utc).strftime("%Y-%m")

    def report(out: Path) -> dict[str, Any]:
        res = subprocess.run([sys.executable, "-m", "carbontrack", "report", "--cluster", "--kubeconfig",
                              str(devstack.cluster.kubeconfig), "-n", ns, "-l", "team=ttl", "--period", period,
                              "--format", "json,csv", "-o", str(out)], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        return dict(json.loads((out / "report.json").read_text()))

    first = report(tmp_path / "before")
    lines = {line["job_uid"]: line for line in first["line_items"]}
    assert set(lines) == set(uids)
    for uid, line in lines.items():
        rec = records[uid]
        assert line["job"] == rec["job"]["name"] and line["namespace"] == ns and line["team"] == "ttl"
        assert line["location_kgco2e"] * 1000 == pytest.approx(rec["co2eGrams"], rel=1e-9)
        assert line["it_energy_kwh"] == pytest.approx(rec["energyKwh"], rel=1e-5)
        assert line["cpu_kwh"] > 0 and line["grid_zone"] and line["intensity_g_per_kwh"] > 0
        assert line["status"] == "Complete" and line["start"] and line["end"] and line["accounted_at"]
        assert line["energy_method"] == "measured" and line["pue"] >= 1.0 and line["tool_version"]
    total_g = sum(line["location_kgco2e"] for line in lines.values()) * 1000
    assert total_g == pytest.approx(status["usedGrams"], rel=1e-9)

    # an operator restart neither loses nor repeats anything
    guarded_operator.restart()
    time.sleep(3)
    assert _budget(g, "ttl")["status"]["usedGrams"] == status["usedGrams"]
    assert {u: r for u, r in _records(g).items() if u in records} == records
    second = report(tmp_path / "after")
    assert second["line_items"] == first["line_items"]


def test_a_corrupted_record_entry_is_reported_and_never_counted(
    guarded: Guarded, guarded_operator: OperatorRun, devstack: Any, wait_for: Any, tmp_path: Path,
) -> None:
    g, ns = guarded, guarded.namespace
    records = _recorded_jobs(g, [_job(f"audit-{i}", "audit", run_seconds=2.0) for i in range(2)], wait_for)
    uids = list(records)
    bad = uids[0]
    objs = g.custom(g.admin).list_namespaced_custom_object(GROUP, VERSION, ns, "carbonrecords")["items"]
    holder = next(o for o in objs if bad in (o["spec"].get("entries") or {}))
    # an admin (nobody else can) corrupts one entry by hand
    g.custom(g.admin).patch_namespaced_custom_object(GROUP, VERSION, ns, "carbonrecords", holder["metadata"]["name"], {
        "spec": {"entries": {bad: {"co2eGrams": "a lot"}}}})
    g.custom(g.admin).create_namespaced_custom_object(GROUP, VERSION, ns, "carbonbudgets", op_e2e.budget_body(
        "audit", "1kg", selector={"matchLabels": {"team": "audit"}}))
    status = wait_for("the budget's backfill", lambda: (
        st := _budget(g, "audit").get("status") or {}).get("observedGeneration") and st, 30)
    assert set(status.get("ledger") or {}) == {uids[1]}
    assert status["usedGrams"] == pytest.approx(records[uids[1]]["co2eGrams"], rel=1e-9)
    event = wait_for("the MalformedRecordEntry Event", lambda: op_e2e.events(
        client.CoreV1Api(g.admin), ns, reason="MalformedRecordEntry"), 20)[0]
    assert bad in event.message and "co2eGrams 'a lot'" in event.message
    assert event.involved_object.kind == "CarbonRecord" and event.involved_object.name == holder["metadata"]["name"]
    assert guarded_operator.metric("carbontrack_operator_accounting_failures_total",
                                   {"reason": "malformed_record"}) >= 1
    # the report leaves it out, says so with the same message, and keeps the sound entry
    res = subprocess.run([sys.executable, "-m", "carbontrack", "report", "--cluster", "--kubeconfig",
                          str(devstack.cluster.kubeconfig), "-n", ns, "-l", "team=audit", "--format", "json",
                          "-o", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "report.json").read_text())
    assert [x["job_uid"] for x in doc["line_items"]] == [uids[1]]
    skipped = [x for x in doc["skipped_jobs"] if bad in x["reason"]]
    assert len(skipped) == 1 and "co2eGrams 'a lot'" in skipped[0]["reason"]
    assert bad in res.stderr and "left out" in res.stderr


def test_a_corrupted_budget_status_is_corrected_and_a_wrongly_held_job_released(
    guarded: Guarded, guarded_operator: OperatorRun, wait_for: Any,
) -> None:
    """The budget status is the mutating policy's parameter: an admin who corrupts it (says
    exceeded, adds a garbage ledger entry) holds a Job for at most one budget refresh."""
    g, ns = guarded, guarded.namespace
    g.custom(g.admin).create_namespaced_custom_object(GROUP, VERSION, ns, "carbonbudgets", op_e2e.budget_body(
        "spoiled", "1kg", action="Suspend", selector={"matchLabels": {"team": "spoiled"}}))
    wait_for("the budget's first status", lambda: (_budget(g, "spoiled").get("status") or {}).get("periodName"), 20)
    g.custom(g.admin).patch_namespaced_custom_object_status(GROUP, VERSION, ns, "carbonbudgets", "spoiled", {
        "status": {"exceeded": True, "ledger": {"not-a-uid": {"co2eGrams": "lots"}}}})
    made = wait_for("a Job held on the corrupted status", lambda: (
        j := g.batch(g.alice).create_namespaced_job(ns, _job(f"victim-{uuid.uuid4().hex[:5]}", "spoiled"))
    ).spec.suspend and j, 20)
    name = made.metadata.name
    wait_for("the operator to recompute the status", lambda: (
        _budget(g, "spoiled").get("status") or {}).get("exceeded") is False, 20)
    wait_for("the held Job released", lambda: not g.batch(g.admin).read_namespaced_job(name, ns).spec.suspend, 30)
    event = wait_for("the MalformedLedgerEntry Event", lambda: op_e2e.events(
        client.CoreV1Api(g.admin), ns, reason="MalformedLedgerEntry", name="spoiled"), 20)[0]
    assert "not-a-uid" in event.message
    assert _budget(g, "spoiled")["status"]["usedGrams"] == 0
