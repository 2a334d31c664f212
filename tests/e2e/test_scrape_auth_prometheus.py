"""Authenticated/TLS scraping with the harness's real Prometheus: a real `carbontrack exporter`
process serves /metrics over HTTPS and requires a bearer token; Prometheus scrapes it with
``scheme: https``, ``tls_config.ca_file`` and ``authorization.credentials_file`` (the
configuration docs/helm.md shows) and gets the exporter's series, while jobs without the
token, over plain HTTP, or not trusting the server's CA are refused. A second exporter with
mutual TLS is scraped only by the job that presents a client certificate of the CA.

No cluster: the exporter runs --no-kube on a fake node tree (the node's counters are the
test's); Prometheus is Debian's, started by carbontrack.devcluster.prometheus."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from carbontrack.devcluster.exporter_process import ExporterProcess
from carbontrack.devcluster.pki import create_pki
from carbontrack.devcluster.process import Supervisor
from carbontrack.devcluster.prometheus import ScrapeJob, start_prometheus
from carbontrack.sim.powercap import FakePowercap
from carbontrack.sim.procfs import FakeProcStat, write_meminfo

pytestmark = pytest.mark.e2e
TOKEN = "e2e-scrape-token-7f3a"


def _node(root: Path) -> FakePowercap:
    pc = FakePowercap(root / "sys")
    pc.add_package(0)
    FakeProcStat(root / "proc", 4)
    write_meminfo(root / "proc", 8 << 30)
    (root / "sys" / "fs" / "cgroup").mkdir(parents=True, exist_ok=True)
    return pc


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    stops: list[Callable[[], Any]] = []
    sup = Supervisor(tmp_path / "logs")

    def start(kind: str, *args: Any, **kw: Any) -> Any:
        if kind == "exporter":
            ex = ExporterProcess(*args, **kw)
            stops.append(ex.stop)
            return ex
        return start_prometheus(sup, *args, **kw)

    yield start
    for stop in reversed(stops):
        stop()
    sup.stop()


def _wait_states(prom: Any, want: dict[str, str], wait_for: Callable[..., Any]) -> dict[str, tuple[str, str]]:
    """Wait until each scrape URL's job has the health ``want`` says (after one scrape)."""
    def states() -> dict[str, tuple[str, str]] | None:
        got = prom.targets_state()
        by_job = {job: got.get((job, url)) for job, url in want.items()}
        if all(s is not None and s[0] != "unknown" for s in by_job.values()):
            return {j: s for j, s in by_job.items() if s is not None}
        return None

    result: dict[str, tuple[str, str]] = wait_for("every target scraped once", states, 60)
    return result


def test_prometheus_scrapes_over_tls_with_a_token_and_others_are_refused(
        tmp_path: Path, started: Callable[..., Any], wait_for: Callable[..., Any]) -> None:
    pki = create_pki(tmp_path / "pki")  # serving certificate for 127.0.0.1, CA, client cert
    stranger = create_pki(tmp_path / "other-pki")
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-" + TOKEN)
    pc = _node(tmp_path / "a")
    ex = started("exporter", tmp_path / "a", "--interval", "0.5", "--tls-cert-file",
                 str(pki.apiserver_cert), "--tls-key-file", str(pki.apiserver_key),
                 "--auth-token-file", str(token))
    assert ex.scheme == "https"  # its start-up line says so
    pc.advance(pc.package_zone(0), 250.0)  # after its baseline: counted from the next cycle
    _node(tmp_path / "b")
    mtls = started("exporter", tmp_path / "b", "--interval", "0.5", "--tls-cert-file",
                   str(pki.apiserver_cert), "--tls-key-file", str(pki.apiserver_key),
                   "--tls-client-ca-file", str(pki.ca_cert))
    a, b = f"127.0.0.1:{ex.port}", f"127.0.0.1:{mtls.port}"
    jobs = [
        ScrapeJob("secured", (a,), "https", ca_file=pki.ca_cert, token_file=token),
        ScrapeJob("no-token", (a,), "https", ca_file=pki.ca_cert),
        ScrapeJob("wrong-token", (a,), "https", ca_file=pki.ca_cert, token_file=wrong),
        ScrapeJob("plain-http", (a,), "http", token_file=token),
        ScrapeJob("untrusted-ca", (a,), "https", ca_file=stranger.ca_cert, token_file=token),
        ScrapeJob("mtls", (b,), "https", ca_file=pki.ca_cert, cert_file=pki.admin_cert,
                  key_file=pki.admin_key),
        ScrapeJob("mtls-no-cert", (b,), "https", ca_file=pki.ca_cert),
        ScrapeJob("mtls-other-ca-cert", (b,), "https", ca_file=pki.ca_cert,
                  cert_file=stranger.admin_cert, key_file=stranger.admin_key),
    ]
    prom = started("prometheus", tmp_path / "prom", extra_jobs=jobs)
    urls = {j.name: f"{j.scheme}://{j.targets[0]}/metrics" for j in jobs}
    states = _wait_states(prom, urls, wait_for)
    assert {j: s[0] for j, s in states.items()} == {
        "secured": "up", "no-token": "down", "wrong-token": "down", "plain-http": "down",
        "untrusted-ca": "down", "mtls": "up", "mtls-no-cert": "down", "mtls-other-ca-cert": "down"}
    errors = {j: s[1] for j, s in states.items()}
    assert "401" in errors["no-token"] and "401" in errors["wrong-token"]
    assert "401" in errors["mtls-no-cert"]
    assert "certificate" in errors["untrusted-ca"]  # x509: certificate signed by unknown authority
    # what the secured job stored is the exporter's data: the node's 250 J of RAPL energy
    def energy() -> list[float] | None:
        got = [float(r["value"][1]) for r in prom.query(
            'carbontrack_node_energy_joules_total{job="secured",component="cpu"}')]
        return got if got and got[0] > 0 else None

    assert wait_for("the node's energy in Prometheus", energy, 30) == [250.0]
    # and nothing of it under the refused jobs
    for job in ("no-token", "wrong-token", "plain-http", "untrusted-ca", "mtls-no-cert"):
        assert prom.query(f'carbontrack_source_up{{job="{job}"}}') == [], job
    assert prom.query('carbontrack_source_up{job="mtls"}') != []
