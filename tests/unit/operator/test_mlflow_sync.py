"""The operator's MLflow hook against a real MLflow tracking server (SQLite store), started
with the reports tests' helper."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from carbontrack.operator.metrics import OperatorMetrics
from carbontrack.operator.mlflow_sync import MlflowJobLogger, names_a_run
from prometheus_client import CollectorRegistry

mlflow = pytest.importorskip("mlflow", reason="needs the [mlflow] extra: pip install 'carbontrack[mlflow]'")

REPORTS = Path(__file__).parents[1] / "reports"


def _load(name: str) -> ModuleType:
    # tests/unit/operator is not a package: load the reports tests' helpers by path
    spec = importlib.util.spec_from_file_location(f"_ct_reports_{name}", REPORTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


servers, builders = _load("servers"), _load("conftest")


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with servers.mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


def new_run(client: Any) -> str:
    exp = client.get_experiment_by_name("operator")
    exp_id = exp.experiment_id if exp else client.create_experiment("operator")
    return str(client.create_run(exp_id).info.run_id)


def with_env(job: dict[str, Any], **env: str) -> dict[str, Any]:
    job["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": k, "value": v} for k, v in env.items()]
    return job


def test_accounted_jobs_are_logged_once_to_their_runs_and_failures_only_counted(
    tracking_uri: str,
) -> None:
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    by_env, by_annotation = new_run(client), new_run(client)
    metrics = OperatorMetrics(CollectorRegistry())
    logger = MlflowJobLogger(tracking_uri, metrics)
    # The pod's own MLFLOW_TRACKING_URI points nowhere: the operator's server is used.
    job_env = with_env(builders.make_job("train-1", components={"cpu": 0.5, "gpu": 2.5}, grams=321.0),
                       MLFLOW_RUN_ID=by_env, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    job_ann = builders.make_job("train-2", grams=42.0,
                                extra_annotations={"carbontrack.io/mlflow-run-id": by_annotation})
    no_run = builders.make_job("train-3")
    bad_run = builders.make_job("train-4", extra_annotations={
        "carbontrack.io/mlflow-run-id": "0123456789abcdef0123456789abcdef"})
    assert (names_a_run(job_env), names_a_run(job_ann), names_a_run(no_run)) == (True, True, False)

    async def run() -> None:
        for job in (job_env, job_ann, no_run, bad_run):
            logger.submit(job)  # returns at once; accounting never waits for MLflow
        await logger.drain()

    asyncio.run(run())
    env_data = client.get_run(by_env).data
    assert env_data.metrics["carbontrack.co2e_g"] == pytest.approx(321.0)
    assert env_data.metrics["carbontrack.energy_kwh"] == pytest.approx(3.0)
    assert env_data.tags["carbontrack.job_uid"] == "uid-ml-train-1"
    assert client.get_run(by_annotation).data.metrics["carbontrack.co2e_g"] == pytest.approx(42.0)
    assert len(client.get_metric_history(by_env, "carbontrack.co2e_g")) == 1  # once
    sample = metrics.registry.get_sample_value
    assert sample("carbontrack_operator_mlflow_logs_total", {"result": "ok"}) == 2
    assert sample("carbontrack_operator_mlflow_logs_total", {"result": "failed"}) == 1


def test_a_raising_log_function_is_counted_not_raised() -> None:
    metrics = OperatorMetrics(CollectorRegistry())

    def broken(job: Any, uri: str) -> str | None:
        raise RuntimeError("server on fire\nsecond line")

    logger = MlflowJobLogger("http://mlflow:5000", metrics, log_fn=broken)

    async def run() -> None:
        logger.submit(builders.make_job("t", extra_annotations={"carbontrack.io/mlflow-run-id": "r"}))
        await logger.drain()

    asyncio.run(run())
    assert metrics.registry.get_sample_value(
        "carbontrack_operator_mlflow_logs_total", {"result": "failed"}) == 1
