"""Real servers for report tests: an MLflow tracking server with a local SQLite store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(name: str, cmd: list[str], log_path: Path, health_url: str, start_timeout_s: float,
            env: dict[str, str] | None = None) -> Iterator[None]:
    """Run ``cmd`` in its own process group until ``health_url`` answers 200; stop the whole
    group (SIGTERM, then SIGKILL) on exit. A server that exits or never gets healthy fails
    with the tail of its log."""
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(health_url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not healthy after {start_timeout_s} s: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@contextmanager
def mlflow_server(workdir: Path, start_timeout_s: float = 180.0) -> Iterator[str]:
    """Start ``mlflow server`` on loopback; yield its URL; stop its whole process group."""
    port = free_port()
    exe = shutil.which("mlflow") or sys.executable
    cmd = [exe] if exe != sys.executable else [sys.executable, "-m", "mlflow"]
    cmd += [
        "server",
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--default-artifact-root", (workdir / "artifacts").as_uri(),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    url = f"http://127.0.0.1:{port}"
    with serving("mlflow server", cmd, workdir / "mlflow-server.log", url + "/health", start_timeout_s, env):
        yield url


@contextmanager
def prometheus_with_history(workdir: Path, openmetrics: str, start_timeout_s: float = 120.0) -> Iterator[str]:
    """A real Prometheus serving historical samples: ``promtool tsdb create-blocks-from
    openmetrics`` backfills the TSDB (deterministic, no scraping, no waiting for time to
    pass), then ``prometheus`` starts on it with no scrape targets."""
    data = workdir / "tsdb"
    data.mkdir()
    src = workdir / "history.om"
    src.write_text(openmetrics)
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(src), str(data)],
                   check=True, capture_output=True, timeout=120)
    cfg = workdir / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    port = free_port()
    cmd = ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={data}",
           "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}"
    with serving("prometheus", cmd, workdir / "prometheus.log", url + "/-/ready", start_timeout_s):
        yield url


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
