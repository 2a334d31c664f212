"""A month's report with Prometheus-only Jobs: each line spans its own run, not the month."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from carbontrack.reports.sources_cluster import IdentityKeys
from carbontrack.reports.sources_prometheus import PrometheusSource

from .servers import prometheus_with_history
from .test_prometheus import _pod, _ramp, _series

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="needs Prometheus: apt-get install prometheus",
)
UTC = timezone.utc
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)  # 30 days: 720 h
STEP_S = 30 * 86400 / 11000  # 235.6 s: the query step for a 30-day window
SCRAPE_S = 60.0  # _ramp writes one sample a minute
# Job "short": 2 h from Nov 10 08:00; Job "long": 26 h from Nov 20 22:30 (across midnight)
SHORT = (datetime(2026, 11, 10, 8, tzinfo=UTC), datetime(2026, 11, 10, 10, tzinfo=UTC))
DDP = (datetime(2026, 11, 15, tzinfo=UTC), datetime(2026, 11, 15, 4, tzinfo=UTC))
LONG = (datetime(2026, 11, 20, 22, 30, tzinfo=UTC), datetime(2026, 11, 22, 0, 30, tzinfo=UTC))


def history() -> str:
    e, c = "carbontrack_container_energy_joules_total", "carbontrack_container_co2e_grams_total"
    lines: list[str] = []
    for name, uid, (t0, t1), joules in (("short", "us", SHORT, 7.2e6), ("long", "ul", LONG, 36e6)):
        lines += _series(e, _pod(name, uid, "n1", "gpu"), _ramp(t0, t1, 0, joules))
        lines += _series(c, _pod(name, uid, "n1", "gpu"), _ramp(t0, t1, 0, joules / 3.6e6 * 300))
        # the counter stays flat after the Job ended (the exporter keeps the series a while)
        lines += _series(e, _pod(name, uid, "n1", "gpu"), _ramp(t1 + timedelta(minutes=1),
                                                                t1 + timedelta(minutes=30), joules, joules))
    # Job "ddp" on two nodes in two zones: n1 (DE, PUE 1.0) 1 kWh and 300 g, n2 (FR, PUE 1.5)
    # 2 kWh and 150 g, 4 h from Nov 15 00:00
    d0, d1 = DDP
    lines += _series(e, _pod("ddp", "ud", "n1", "gpu"), _ramp(d0, d1, 0, 3.6e6))
    lines += _series(c, _pod("ddp", "ud", "n1", "gpu"), _ramp(d0, d1, 0, 300.0))
    lines += _series(e, {**_pod("ddp", "ud", "n2", "gpu"), "pod_uid": "p-ud-2"}, _ramp(d0, d1, 0, 7.2e6))
    lines += _series(c, {**_pod("ddp", "ud", "n2", "gpu"), "pod_uid": "p-ud-2"}, _ramp(d0, d1, 0, 150.0))
    # Job "old" ran before the month; its flat series lingers into it: not a line of the month
    lines += _series(e, _pod("old", "uo", "n1", "gpu"), _ramp(SINCE - timedelta(hours=2), SINCE, 0, 3.6e6))
    lines += _series(e, _pod("old", "uo", "n1", "gpu"), _ramp(SINCE + timedelta(minutes=1),
                                                              SINCE + timedelta(minutes=30), 3.6e6, 3.6e6))
    g = _ramp(UNTIL - timedelta(minutes=10), UNTIL, 0, 0)
    lines += [s.replace(" 0.0 ", " 300 ") for s in _series(
        "carbontrack_grid_carbon_intensity_grams_per_kwh",
        {"node": "n1", "zone": "DE", "source": "owid-ember-2025", "basis": "average/lifecycle/location-based"}, g)]
    lines += [s.replace(" 0.0 ", " 1.0 ") for s in _series("carbontrack_pue", {"node": "n1"}, g)]
    lines += [s.replace(" 0.0 ", " 50 ") for s in _series(
        "carbontrack_grid_carbon_intensity_grams_per_kwh",
        {"node": "n2", "zone": "FR", "source": "owid-ember-2025", "basis": "average/lifecycle/location-based"}, g)]
    lines += [s.replace(" 0.0 ", " 1.5 ") for s in _series("carbontrack_pue", {"node": "n2"}, g)]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def prom_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prometheus_with_history(tmp_path_factory.mktemp("prom"), history()) as url:
        yield url


def test_month_report_lines_span_each_jobs_run(prom_url: str) -> None:
    lines = {x.job: x for x in PrometheusSource(prom_url, IdentityKeys()).lines(SINCE, UNTIL, [])}
    assert sorted(lines) == ["ddp", "long", "short"]
    # energy is the whole run either way: 2 kWh and 10 kWh
    assert (lines["short"].it_energy_kwh, lines["long"].it_energy_kwh) == (pytest.approx(2.0), pytest.approx(10.0))
    for name, (t0, t1), hours in (("short", SHORT, 2.0), ("long", LONG, 26.0)):
        x = lines[name]
        assert x.start is not None and x.end is not None
        # start/end within one query step plus one scrape interval of the run (not Nov 1 / Dec 1)
        assert abs((x.start - t0).total_seconds()) <= STEP_S + SCRAPE_S, (name, x.start)
        assert abs((x.end - t1).total_seconds()) <= STEP_S + SCRAPE_S, (name, x.end)
        assert x.duration_h == pytest.approx(hours, abs=2 * (STEP_S + SCRAPE_S) / 3600)
    # the month is 720 h; the two Jobs together ran 28 h (+- the resolution above)
    assert lines["short"].duration_h + lines["long"].duration_h == pytest.approx(28.0, abs=0.3)


def test_a_two_zone_job_gets_each_zones_market_factor(prom_url: str) -> None:
    from carbontrack.reports import ghg

    x = {x.job: x for x in PrometheusSource(prom_url, IdentityKeys()).lines(SINCE, UNTIL, [])}["ddp"]
    # n1: 1 kWh x PUE 1.0 = 1 kWh, 0.3 kg; n2: 2 kWh x PUE 1.5 = 3 kWh, 0.15 kg
    assert x.grid_zone == "DE,FR" and x.node_count == 2
    # facility: each node at its own PUE, 1 + 3 = 4 kWh; effective PUE 4 / 3
    assert (x.facility_energy_kwh, x.pue) == (pytest.approx(4.0), pytest.approx(4 / 3))
    assert x.pue_source == "energy-weighted over node PUEs [1.0, 1.5]"
    assert x.by_zone == (("DE", pytest.approx(1.0), pytest.approx(0.3)),
                         ("FR", pytest.approx(3.0), pytest.approx(0.15)))
    assert x.duration_h == pytest.approx(4.0, abs=2 * (STEP_S + SCRAPE_S) / 3600)
    settings = ghg.GhgSettings.from_dict({"market_instruments": [
        {"zone": "DE", "supplier_g_per_kwh": 100, "source": "DE supplier"},
        {"zone": "FR", "covered_fraction": 1.0, "covered_g_per_kwh": 10, "source": "FR PPA"}]})
    # DE 1 kWh x 100 g + FR 3 kWh x 10 g = 130 g
    assert ghg.classify(x, settings).market_kgco2e == pytest.approx(0.13)
