"""GHG Scope 2 on a direct basis with upstream in Scope 3 Cat. 3; marginal refused; market
factors per zone for multi-zone Jobs. Expected values computed by hand in the comments."""

from __future__ import annotations

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.reports import ghg
from carbontrack.reports.model import LineItem

LIFECYCLE = "average/lifecycle/location-based"
EMBER = "owid-ember-2025: Ember (2025)"


def _own_line(**kw: object) -> LineItem:
    base = LineItem(source="cluster-annotation", namespace="ml", job="j", job_uid="u1", grid_zone="DE",
                    gpu_kwh=10.0, it_energy_kwh=10.0, pue=1.0, facility_energy_kwh=10.0,
                    intensity_g_per_kwh=344.0, intensity_basis=LIFECYCLE, intensity_source=EMBER,
                    location_kgco2e=3.44)
    return base.with_(**kw)


OWN = ghg.GhgSettings.from_dict({"default": "own"})


def test_lifecycle_only_source_keeps_its_figure_in_scope_2_and_says_so() -> None:
    x = ghg.classify(_own_line(), OWN)
    assert x.ghg_scope.startswith("Scope 2")
    assert (x.direct_kgco2e, x.upstream_kgco2e) == (None, None)
    assert x.ghg_basis.startswith("lifecycle (includes upstream): no direct-combustion factor")
    assert "zone(s) DE" in x.ghg_basis
    assert ghg.summary([x]) == {ghg.SCOPE_TEXT[ghg.OWN]: {
        "location_kgco2e": pytest.approx(3.44), "market_kgco2e": pytest.approx(3.44),
        "facility_energy_kwh": 10.0}}


def test_a_source_with_both_splits_scope_2_direct_and_scope_3_cat_3_upstream() -> None:
    settings = ghg.GhgSettings.from_dict({"default": "own", "direct_factors": [
        {"zone": "DE", "g_per_kwh": 300, "source": "Electricity Maps DE 2025, emissionFactorType=direct",
         "year": 2025}]})
    x = ghg.classify(_own_line(), settings)
    # Scope 2: 10 kWh x 300 g/kWh = 3.0 kg; Cat. 3 upstream: 3.44 - 3.0 = 0.44 kg
    assert x.direct_kgco2e == pytest.approx(3.0)
    assert x.upstream_kgco2e == pytest.approx(0.44)
    assert x.ghg_basis == ("direct for Scope 2: DE 300 g/kWh (Electricity Maps DE 2025, "
                           "emissionFactorType=direct, 2025); upstream (lifecycle - direct) in Scope 3 Category 3")
    got = ghg.summary([x])
    assert got[ghg.SCOPE_TEXT[ghg.OWN]]["location_kgco2e"] == pytest.approx(3.0)
    # without an instrument the market figure falls back to the Scope 2 (direct) figure
    assert got[ghg.SCOPE_TEXT[ghg.OWN]]["market_kgco2e"] == pytest.approx(3.0)
    assert got[ghg.SCOPE_3_CAT_3] == {"location_kgco2e": pytest.approx(0.44),
                                      "market_kgco2e": pytest.approx(0.44), "facility_energy_kwh": 0.0}
    # the total of the two equals the accounted lifecycle figure
    assert sum(v["location_kgco2e"] for v in got.values()) == pytest.approx(3.44)
    # a cloud line is all Scope 3 Cat. 1, not split
    cloud = ghg.classify(_own_line(), ghg.GhgSettings(default=ghg.CLOUD, direct=settings.direct))
    assert (cloud.direct_kgco2e, cloud.upstream_kgco2e) == (None, None)
    assert "whole location figure in Scope 3 Category 1" in cloud.ghg_basis


def test_direct_factors_already_direct_stay_whole_in_scope_2() -> None:
    x = ghg.classify(_own_line(intensity_basis="average/direct/location-based", location_kgco2e=1.95), OWN)
    assert (x.direct_kgco2e, x.upstream_kgco2e) == (1.95, None)
    assert x.ghg_basis == "direct (combustion only), as accounted"


def test_marginal_factors_are_refused_for_scope_2_with_a_clear_message() -> None:
    marginal = _own_line(intensity_basis="marginal/direct/location-based", intensity_source="WattTime co2_moer")
    with pytest.raises(ConfigError, match=r"ml/j: its grid factor is marginal .* reported as Scope 2 .*"
                                          r"suits load shifting, not a GHG inventory"):
        ghg.classify(marginal, OWN)
    # as cloud compute (Scope 3 Cat. 1) it is not refused, and its basis is shown
    assert "marginal" in ghg.classify(marginal, ghg.GhgSettings()).ghg_basis


