"""W&B logging through the real wandb SDK in offline mode; asserts on the offline run file."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.reports.wandb_log import WandbLogger, log_accounted_job

from .conftest import make_job
from .test_files_and_cli import run_result

wandb = pytest.importorskip("wandb", reason="needs the [wandb] extra: pip install 'carbontrack[wandb]'")


def offline_summary(root: Path, run_id: str) -> dict[str, Any]:
    """Summary of a finished offline run; waits (bounded) for wandb-core to write the exit record."""
    deadline = time.monotonic() + 60
    while True:
        summary, finished = _read_run_file(root, run_id)
        if finished or time.monotonic() > deadline:
            assert finished, f"offline run {run_id} has no exit record"
            return summary
        time.sleep(0.2)


def _read_run_file(root: Path, run_id: str) -> tuple[dict[str, Any], bool]:
    """Summary updates recorded in ``wandb/offline-run-*-<id>/run-<id>.wandb``.

    The file is wandb's record log: a 7-byte ``:W&B`` header, then LevelDB-log framed chunks
    (crc32 u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last) in 32 KiB blocks,
    each holding a ``wandb_internal_pb2.Record``.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(root.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))
    if not files:
        return {}, False
    data = files[-1].read_bytes()
    assert data[:4] == b":W&B"
    block, pos, buf, out, finished = 32768, 7, b"", {}, False
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 2):
            buf = chunk
        elif kind in (3, 4):
            buf += chunk
        else:
            continue
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            if rec.WhichOneof("record_type") == "summary":
                out.update({u.key: json.loads(u.value_json) for u in rec.summary.update})
            finished = finished or rec.WhichOneof("record_type") == "exit"
    return out, finished


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
