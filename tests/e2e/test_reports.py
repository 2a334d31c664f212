"""Reports end to end on the real local control plane: Jobs run on simulated nodes, the
operator accounts them from the exporters' counters in Prometheus, then `carbontrack report`
(the real CLI, as a subprocess) reads the annotated Jobs and CarbonBudget from the
kube-apiserver (and Prometheus) into CSV, JSON and HTML whose totals equal the annotations;
`carbontrack report sync-trackers` logs them to a real MLflow server."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from carbontrack.devcluster.workloads import sim_job

pytestmark = pytest.mark.e2e
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


# The operator test module's in-process operator and helpers, and the unit tests' real
# MLflow server: shared, not copied.
op_e2e = _load("carbontrack_e2e_operator_helpers", HERE / "test_operator.py")
servers = _load("carbontrack_report_servers", REPO / "tests" / "unit" / "reports" / "servers.py")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carbontrack", "report", *args],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, **(env or {})})


def _chromium_console(page: Path) -> tuple[str, list[str]]:
    exe = next((p for p in (shutil.which(n) for n in ("chromium-headless-shell", "chromium")) if p), None)
    if exe is None:
        pytest.skip("needs headless Chromium: apt-get install chromium-headless-shell")
    proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    return proc.stdout, [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]


def test_accounted_jobs_appear_in_csv_json_html_with_correct_totals(
    crd: None, run_operator: Any, namespace: str, batch_v1: Any, custom_objects: Any,
    kubeconfig: Path, prometheus: Any, wait_for: Any, tmp_path: Path,
) -> None:
    run_operator()
    op_e2e.create_budget(custom_objects, namespace, op_e2e.budget_body(
        "nlp", "5kg", selector={"matchLabels": {"team": "nlp"}}))
    started = datetime.now(timezone.utc) - timedelta(minutes=1)
    jobs = {
        "llm-pretrain": sim_job("llm-pretrain", run_seconds=4, cpu_cores=1.0,
                                labels={"team": "nlp", "carbontrack.io/model": "llm"}),
        "llm-try": sim_job("llm-try", run_seconds=3, cpu_cores=0.5, fail=True,
                           labels={"team": "nlp", "carbontrack.io/model": "llm",
                                   "carbontrack.io/run-kind": "preliminary"}),
        "vit-train": sim_job("vit-train", run_seconds=4, cpu_cores=1.0, gpus=1, gpu_watts=200,
                             labels={"team": "vision", "carbontrack.io/model": "vit"},
                             annotations={"carbontrack.io/functional-unit": "epoch",
                                          "carbontrack.io/functional-units": "4"}),
    }
    for body in jobs.values():
        batch_v1.create_namespaced_job(namespace, body)
    ann = {name: wait_for(f"{name} accounted", lambda n=name: op_e2e.accounted(batch_v1, namespace, n), 120)
           for name in jobs}
    for a in ann.values():
        assert a["carbontrack.io/energy-kwh"] != "no-data"

    out = tmp_path / "report"
    until = (datetime.now(timezone.utc) + timedelta(minutes=1)).isoformat()
    res = _cli("--cluster", "--kubeconfig", str(kubeconfig), "-n", namespace, "--cluster-name", "e2e",
               "--prometheus-url", prometheus.url, "--since", started.isoformat(), "--until", until,
               "--format", "csv,json,html,aiact,statement", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "report: cluster: 3 Jobs listed" in res.stderr  # progress on stderr

    doc = json.loads((out / "report.json").read_text())
    by_job = {x["job"]: x for x in doc["line_items"]}
    # the cluster's final annotations win over the Prometheus window lines: one line per Job
    assert sorted(by_job) == sorted(jobs)
    assert all(x["source"] == "cluster-annotation" for x in by_job.values())
    for name, a in ann.items():
        assert by_job[name]["it_energy_kwh"] == pytest.approx(float(a["carbontrack.io/energy-kwh"]), rel=1e-5)
        assert by_job[name]["location_kgco2e"] * 1000 == pytest.approx(float(a["carbontrack.io/co2e-grams"]),
                                                                       rel=1e-5)
    total_g = sum(float(a["carbontrack.io/co2e-grams"]) for a in ann.values())
    total_kwh = sum(float(a["carbontrack.io/energy-kwh"]) for a in ann.values())
    assert doc["totals"]["all"]["location_kgco2e"] * 1000 == pytest.approx(total_g, rel=1e-5)
    assert doc["totals"]["all"]["it_energy_kwh"] == pytest.approx(total_kwh, rel=1e-5)
    nlp_g = sum(float(ann[n]["carbontrack.io/co2e-grams"]) for n in ("llm-pretrain", "llm-try"))
    assert doc["totals"]["by_team"]["nlp"]["location_kgco2e"] * 1000 == pytest.approx(nlp_g, rel=1e-5)
    assert by_job["vit-train"]["gpu_kwh"] > 0 and by_job["vit-train"]["functional_unit"] == "epoch"
    for x in by_job.values():
        # instance type from the simulated nodes' labels -> CCF embodied share -> SCI
        assert x["instance_type"] in ("p4d.24xlarge", "c5.large", "m5.4xlarge"), x
        assert x["embodied_kgco2e"] > 0, x["embodied_assumptions"]
        assert x["sci_g_per_unit"] == pytest.approx(
            (x["location_kgco2e"] + x["embodied_kgco2e"]) * 1000 / x["functional_units"])
        assert x["ghg_scope"].startswith("Scope 3 Category 1") and x["market_kgco2e"] == x["location_kgco2e"]
        assert x["intensity_source"] and x["intensity_basis"] and x["pue"] >= 1.0
        assert x["intensity_year"] is not None  # catalogue entry matched exactly
    assert by_job["vit-train"]["functional_units"] == 4
    assert by_job["llm-try"]["status"] == "Failed"
    llm = next(e for e in doc["eu_ai_act"] if e["model"] == "llm")
    assert (llm["jobs"], llm["failed"], llm["preliminary"]) == (2, 1, 1)
    budget = next(b for b in doc["budgets"] if b["name"] == "nlp")
    assert budget["used_grams"] == pytest.approx(nlp_g, rel=1e-4, abs=1e-6)  # status rounds to 1 µg

    rows = list(csv.DictReader((out / "report-lines.csv").open()))
    assert sum(float(r["location_kgco2e"]) for r in rows) * 1000 == pytest.approx(total_g, rel=1e-5)
    totals = {(r["group"], r["key"]): r for r in csv.DictReader((out / "report-totals.csv").open())}
    assert float(totals[("all", "all")]["it_energy_kwh"]) == pytest.approx(total_kwh, rel=1e-5)

    keep = os.environ.get("CARBONTRACK_E2E_KEEP_REPORT")  # copy the report out for inspection
    if keep:
        shutil.copytree(out, Path(keep) / "report", dirs_exist_ok=True)
    dom, console = _chromium_console(out / "report.html")
    assert console == []
    for name in jobs:
        assert f"{namespace}/{name}" in dom
    ai_act = (out / "ai-act-training-energy.txt").read_text()
    assert "Model: llm" in ai_act and "Energy consumption during training:" in ai_act

    # scope: the team filter keeps only that team's Jobs
    res = _cli("--cluster", "--kubeconfig", str(kubeconfig), "-n", namespace, "--team", "vision",
               "--format", "json", "-o", str(tmp_path / "vision"), "-q")
    assert res.returncode == 0, res.stderr
    vdoc = json.loads((tmp_path / "vision" / "report.json").read_text())
    assert [x["job"] for x in vdoc["line_items"]] == ["vit-train"]


def test_sync_trackers_logs_accounted_jobs_to_mlflow_and_wandb(
    crd: None, run_operator: Any, namespace: str, batch_v1: Any, kubeconfig: Path, wait_for: Any,
    tmp_path: Path,
) -> None:
    mlflow = pytest.importorskip("mlflow")
    run_operator()
    with servers.mlflow_server(tmp_path) as uri:
        client = mlflow.MlflowClient(tracking_uri=uri)
        run_id = client.create_run(client.create_experiment("e2e")).info.run_id
        body = sim_job("tracked", run_seconds=3, cpu_cores=1.0, labels={"team": "nlp"},
                       annotations={"carbontrack.io/wandb-run-id": "e2ewandb1"})
        body["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "MLFLOW_RUN_ID", "value": run_id}]
        batch_v1.create_namespaced_job(namespace, body)
        ann = wait_for("tracked accounted", lambda: op_e2e.accounted(batch_v1, namespace, "tracked"), 120)
        wandb_env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
                     "WANDB_CONSOLE": "off"}
        res = _cli("sync-trackers", "--kubeconfig", str(kubeconfig), "-n", namespace, "--tracker", "mlflow",
                   "--tracker", "wandb", "--wandb-project", "e2e", "--mlflow-tracking-uri", uri, env=wandb_env)
        assert res.returncode == 0, res.stderr
        assert "sync: 2 run(s) logged" in res.stderr
        pytest.importorskip("wandb")
        summary = servers.offline_summary(tmp_path, "e2ewandb1")
        assert summary["carbontrack/co2e_g"] == pytest.approx(float(ann["carbontrack.io/co2e-grams"]), rel=1e-6)
        assert "carbontrack.io/wandb-logged-at" in op_e2e.annotations(batch_v1, namespace, "tracked")
        data = client.get_run(run_id).data
        assert data.metrics["carbontrack.co2e_g"] == pytest.approx(float(ann["carbontrack.io/co2e-grams"]), rel=1e-6)
        assert data.metrics["carbontrack.energy_kwh"] == pytest.approx(float(ann["carbontrack.io/energy-kwh"]),
                                                                       rel=1e-6)
        assert data.tags["carbontrack.job"] == f"{namespace}/tracked"
        marked = op_e2e.annotations(batch_v1, namespace, "tracked")
        assert "carbontrack.io/mlflow-logged-at" in marked
        again = _cli("sync-trackers", "--kubeconfig", str(kubeconfig), "-n", namespace, "--tracker", "mlflow",
                     "--tracker", "wandb", "--mlflow-tracking-uri", uri, env=wandb_env)
        assert "sync: 0 run(s) logged" in again.stderr  # logged once


@pytest.fixture(scope="session")
def crd(devstack: Any) -> None:
    from carbontrack.devcluster.kube import api_client

    with api_client(Path(devstack.cluster.kubeconfig)) as api:
        op_e2e.install_crd(api)


@pytest.fixture
def run_operator(crd: None, kubeconfig: Path, prometheus: Any, namespace: str) -> Any:
    started: list[Any] = []

    def start(**kw: Any) -> Any:
        op = op_e2e.InProcessOperator(kubeconfig, prometheus.url, namespace, **kw)
        started.append(op.start())
        return op

    yield start
    for op in started:
        if op._thread.is_alive():
            op.stop()


def test_rbac_refusals_are_one_line_errors_or_visible_gaps(
    crd: None, namespace: str, core_v1: Any, api_client: Any, kubeconfig: Path, tmp_path: Path,
    wait_for: Any,
) -> None:
    import yaml
    from kubernetes import client

    core_v1.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    token = core_v1.create_namespaced_service_account_token(
        "reader", namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    admin = yaml.safe_load(kubeconfig.read_text())
    admin["users"] = [{"name": "reader", "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = "reader"
    restricted = tmp_path / "reader.kubeconfig"
    restricted.write_text(yaml.safe_dump(admin))

    # no permissions at all: one actionable line, exit 2
    res = _cli("--cluster", "--kubeconfig", str(restricted), "-n", namespace, "-o", str(tmp_path / "a"))
    assert res.returncode == 2
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("carbontrack report: error: Kubernetes API refused to list CarbonRecords (HTTP 403)")
    assert "get/list on carbonrecords.carbontrack.io" in last

    # Records and Jobs readable, budgets and nodes not: the report is written and says what it lacks
    rbac = client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "jobs-reader"},
        "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list"]},
                  {"apiGroups": ["carbontrack.io"], "resources": ["carbonrecords"], "verbs": ["get", "list"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "jobs-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "jobs-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})
    out = tmp_path / "b"
    # RBAC changes reach the authorizer through an informer: retry until the Role applies
    res = wait_for("the Role to apply", lambda: (r := _cli(
        "--cluster", "--kubeconfig", str(restricted), "-n", namespace, "--format", "json", "-o", str(out)
    )).returncode == 0 and r, 30)
    assert "CarbonBudgets not readable (HTTP 403)" in res.stderr
    assert "no accounted Jobs or runs matched" in res.stderr  # empty namespace: said, not silent
    assert json.loads((out / "report.json").read_text())["line_items"] == []