def test_direct_factor_config_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"direct_factors\[0\]: give zone, g_per_kwh, source"):
        ghg.GhgSettings.from_dict({"direct_factors": [{"zone": "DE", "g_per_kwh": 300}]})
    with pytest.raises(ConfigError, match="two entries for zone de"):
        ghg.GhgSettings.from_dict({"direct_factors": [{"zone": "DE", "g_per_kwh": 1, "source": "a"},
                                                      {"zone": "de", "g_per_kwh": 2, "source": "b"}]})


def test_market_factors_apply_per_zone_for_a_two_zone_job() -> None:
    # DE nodes: 6 kWh, 2.4 kg location; FR nodes: 4 kWh, 0.2 kg location
    line = _own_line(grid_zone="DE,FR", gpu_kwh=10.0, by_zone=(("DE", 6.0, 2.4), ("FR", 4.0, 0.2)),
                     location_kgco2e=2.6, intensity_g_per_kwh=260.0)
    both = ghg.GhgSettings.from_dict({"default": "cloud", "market_instruments": [
        {"zone": "DE", "covered_fraction": 0.5, "covered_g_per_kwh": 0, "residual_mix_g_per_kwh": 600,
         "source": "GO 50 %, AIB residual mix"},
        {"zone": "FR", "supplier_g_per_kwh": 20, "source": "supplier disclosure"}]})
    x = ghg.classify(line, both)
    # DE: 0.5 x 0 + 0.5 x 600 = 300 g/kWh x 6 kWh = 1.8 kg; FR: 20 g/kWh x 4 kWh = 0.08 kg
    assert x.market_kgco2e == pytest.approx(1.88)
    assert x.market_g_per_kwh == pytest.approx(188.0)
    assert x.market_source.startswith("DE: market-based: 50% contractual") and " | FR: market-based" in x.market_source
    # only DE has an instrument: FR keeps its own location figure (0.2 kg)
    de_only = ghg.GhgSettings.from_dict({"market_instruments": [
        {"zone": "DE", "covered_fraction": 0.5, "covered_g_per_kwh": 0, "residual_mix_g_per_kwh": 600,
         "source": "GO"}]})
    y = ghg.classify(line, de_only)
    assert y.market_kgco2e == pytest.approx(2.0)
    assert "FR: no contractual instrument configured for zone FR" in y.market_source


def test_by_zone_travels_in_the_csv_row() -> None:
    row = _own_line(by_zone=(("DE", 6.0, 2.4), ("FR", 4.0, 0.2))).to_row()
    assert row["by_zone"] == "DE:6:2.4;FR:4:0.2"


def test_two_zone_job_from_the_operators_accounting_gets_each_zones_market_factor() -> None:
    """The operator records facility kWh and CO2e per zone; the report line carries them."""
    from datetime import datetime, timezone

    accounting = pytest.importorskip("carbontrack.operator.accounting")
    from carbontrack.operator.jobs import JobFacts
    from carbontrack.operator.prometheus import Sample

    from carbontrack.reports.sources_cluster import IdentityKeys, job_to_line

    from .conftest import make_job

    t0, t1 = datetime(2026, 11, 12, 8, tzinfo=timezone.utc), datetime(2026, 11, 12, 10, tzinfo=timezone.utc)
    facts = JobFacts(uid="u-2", namespace="ml", name="ddp", labels={}, annotations={}, created_at=t0,
                     started_at=t0, finished_at=t1, outcome="Complete", deleting=False, finalizers=(),
                     suspended=False, completions=1, parallelism=2, succeeded=2, active=0, gpus_per_pod=0)
    # n1 (DE, PUE 1.5): 3 kWh; n2 (FR, PUE 1.2): 0.5 kWh
    energy = [Sample({"node": "n1", "component": "gpu", "method": "measured"}, 10.8e6),
              Sample({"node": "n2", "component": "gpu", "method": "measured"}, 1.8e6)]
    co2e = [Sample({"node": "n1", "component": "gpu", "method": "measured"}, 3.0 * 1.5 * 400),
            Sample({"node": "n2", "component": "gpu", "method": "measured"}, 0.5 * 1.2 * 100)]
    pue = [Sample({"node": "n1"}, 1.5), Sample({"node": "n2"}, 1.2)]
    intensity = [Sample({"node": "n1", "zone": "DE", "source": "ember", "basis": LIFECYCLE}, 400),
                 Sample({"node": "n2", "zone": "FR", "source": "ember", "basis": LIFECYCLE}, 100)]
    pods = [Sample({"pod_uid": "p1"}, 1), Sample({"pod_uid": "p2"}, 1)]
    acc = accounting.build_accounting(facts, t0, t1, energy, co2e, pue, intensity, pods)
    job = make_job("ddp", uid="u-2")
    job["metadata"]["annotations"] = acc.annotations(t1)
    line = job_to_line(job, IdentityKeys())
    assert isinstance(line, LineItem)
    # DE: 3 kWh x 1.5 = 4.5 kWh, 1800 g; FR: 0.5 kWh x 1.2 = 0.6 kWh, 60 g
    assert line.by_zone == (("DE", 4.5, 1.8), ("FR", 0.6, 0.06))
    settings = ghg.GhgSettings.from_dict({"market_instruments": [
        {"zone": "DE", "supplier_g_per_kwh": 200, "source": "DE supplier"},
        {"zone": "FR", "supplier_g_per_kwh": 50, "source": "FR supplier"}]})
    x = ghg.classify(line, settings)
    # 4.5 x 200 + 0.6 x 50 = 900 + 30 = 930 g
    assert x.market_kgco2e == pytest.approx(0.93)
    assert x.location_kgco2e == pytest.approx(1.86)


