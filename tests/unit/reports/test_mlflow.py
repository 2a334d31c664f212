"""MLflow logging against a real tracking server started by the test (SQLite backend)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.reports.mlflow_log import MlflowLogger, job_run_id, log_accounted_job
from carbontrack.tracker.api import track

from .conftest import make_job
from .servers import mlflow_server
from .test_files_and_cli import run_result

mlflow = pytest.importorskip("mlflow", reason="needs the [mlflow] extra: pip install 'carbontrack[mlflow]'")


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture
def client(tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def _new_run(client: Any, name: str) -> str:
    exp = client.get_experiment_by_name(name) or None
    exp_id = exp.experiment_id if exp else client.create_experiment(name)
    return str(client.create_run(exp_id).info.run_id)


def test_tracker_result_lands_on_the_active_run(client: Any, tmp_path: Path) -> None:
    with mlflow.start_run() as run:
        MlflowLogger().on_result(run_result("r1"))
    got = client.get_run(run.info.run_id).data
    assert got.metrics["carbontrack.energy_kwh"] == pytest.approx(11.16e6 / 3.6e6)
    assert got.metrics["carbontrack.gpu_energy_kwh"] == pytest.approx(2.0)
    assert got.metrics["carbontrack.co2e_g"] == pytest.approx(1500.0)
    assert got.metrics["carbontrack.facility_energy_kwh"] == pytest.approx(3.1 * 1.5)
    assert got.tags["carbontrack.zone"] == "DE"
    assert got.tags["carbontrack.intensity_basis"] == "average/lifecycle/location-based"
    assert got.tags["carbontrack.intensity_year"] == "2024"


def test_real_track_hook_logs_to_the_run(client: Any, tmp_path: Path) -> None:
    with mlflow.start_run() as run, track(zone="DE", pue=1.2, scope="machine", output_dir=tmp_path,
                                          interval_s=0.1, loggers=[MlflowLogger()]) as t:
        sum(range(200_000))
    assert t.result is not None
    got = client.get_run(run.info.run_id).data
    assert got.metrics["carbontrack.co2e_g"] == pytest.approx(t.result.co2e_grams)
    assert got.metrics["carbontrack.energy_kwh"] == pytest.approx(t.result.energy_kwh)
    assert got.metrics["carbontrack.energy_kwh"] > 0
    assert got.tags["carbontrack.run_id"] == t.result.run_id


def test_run_id_from_env_without_an_active_run(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = _new_run(client, "env")
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    MlflowLogger().on_result(run_result("r2", grams=42.0))
    assert client.get_run(run_id).data.metrics["carbontrack.co2e_g"] == pytest.approx(42.0)


def test_no_run_is_a_clear_error(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    with pytest.raises(ConfigError, match="no MLflow run to log to"):
        MlflowLogger().on_result(run_result("r3"))
    with pytest.raises(ConfigError, match="MLflow refused to log to run 0123"):
        MlflowLogger(run_id="0123456789abcdef0123456789abcdef").on_result(run_result("r3"))


def test_accounted_job_is_logged_to_the_run_its_pod_names(client: Any, tracking_uri: str) -> None:
    run_id = _new_run(client, "jobs")
    job = make_job("train-7", components={"cpu": 0.5, "gpu": 2.5}, grams=321.0)
    job["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "MLFLOW_RUN_ID", "value": run_id}, {"name": "MLFLOW_TRACKING_URI", "value": tracking_uri},
    ]
    assert job_run_id(job) == run_id
    assert log_accounted_job(job) == run_id  # tracking URI taken from the pod's env
    data = client.get_run(run_id).data
    assert data.metrics["carbontrack.energy_kwh"] == pytest.approx(3.0)
    assert data.metrics["carbontrack.facility_energy_kwh"] == pytest.approx(3.6)
    assert data.metrics["carbontrack.co2e_g"] == pytest.approx(321.0)
    assert data.metrics["carbontrack.gpu_hours"] == pytest.approx(4.0)
    assert data.tags["carbontrack.job"] == "ml/train-7"
    assert data.tags["carbontrack.job_uid"] == "uid-ml-train-7"

    # annotation wins over the env; a Job naming no run is left alone
    other = _new_run(client, "jobs")
    job2 = make_job("t8", extra_annotations={"carbontrack.io/mlflow-run-id": other})
    assert log_accounted_job(job2, tracking_uri=tracking_uri) == other
    assert client.get_run(other).data.metrics["carbontrack.co2e_g"] == pytest.approx(100.0)
    assert log_accounted_job(make_job("none"), tracking_uri=tracking_uri) is None
    unaccounted = make_job("pending", extra_annotations={"carbontrack.io/mlflow-run-id": other})
    del unaccounted["metadata"]["annotations"]["carbontrack.io/energy-kwh"]
    with pytest.raises(ConfigError, match="not accounted by the operator yet"):
        log_accounted_job(unaccounted, tracking_uri=tracking_uri)
    assert json.dumps(job)  # the Job object itself is untouched JSON

