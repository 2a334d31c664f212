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
        node_pool="gpu-pool", instance_type="p4d.24xlarge", gpu_model="NVIDIA-A100-SXM4-40GB",
        gpu_count=2, gpu_hours=4.0, cpu_cores_reserved=8.0,
        cpu_kwh=0.5, dram_kwh=0.1, gpu_kwh=2.0, other_kwh=0.0, it_energy_kwh=2.6,
        energy_method="measured", pue=1.2, pue_source="setting --pue", facility_energy_kwh=2.6 * 1.2,
        grid_zone="DE", intensity_g_per_kwh=400.0, intensity_basis="average/lifecycle/location-based",
        intensity_source="Ember 2025 via OWID", intensity_year=2024, location_kgco2e=0.1,
        uncertainty=0.05, tool_version="0.1.0", accounted_at=datetime(2026, 11, 10, 12, tzinfo=UTC),
    )


def test_custom_team_and_model_label_keys() -> None:
    job = make_job("j", extra_labels={"org/team": "search", "org/model": "llm-7b"})
    got = job_to_line(job, IdentityKeys(model_label="org/model", team_label="org/team"))
    assert isinstance(got, LineItem)
    assert (got.team, got.model) == ("search", "llm-7b")


def test_failed_job_keeps_its_failure_time_as_end() -> None:
    job = make_job("f", status="Failed")
    job["metadata"]["annotations"]["carbontrack.io/report"] = json.dumps({"energy_kwh": {"gpu": 2.6}})
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
    nodata = make_job("nodata", extra_annotations={"carbontrack.io/energy-kwh": "no-data"})
    got = job_to_line(nodata, IdentityKeys())
    assert isinstance(got, Skipped) and "no energy data" in got.reason


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
