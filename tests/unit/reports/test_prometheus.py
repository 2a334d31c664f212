"""Per-Job window energy from a real Prometheus holding backfilled exporter counters."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from carbontrack.core.errors import ConfigError, TemporaryError
from carbontrack.reports.aggregate import deduplicate
from carbontrack.reports.model import SOURCE_PROMETHEUS
from carbontrack.reports.sources_cluster import IdentityKeys
from carbontrack.reports.sources_prometheus import PrometheusSource

from .servers import free_port, prometheus_with_history

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="needs Prometheus: apt-get install prometheus",
)
UTC = timezone.utc
SINCE = datetime(2026, 11, 10, 12, tzinfo=UTC)
UNTIL = SINCE + timedelta(hours=2)


def _series(metric: str, labels: dict[str, str], points: list[tuple[datetime, float]]) -> list[str]:
    lab = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return [f"{metric}{{{lab}}} {v} {t.timestamp():.0f}" for t, v in points]


def _ramp(t0: datetime, t1: datetime, v0: float, v1: float) -> list[tuple[datetime, float]]:
    n = int((t1 - t0).total_seconds() // 60)
    return [(t0 + timedelta(minutes=i), v0 + (v1 - v0) * i / n) for i in range(n + 1)]


def _pod(job: str, uid: str, node: str, comp: str, method: str = "measured") -> dict[str, str]:
    return {"node": node, "namespace": "ml", "pod": f"{job}-x", "pod_uid": f"p-{uid}-{comp}", "container": "c",
            "component": comp, "method": method, "owner_kind": "Job", "owner_name": job, "owner_uid": uid}


def history() -> str:
    e, c = "carbontrack_container_energy_joules_total", "carbontrack_container_co2e_grams_total"
    lines: list[str] = []
    # Job "inside": starts 10 min into the window, 1 kWh GPU + 0.5 kWh CPU, 432 g in total
    a0, a1 = SINCE + timedelta(minutes=10), SINCE + timedelta(minutes=70)
    lines += _series(e, _pod("inside", "ua", "n1", "gpu"), _ramp(a0, a1, 0, 3.6e6))
    lines += _series(e, _pod("inside", "ua", "n1", "cpu", "estimated"), _ramp(a0, a1, 0, 1.8e6))
    lines += _series(c, _pod("inside", "ua", "n1", "gpu"), _ramp(a0, a1, 0, 288.0))
    lines += _series(c, _pod("inside", "ua", "n1", "cpu", "estimated"), _ramp(a0, a1, 0, 144.0))
    # Job "edge": began an hour before the window; only its part inside counts (2 kWh, 100 g)
    b0, b1 = SINCE - timedelta(hours=1), SINCE + timedelta(minutes=60)
    lines += _series(e, _pod("edge", "ub", "n2", "gpu"), _ramp(b0, b1, 0, 14.4e6))
    lines += _series(c, _pod("edge", "ub", "n2", "gpu"), _ramp(b0, b1, 0, 200.0))
    # a non-Job pod is not a Job line
    lines += _series(e, {**_pod("x", "uz", "n1", "cpu"), "owner_kind": "ReplicaSet"}, _ramp(a0, a1, 0, 9e6))
    g = _ramp(SINCE - timedelta(hours=1), UNTIL, 0, 0)
    lines += [s.replace(" 0.0 ", " 240 ") for s in _series(
        "carbontrack_grid_carbon_intensity_grams_per_kwh",
        {"node": "n1", "zone": "DE", "source": "owid-ember-2025", "basis": "average/lifecycle/location-based"}, g)]
    lines += [s.replace(" 0.0 ", " 50 ") for s in _series(
        "carbontrack_grid_carbon_intensity_grams_per_kwh",
        {"node": "n2", "zone": "FR", "source": "owid-ember-2025", "basis": "average/lifecycle/location-based"}, g)]
    lines += [s.replace(" 0.0 ", " 1.2 ") for s in _series("carbontrack_pue", {"node": "n1"}, g)]
    lines += [s.replace(" 0.0 ", " 1.0 ") for s in _series("carbontrack_pue", {"node": "n2"}, g)]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def prom_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prometheus_with_history(tmp_path_factory.mktemp("prom"), history()) as url:
        yield url


def test_window_energy_per_job_from_counters(prom_url: str) -> None:
    lines = {x.job: x for x in PrometheusSource(prom_url, IdentityKeys(cluster="c1")).lines(SINCE, UNTIL, [])}
    assert sorted(lines) == ["edge", "inside"]
    a = lines["inside"]
    assert (a.gpu_kwh, a.cpu_kwh) == (pytest.approx(1.0), pytest.approx(0.5))
    assert a.location_kgco2e == pytest.approx(0.432)
    assert (a.pue, a.facility_energy_kwh) == (1.2, pytest.approx(1.8))
    assert a.intensity_g_per_kwh == pytest.approx(432 / 1.8)
    assert a.by_zone == (("DE", pytest.approx(1.8), pytest.approx(0.432)),)  # its node's zone, x PUE 1.2
    assert (a.grid_zone, a.energy_method, a.job_uid, a.source) == ("DE", "estimated+measured", "ua",
                                                                 SOURCE_PROMETHEUS)
    # its line spans its run (12:10-13:10), to within a 15 s step plus a 60 s scrape interval
    assert a.start is not None and a.end is not None
    assert abs((a.start - (SINCE + timedelta(minutes=10))).total_seconds()) <= 75
    assert abs((a.end - (SINCE + timedelta(minutes=70))).total_seconds()) <= 75
    b = lines["edge"]
    assert b.start == SINCE  # rose before the window: its part starts with the window
    assert b.gpu_kwh == pytest.approx(2.0)  # 4 kWh over 2 h, half of it inside the window
    assert b.location_kgco2e == pytest.approx(0.1)
    assert b.grid_zone == "FR" and b.pue == 1.0


def test_namespace_filter_and_dedup_against_the_cluster_line(prom_url: str) -> None:
    src = PrometheusSource(prom_url, IdentityKeys())
    assert src.lines(SINCE, UNTIL, ["other"]) == []
    live = src.lines(SINCE, UNTIL, ["ml"])
    final = live[0].with_(source="cluster-annotation", location_kgco2e=0.5)
    kept, _ = deduplicate([*live, final])
    assert len(kept) == len(live) and final in kept


def test_unreachable_or_wrong_prometheus_is_a_clear_error(prom_url: str) -> None:
    with pytest.raises(TemporaryError, match=r"cannot reach Prometheus at http://127\.0\.0\.1"):
        PrometheusSource(f"http://127.0.0.1:{free_port()}", IdentityKeys(), timeout_s=2).lines(SINCE, UNTIL, [])
    with pytest.raises(TemporaryError, match="answered HTTP 404"):
        PrometheusSource(prom_url + "/nope", IdentityKeys()).lines(SINCE, UNTIL, [])
    with pytest.raises(ConfigError, match="not a valid namespace"):
        PrometheusSource(prom_url, IdentityKeys()).lines(SINCE, UNTIL, ['ml"}'])
    with pytest.raises(ConfigError, match="http:// or https://"):
        PrometheusSource("localhost:9090", IdentityKeys())


def test_cli_report_from_prometheus(prom_url: str, tmp_path: Path) -> None:
    import json

    from carbontrack.reports.cli import main

    rc = main(["--prometheus-url", prom_url, "--since", SINCE.isoformat(), "--until", UNTIL.isoformat(),
               "-o", str(tmp_path), "--format", "json", "-q"])
    assert rc == 0
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["totals"]["all"]["jobs"] == 2
    assert doc["totals"]["all"]["it_energy_kwh"] == pytest.approx(3.5)
    assert doc["totals"]["all"]["location_kgco2e"] == pytest.approx(0.532)
    assert doc["totals"]["by_zone"]["FR"]["location_kgco2e"] == pytest.approx(0.1)
