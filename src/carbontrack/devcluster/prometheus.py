"""Prometheus (Debian's package) for the local cluster: config builder, process, queries.

Targets come from file_sd files that the harness writes (one per job), so an
exporter or the operator started later is picked up without a restart. Scrape
interval is 1 s by default so tests see fresh samples quickly.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import ConfigError, TemporaryError
from .ports import free_port
from .process import ManagedProcess, Supervisor

# "workload-metrics": applications' own metrics (e.g. an inference server's token counter),
# labelled with namespace and pod as Kubernetes service discovery would label them.
JOBS = ("carbontrack-exporter", "carbontrack-operator", "workload-metrics")


@dataclass(frozen=True)
class ScrapeJob:
    """A job with fixed targets and the scrape-side security settings of an endpoint that
    requires them (core/scrapeauth.py; docs/helm.md "Authenticated scraping")."""

    name: str
    targets: tuple[str, ...]
    scheme: str = "http"
    ca_file: Path | None = None  # tls_config.ca_file: the CA that signed the server's certificate
    cert_file: Path | None = None  # tls_config.cert_file/key_file: Prometheus' client certificate
    key_file: Path | None = None
    token_file: Path | None = None  # authorization.credentials_file (type Bearer)

    def config(self, interval: str) -> dict[str, Any]:
        job: dict[str, Any] = {"job_name": self.name, "scrape_interval": interval,
                               "scrape_timeout": interval, "scheme": self.scheme,
                               "static_configs": [{"targets": list(self.targets)}]}
        tls = {k: str(v) for k, v in (("ca_file", self.ca_file), ("cert_file", self.cert_file),
                                      ("key_file", self.key_file)) if v is not None}
        if tls:
            job["tls_config"] = tls
        if self.token_file is not None:
            job["authorization"] = {"type": "Bearer", "credentials_file": str(self.token_file)}
        return job


def prometheus_config(targets_dir: Path, scrape_interval_s: float = 1.0,
                      extra_jobs: Sequence[ScrapeJob] = ()) -> dict[str, Any]:
    """prometheus.yml: one job per kind of target, targets from ``<targets_dir>/<job>.json``;
    ``extra_jobs`` with fixed targets after them."""
    interval = f"{int(scrape_interval_s * 1000)}ms"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": job,
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "file_sd_configs": [
                    {"files": [str(targets_dir / f"{job}.json")], "refresh_interval": "1s"}
                ],
            }
            for job in JOBS
        ] + [job.config(interval) for job in extra_jobs],
    }


def file_sd(targets: Mapping[str, Mapping[str, str]]) -> list[dict[str, Any]]:
    """file_sd content: ``targets`` maps ``host:port`` to its extra labels."""
    return [{"targets": [t], "labels": dict(labels)} for t, labels in sorted(targets.items())]


def find_prometheus() -> Path:
    found = shutil.which("prometheus")
    if not found:
        raise ConfigError(
            "prometheus is not on PATH: install it with `apt-get install -y prometheus` "
            "(Debian's package also brings promtool)"
        )
    return Path(found)


@dataclass
class PrometheusServer:
    url: str
    targets_dir: Path
    process: ManagedProcess

    def set_targets(self, job: str, targets: Mapping[str, Mapping[str, str]]) -> None:
        if job not in JOBS:
            raise ConfigError(f"unknown scrape job {job!r}; expected one of {JOBS}")
        path = self.targets_dir / f"{job}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(file_sd(targets), indent=1))
        os.replace(tmp, path)  # Prometheus must never read a half-written file

    def query(self, promql: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        return query(self.url, promql, timeout_s)

    def targets_health(self) -> dict[str, str]:
        """``scrapeUrl -> health`` of the active targets."""
        return {url: health for (_, url), (health, _) in self.targets_state().items()}

    def targets_state(self) -> dict[tuple[str, str], tuple[str, str]]:
        """``(job, scrapeUrl) -> (health, lastError)`` of the active targets."""
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5.0) as r:
            body = json.load(r)
        return {(t["labels"].get("job", ""), t["scrapeUrl"]): (t["health"], t.get("lastError", ""))
                for t in body["data"]["activeTargets"]}


def query(base_url: str, promql: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Instant query; returns the ``data.result`` vector."""
    url = f"{base_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise TemporaryError(f"Prometheus query {promql!r} failed: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def start_prometheus(
    supervisor: Supervisor,
    state_dir: Path,
    *,
    binary: Path | None = None,
    scrape_interval_s: float = 1.0,
    timeout_s: float = 30.0,
    address: str = "127.0.0.1",
    extra_jobs: Sequence[ScrapeJob] = (),
) -> PrometheusServer:
    """Start Prometheus on a free port with its own config and data dir (the Debian
    service, if any, is untouched: it uses :9090 and /var/lib/prometheus). ``address``:
    loopback, or the host's address when a real node's pods (the operator) query it.
    ``extra_jobs``: more scrape jobs with fixed targets (e.g. an endpoint over TLS)."""
    binary = binary or find_prometheus()
    targets_dir = state_dir / "targets"
    targets_dir.mkdir(parents=True, exist_ok=True)
    for job in JOBS:
        (targets_dir / f"{job}.json").write_text("[]")
    cfg = state_dir / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(prometheus_config(targets_dir, scrape_interval_s, extra_jobs)))
    port = free_port()
    proc = supervisor.start(
        "prometheus",
        [
            str(binary),
            f"--config.file={cfg}",
            f"--storage.tsdb.path={state_dir / 'data'}",
            f"--web.listen-address={address}:{port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ],
    )
    server = PrometheusServer(f"http://{address}:{port}", targets_dir, proc)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1.0) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        if not proc.running():
            raise TemporaryError(f"prometheus exited; log {proc.log_path}:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise TemporaryError(f"prometheus not ready after {timeout_s} s; log {proc.log_path}")
        time.sleep(0.1)


def scalar(result: Sequence[dict[str, Any]]) -> float:
    """The value of a one-element query result."""
    if len(result) != 1:
        raise ValueError(f"expected one series, got {len(result)}: {result}")
    return float(result[0]["value"][1])
