"""Job objects (API JSON shape) -> line items, compared by equality."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.reports.model import SOURCE_CLUSTER, LineItem
from carbontrack.reports.sources_cluster import Budget, IdentityKeys, Skipped, job_to_line

from .conftest import make_job

UTC = timezone.utc


def test_annotated_job_becomes_a_full_line() -> None:
    job = make_job("train-1", extra_annotations={"carbontrack.io/mlflow-run-id": "abc123"},
                   extra_labels={"carbontrack.io/run-kind": "preliminary"},
                   node_selector={"node.kubernetes.io/instance-type": "p4d.24xlarge",
                                  "cloud.google.com/gke-nodepool": "gpu-pool",
                                  "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"})
    got = job_to_line(job, IdentityKeys(cluster="prod-eu"))
    assert got == LineItem(
        source=SOURCE_CLUSTER, cluster="prod-eu", namespace="ml", job="train-1", job_uid="uid-ml-train-1",
        team="vision", model="resnet", mlflow_run_id="abc123", status="Complete", run_kind="preliminary",
        start=datetime(2026, 11, 10, 10, tzinfo=UTC), end=datetime(2026, 11, 10, 12, tzinfo=UTC),
        node_pool="gpu-pool", instance_type="p4d.24xlarge", node_count=1, gpu_model="NVIDIA-A100-SXM4-40GB",
        gpu_count=2, gpu_hours=4.0, cpu_cores_reserved=8.0,
        cpu_kwh=0.5, dram_kwh=0.1, gpu_kwh=2.0, other_kwh=0.0, it_energy_kwh=2.6,
        energy_method="measured", pue=1.2, pue_source="carbontrack_pue gauge, node(s) node-a",
        facility_energy_kwh=2.6 * 1.2,
        grid_zone="DE", intensity_g_per_kwh=400.0, intensity_basis="average/lifecycle/location-based",
        intensity_source="Ember 2025 via OWID", intensity_year=None, location_kgco2e=0.1,
        uncertainty=0.05, tool_version="0.1.0", accounted_at=datetime(2026, 11, 10, 12, tzinfo=UTC),
    )


def test_custom_team_and_model_label_keys() -> None:
    job = make_job("j", extra_labels={"org/team": "search", "org/model": "llm-7b"})
    got = job_to_line(job, IdentityKeys(model_label="org/model", team_label="org/team"))
    assert isinstance(got, LineItem)
    assert (got.team, got.model) == ("search", "llm-7b")


def test_failed_job_keeps_its_failure_time_as_end() -> None:
    job = make_job("f", status="Failed")
    job["metadata"]["annotations"]["carbontrack.io/report"] = json.dumps({"energyKwhByComponent": {"gpu": 2.6}})
    got = job_to_line(job, IdentityKeys())
    assert isinstance(got, LineItem)
    assert got.status == "Failed"
    assert got.end == datetime(2026, 11, 10, 12, tzinfo=UTC)
    assert got.pue == 1.0 and "assumed" in got.pue_source


def test_unaccounted_and_no_data_jobs_are_skipped_with_a_reason() -> None:
    job = make_job("pending")
    job["metadata"]["annotations"] = {}
    assert job_to_line(job, IdentityKeys()) == Skipped(
        "ml", "pending", "not accounted by the operator yet (no carbontrack.io/energy-kwh)"
    )
    nodata = make_job("nodata", extra_annotations={
        "carbontrack.io/energy-kwh": "no-data", "carbontrack.io/co2e-grams": "no-data",
        "carbontrack.io/report": json.dumps({"noData": "no carbontrack_container_energy_joules_total series"})})
    got = job_to_line(nodata, IdentityKeys())
    assert got == Skipped("ml", "nodata", "operator recorded no energy data: "
                          "no carbontrack_container_energy_joules_total series")


def test_breakdown_that_contradicts_the_total_is_rejected() -> None:
    job = make_job("bad", extra_annotations={"carbontrack.io/energy-kwh": "9.0"})
    with pytest.raises(ConfigError, match=r"Job ml/bad: .*components sum to 2.6 kWh"):
        job_to_line(job, IdentityKeys())


def test_rounded_total_annotation_defers_to_the_breakdown() -> None:
    job = make_job("r", extra_annotations={"carbontrack.io/energy-kwh": "2.6001"})
    got = job_to_line(job, IdentityKeys())
    assert isinstance(got, LineItem) and got.it_energy_kwh == pytest.approx(2.6, abs=1e-12)


def test_missing_breakdown_keeps_energy_visible_as_other() -> None:
    job = make_job("nb")
    del job["metadata"]["annotations"]["carbontrack.io/report"]
    got = job_to_line(job, IdentityKeys())
    assert isinstance(got, LineItem)
    assert (got.other_kwh, got.it_energy_kwh, got.gpu_kwh) == (2.6, 2.6, 0.0)


@pytest.mark.parametrize(
    ("ann", "message"),
    [
        ({"carbontrack.io/report": "{not json"}, "not valid JSON"),
        ({"carbontrack.io/co2e-grams": "lots"}, "'lots' is not a number"),
        ({"carbontrack.io/accounted-at": "yesterday"}, "not an ISO 8601 time"),
    ],
)
def test_malformed_annotations_give_one_line_errors(ann: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        job_to_line(make_job("m", extra_annotations=ann), IdentityKeys())
    assert "\n" not in str(err.value) and "ml/m" in str(err.value)


def test_budget_status_is_read_as_the_operator_writes_it() -> None:
    obj = {
        "metadata": {"namespace": "ml", "name": "monthly"},
        "spec": {"limit": "50kg", "period": {"type": "Calendar", "calendar": "Month"}},
        "status": {"usedGrams": 1234.5, "percent": 2.47, "periodName": "2026-11", "jobsCounted": 3,
                   "conditions": [{"type": "Exceeded", "status": "False"}]},
    }
    assert Budget.from_object(obj) == Budget("ml", "monthly", "50kg", 1234.5, 2.47, "2026-11", 3,
                                             ["Exceeded=False"])


def test_node_labels_fill_instance_type_and_pool_when_the_template_does_not_pin_them() -> None:
    job = make_job("n", node_selector={})
    labels = {"node-a": {"node.kubernetes.io/instance-type": "g4dn.12xlarge", "karpenter.sh/nodepool": "gpu",
                         "nvidia.com/gpu.product": "Tesla-T4"}}
    got = job_to_line(job, IdentityKeys(), labels)
    assert isinstance(got, LineItem)
    assert (got.instance_type, got.node_pool, got.gpu_model) == ("g4dn.12xlarge", "gpu", "Tesla-T4")


def test_several_node_pues_give_facility_energy_from_the_operators_intensity() -> None:
    job = make_job("multi", grams=150.0, intensity=50.0)  # facility = 150 g / 50 g/kWh = 3 kWh
    rep = json.loads(job["metadata"]["annotations"]["carbontrack.io/report"])
    rep["pue"] = {"node-a": 1.1, "node-b": 1.3}
    job["metadata"]["annotations"]["carbontrack.io/report"] = json.dumps(rep)
    got = job_to_line(job, IdentityKeys())
    assert isinstance(got, LineItem)
    assert got.facility_energy_kwh == pytest.approx(3.0)
    assert got.pue == pytest.approx(3.0 / 2.6) and "node-b" in got.pue_source


def test_contract_with_the_operators_accounting_annotations() -> None:
    """Annotations produced by carbontrack.operator.accounting parse into the same numbers."""
    accounting = pytest.importorskip("carbontrack.operator.accounting")
    from carbontrack.operator.jobs import JobFacts

    t0, t1 = datetime(2026, 11, 12, 8, tzinfo=UTC), datetime(2026, 11, 12, 10, tzinfo=UTC)
    facts = JobFacts(uid="u-1", namespace="ml", name="op", labels={}, annotations={}, created_at=t0,
                     started_at=t0, finished_at=t1, outcome="Failed", deleting=False, finalizers=(),
                     suspended=False, completions=1, parallelism=1, succeeded=0, active=0, gpus_per_pod=2)
    acc = accounting.Accounting(
        job=facts, window_start=t0, window_end=t1, evaluated_at=t1,
        energy_j={"cpu": 1.8e6, "gpu": 7.2e6}, co2e_g={"cpu": 120.0, "gpu": 480.0},
        methods={"cpu": ["estimated"], "gpu": ["measured"]}, nodes=["n1"], pue={"n1": 1.25},
        factors=[{"node": "n1", "zone": "DE", "source": "owid-ember-2025",
                  "basis": "average/lifecycle/location-based"}],
        intensity_g_per_kwh=600.0 / (2.5 * 1.25), gpu_hours=4.0, pods=1, uncertainty=0.125,
    )
    job = make_job("op", uid="u-1", status="Failed")
    job["metadata"]["annotations"] = acc.annotations(t1)
    got = job_to_line(job, IdentityKeys())
    assert isinstance(got, LineItem)
    assert (got.cpu_kwh, got.gpu_kwh, got.it_energy_kwh) == (pytest.approx(0.5), pytest.approx(2.0), pytest.approx(2.5))
    assert got.location_kgco2e == pytest.approx(0.6)
    assert (got.pue, got.facility_energy_kwh) == (1.25, pytest.approx(3.125))
    assert (got.grid_zone, got.intensity_source, got.intensity_basis) == (
        "DE", "owid-ember-2025", "average/lifecycle/location-based")
    assert (got.status, got.energy_method, got.gpu_hours, got.uncertainty) == (
        "Failed", "estimated+measured", 4.0, 0.125)
    assert (got.start, got.end) == (t0, t1)
    acc_none = accounting.Accounting(job=facts, window_start=t0, window_end=t1, evaluated_at=t1,
                                     no_data_reason="no series")
    job["metadata"]["annotations"] = acc_none.annotations(t1)
    assert job_to_line(job, IdentityKeys()) == Skipped("ml", "op", "operator recorded no energy data: no series")


def test_factor_year_comes_from_the_catalogue_only_on_an_exact_match() -> None:
    from carbontrack.intensity.catalogue import Catalogue
    from carbontrack.reports.provenance import CatalogueYears

    cat = Catalogue.load()
    de = cat.get("DE")
    years = CatalogueYears(cat)
    line = job_to_line(make_job("y"), IdentityKeys())
    assert isinstance(line, LineItem)
    exact = years.fill(line.with_(intensity_source=de.source))
    assert exact.intensity_year == de.year is not None
    assert years.fill(line.with_(intensity_source="electricitymaps live")).intensity_year is None
    assert years.fill(line.with_(grid_zone="NOT-A-ZONE", intensity_source=de.source)).intensity_year is None
    assert years.fill(line.with_(grid_zone="DE,FR", intensity_source=de.source)).intensity_year is None


def test_reserved_cpu_and_memory_scale_with_parallelism() -> None:
    job = make_job("p", cpu="500m")
    job["spec"]["parallelism"] = 4
    job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"] = "16Gi"
    got = job_to_line(job, IdentityKeys())
    assert isinstance(got, LineItem)
    assert (got.cpu_cores_reserved, got.gpu_count) == (2.0, 8)
    assert got.memory_gb_reserved == pytest.approx(4 * 16 * 2**30 / 1e9)


def test_job_recreated_with_another_jobs_annotations_is_not_reported_twice() -> None:
    # kubectl get job -o yaml | kubectl create -f - copies the accounting annotations;
    # until the operator accounts the new Job (new UID), its line must not appear.
    job = make_job("nightly")
    job["metadata"]["uid"] = "uid-of-the-new-job"
    got = job_to_line(job, IdentityKeys())
    assert isinstance(got, Skipped)
    assert "uid-ml-nightly" in got.reason and "not accounted yet" in got.reason
    job["metadata"]["annotations"]["carbontrack.io/accounted-uid"] = "uid-of-the-new-job"
    assert isinstance(job_to_line(job, IdentityKeys()), LineItem)


def test_amd_gpus_count_and_name_their_model() -> None:
    """amd.com/gpu is a GPU like nvidia.com/gpu (the vendor registry), and AMD's node
    labeller names the model."""
    lines = []
    for resource, label in (("amd.com/gpu", "amd.com/gpu.product-name"),
                            ("nvidia.com/gpu", "nvidia.com/gpu.product")):
        job = make_job("train", node_selector={label: "the-model"})
        job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = {resource: "4"}
        got = job_to_line(job, IdentityKeys())
        assert isinstance(got, LineItem)
        lines.append((got.gpu_count, got.gpu_hours, got.gpu_model))
    assert lines[0] == lines[1]
    assert lines[0][0] == 4 and lines[0][1] > 0 and lines[0][2] == "the-model"