def test_report_json_and_html_show_the_split_and_each_lines_basis() -> None:
    from datetime import datetime, timezone

    from carbontrack.reports.build import Scope, build_report
    from carbontrack.reports.html import render
    from carbontrack.reports.sci import EmbodiedModel, EmbodiedSettings

    settings = ghg.GhgSettings.from_dict({"default": "own", "direct_factors": [
        {"zone": "DE", "g_per_kwh": 300, "source": "EM direct"}]})
    line = _own_line(end=datetime(2026, 11, 10, tzinfo=timezone.utc))
    report = build_report([line], Scope(), settings, EmbodiedModel(EmbodiedSettings(), {}),
                          clock=lambda: datetime(2026, 12, 1, tzinfo=timezone.utc))
    by_scope = report.to_json()["ghg"]["by_scope"]
    assert by_scope[ghg.SCOPE_3_CAT_3]["location_kgco2e"] == pytest.approx(0.44)
    assert report.to_json()["line_items"][0]["ghg_basis"].startswith("direct for Scope 2: DE 300 g/kWh (EM direct)")
    page = render(report)
    assert "direct for Scope 2: DE 300 g/kWh (EM direct)" in page and "Scope 3 Category 3" in page


def test_the_catalogue_has_no_source_with_both_bases_and_datasets_disagree() -> None:
    """What docs/methodology.md says about the packaged data, so the split never mixes them."""
    from carbontrack.core.types import Lifecycle
    from carbontrack.intensity.catalogue import Catalogue

    cat = Catalogue.load()
    for zone in cat.zones():
        bases: dict[str, set[Lifecycle]] = {}
        for ds, f in zip(zone.datasets, zone.factors, strict=True):
            bases.setdefault(ds, set()).add(f.basis.lifecycle)
        assert all(len(b) == 1 for b in bases.values()), zone.key
    fr = {ds: f for ds, f in zip(cat.lookup("FR").zone.datasets, cat.factors("FR"), strict=False)}
    # Ember 2024 lifecycle below Green Algorithms 2020 direct: subtracting would be negative
    assert fr["owid-ember-2025"].basis.lifecycle is Lifecycle.LIFECYCLE
    assert fr["green-algorithms-2022"].basis.lifecycle is Lifecycle.DIRECT
    assert round(fr["owid-ember-2025"].g_per_kwh, 1) == 44.2 < round(fr["green-algorithms-2022"].g_per_kwh, 1) == 51.3


def test_a_multi_zone_jobs_scope_follows_its_zones_when_they_agree() -> None:
    settings = ghg.GhgSettings.from_dict({"default": "cloud", "zones": {"DE": "own", "FR": "own", "PL": "cloud"}})
    assert settings.ownership(_own_line(grid_zone="DE,FR")) == ghg.OWN
    assert settings.ownership(_own_line(grid_zone="DE,PL")) == ghg.CLOUD  # they differ: the default
    assert settings.ownership(_own_line(grid_zone="DE,SE")) == ghg.CLOUD  # SE not set: the default
