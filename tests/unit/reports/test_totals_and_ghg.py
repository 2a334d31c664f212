"""Totals are reproducible from line items; no Job is counted twice; GHG framing."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.reports import export
from carbontrack.reports.aggregate import deduplicate, in_period, totals
from carbontrack.reports.build import Scope, build_report
from carbontrack.reports.ghg import NO_INSTRUMENT, GhgSettings, classify
from carbontrack.reports.model import SOURCE_PROMETHEUS, LineItem
from carbontrack.reports.sci import EmbodiedModel, EmbodiedSettings, Server
from carbontrack.reports.sources_cluster import IdentityKeys, job_to_line

from .conftest import make_job

UTC = timezone.utc
SERVERS = {"aws:p4d.24xlarge": Server(4676.79, 96, 8, "test")}


def _line(name: str, **kw: object) -> LineItem:
    got = job_to_line(make_job(name, **kw), IdentityKeys())  # type: ignore[arg-type]
    assert isinstance(got, LineItem)
    return got


def _report(lines: list[LineItem], settings: GhgSettings | None = None, scope: Scope | None = None):  # type: ignore[no-untyped-def]
    return build_report(
        lines, scope or Scope(), settings or GhgSettings(), EmbodiedModel(EmbodiedSettings(), SERVERS),
        clock=lambda: datetime(2026, 12, 1, tzinfo=UTC),
    )


def _lines() -> list[LineItem]:
    return [
        _line("a", team="vision", model="resnet", grams=120.0, components={"cpu": 1.0, "gpu": 3.0}),
        _line("b", team="vision", model="resnet", grams=80.0, status="Failed", namespace="ml2",
              components={"cpu": 0.25, "dram": 0.25, "gpu": 1.5}),
        _line("c", team="nlp", model="bert", grams=33.3, zone="FR", intensity=50.0, pue=1.1,
              components={"cpu": 0.7, "gpu": 5.0}),
        _line("d", team="", model="", grams=10.0, zone="US-CAL-CISO", components={"cpu": 0.3}),
    ]


def test_totals_in_csv_and_json_recompute_from_the_line_items(tmp_path: Path) -> None:
    report = _report(_lines(), GhgSettings.from_dict(
        {"market_instruments": [{"zone": "DE", "supplier_g_per_kwh": 20, "source": "supplier disclosure"}]}))
    export.write(report, tmp_path, {"csv", "json"})
    with (tmp_path / "report-lines.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    with (tmp_path / "report-totals.csv").open() as fh:
        tot = {(r["group"], r["key"]): r for r in csv.DictReader(fh)}
    doc = json.loads((tmp_path / "report.json").read_text())
    assert len(rows) == 4
    fields = ["it_energy_kwh", "facility_energy_kwh", "location_kgco2e", "market_kgco2e", "embodied_kgco2e",
              "gpu_hours", "cpu_kwh", "dram_kwh", "gpu_kwh", "other_kwh"]
    for f in fields:
        expect = sum(float(r[f] or 0) for r in rows)
        assert float(tot[("all", "all")][f]) == pytest.approx(expect, rel=1e-12)
        if f in doc["totals"]["all"]:
            assert doc["totals"]["all"][f] == pytest.approx(expect, rel=1e-12)
    # each group's totals are the sums of its own lines, and groups partition the lines
    for group, col in (("by_team", "team"), ("by_namespace", "namespace"), ("by_model", "model"),
                       ("by_workload_kind", "workload_kind")):
        keys = {r[col] or "(none)" for r in rows}
        assert {k for g, k in tot if g == group} == keys
        for k in keys:
            mine = [r for r in rows if (r[col] or "(none)") == k]
            expect = sum(float(r["location_kgco2e"]) for r in mine)
            assert float(tot[(group, k)]["location_kgco2e"]) == pytest.approx(expect)
            assert int(tot[(group, k)]["jobs"]) == len(mine)
        assert sum(int(tot[(group, k)]["jobs"]) for k in keys) == len(rows)
    # components add up to IT energy on every line, and IT x PUE = facility
    for r in rows:
        parts = sum(float(r[c]) for c in ("cpu_kwh", "dram_kwh", "gpu_kwh", "other_kwh"))
        assert parts == pytest.approx(float(r["it_energy_kwh"]))
        assert float(r["facility_energy_kwh"]) == pytest.approx(float(r["it_energy_kwh"]) * float(r["pue"]))
    assert doc["units"]["location_kgco2e"] == "kgCO2e"
    assert float(tot[("all", "all")]["location_kgco2e"]) == pytest.approx(0.12 + 0.08 + 0.0333 + 0.01)


def test_the_same_job_from_cluster_and_prometheus_counts_once() -> None:
    a = _line("a")
    live = a.with_(source=SOURCE_PROMETHEUS, location_kgco2e=0.5)
    kept, notes = deduplicate([live, a, _line("b")])
    assert sorted(x.job for x in kept) == ["a", "b"]
    assert [x for x in kept if x.job == "a"] == [a]
    assert len(notes) == 1 and "counted once" in notes[0]
    assert totals(kept).location_kgco2e == pytest.approx(0.2)


def test_period_is_half_open_on_the_end_time() -> None:
    x = _line("a", end="2026-11-30T23:59:59Z")
    nov = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    dec = (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert in_period(x, *nov) and not in_period(x, *dec)
    y = _line("b", end="2026-12-01T00:00:00Z")
    assert not in_period(y, *nov) and in_period(y, *dec)


def test_team_and_namespace_scope_filter_lines() -> None:
    r = _report(_lines(), scope=Scope(team="vision", namespaces=("ml",)))
    assert [x.job for x in r.lines] == ["a"]


def test_scope_by_node_pool_then_zone_then_default() -> None:
    s = GhgSettings.from_dict({"default": "cloud", "zones": {"DE": "own"}, "node_pools": {"rented": "cloud"}})
    own = classify(_line("a"), s)
    assert own.ghg_scope.startswith("Scope 2")
    pool = classify(_line("b").with_(node_pool="rented"), s)
    assert pool.ghg_scope.startswith("Scope 3 Category 1")
    other = classify(_line("c", zone="FR"), s)
    assert other.ghg_scope.startswith("Scope 3 Category 1")


def test_market_based_uses_instruments_or_says_it_fell_back() -> None:
    s = GhgSettings.from_dict({"market_instruments": [
        {"zone": "DE", "covered_fraction": 0.75, "covered_g_per_kwh": 0.0, "residual_mix_g_per_kwh": 100.0,
         "source": "PPA wind 2026 + RE-DISS residual mix", "year": 2026}]})
    de = classify(_line("a"), s)
    assert de.market_g_per_kwh == pytest.approx(25.0)  # 75 % at 0 g, 25 % at the residual mix 100 g
    assert de.market_kgco2e == pytest.approx(2.6 * 1.2 * 25.0 / 1000.0)
    assert "75% contractual instruments" in de.market_source and "residual mix" in de.market_source
    assert de.location_kgco2e == pytest.approx(0.1)  # location-based unchanged, side by side
    fr = classify(_line("b", zone="FR"), s)
    assert fr.market_kgco2e == fr.location_kgco2e
    assert fr.market_source == NO_INSTRUMENT.format(zone="FR")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"default": "colo"}, "ghg.default: 'colo' must be 'own' or 'cloud'"),
        ({"market_instruments": [{"zone": "DE", "g_per_kwh": 20}]}, "unknown market-based field"),
        ({"market_instruments": [{"zone": "DE", "supplier_g_per_kwh": -1}]}, "supplier_g_per_kwh for DE must be"),
        ({"market_instruments": {"DE": 1}}, "ghg.market_instruments must be a list"),
    ],
)
def test_bad_ghg_settings_are_rejected(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GhgSettings.from_dict(doc)
