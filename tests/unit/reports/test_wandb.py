"""W&B logging through the real wandb SDK in offline mode; asserts on the offline run file."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.reports.wandb_log import WandbLogger, log_accounted_job

from .conftest import make_job
from .servers import offline_summary
from .test_files_and_cli import run_result

wandb = pytest.importorskip("wandb", reason="needs the [wandb] extra: pip install 'carbontrack[wandb]'")


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    return tmp_path


def test_tracker_result_lands_in_the_active_run_summary(offline: Path) -> None:
    run = wandb.init(project="carbontrack-test", dir=str(offline))
    try:
        WandbLogger().on_result(run_result("r1"))
    finally:
        run.finish()
    s = offline_summary(offline, run.id)
    assert s["carbontrack/co2e_g"] == pytest.approx(1500.0)
    assert s["carbontrack/energy_kwh"] == pytest.approx(11.16e6 / 3.6e6)
    assert s["carbontrack/gpu_energy_kwh"] == pytest.approx(2.0)
    assert s["carbontrack/zone"] == "DE"
    assert s["carbontrack/intensity_basis"] == "average/lifecycle/location-based"


def test_no_active_run_is_a_clear_error(offline: Path) -> None:
    assert wandb.run is None
    with pytest.raises(ConfigError, match="no active W&B run"):
        WandbLogger().on_result(run_result("r2"))


def test_accounted_job_goes_to_the_run_it_names(offline: Path) -> None:
    job = make_job("train-9", components={"gpu": 4.0}, grams=250.0,
                   extra_annotations={"carbontrack.io/wandb-run-id": "ctjob9"})
    job["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "WANDB_PROJECT", "value": "vision"}]
    assert log_accounted_job(job, directory=str(offline)) == "ctjob9"
    s = offline_summary(offline, "ctjob9")
    assert s["carbontrack/co2e_g"] == pytest.approx(250.0)
    assert s["carbontrack/energy_kwh"] == pytest.approx(4.0)
    assert s["carbontrack/facility_energy_kwh"] == pytest.approx(4.8)
    assert s["carbontrack/job"] == "ml/train-9"
    assert log_accounted_job(make_job("no-run"), directory=str(offline)) is None


def test_real_track_hook_updates_the_active_run(offline: Path) -> None:
    from carbontrack.tracker.api import track

    run = wandb.init(project="carbontrack-test", dir=str(offline))
    try:
        with track(zone="DE", pue=1.1, scope="machine", output_dir=offline, interval_s=0.05,
                   loggers=[WandbLogger()]) as t:
            sum(range(100_000))
    finally:
        run.finish()
    assert t.result is not None
    s = offline_summary(offline, run.id)
    assert s["carbontrack/co2e_g"] == pytest.approx(t.result.co2e_grams)
    assert s["carbontrack/energy_kwh"] == pytest.approx(t.result.energy_kwh) and s["carbontrack/energy_kwh"] > 0
    assert s["carbontrack/run_id"] == t.result.run_id
