"""Market-based factors sit beside location-based ones and never replace them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.core.types import Accounting, IntensityLookup
from carbontrack.intensity.catalogue import Catalogue
from carbontrack.intensity.market import MarketFactors, MarketInstrument


def test_ppa_coverage_with_supplier_rate(catalogue: Catalogue) -> None:
    location = catalogue.get("DE")
    market = MarketFactors([MarketInstrument("DE", supplier_g_per_kwh=400.0, covered_fraction=0.75,
                                             source="PPA with WindCo 2024", year=2024)])
    dual = market.dual("DE", location)
    assert dual.location == location  # untouched
    assert dual.market is not None
    assert dual.market.g_per_kwh == pytest.approx(0.75 * 0 + 0.25 * 400.0)
    assert dual.market.basis.accounting is Accounting.MARKET
    assert dual.location.basis.accounting is Accounting.LOCATION
    assert "PPA with WindCo 2024" in dual.market.source and dual.market.year == 2024


def test_hierarchy_residual_mix_then_grid_average(catalogue: Catalogue) -> None:
    fr, pl = catalogue.get("FR"), catalogue.get("PL")
    market = MarketFactors.from_mapping([
        {"zone": "FR", "residual_mix_g_per_kwh": 60.0, "covered_fraction": 0.5},
        {"zone": "pl", "covered_fraction": 0.2, "covered_g_per_kwh": 12.0},
    ])
    dual_fr = market.dual("FR", fr)
    assert dual_fr.market is not None
    assert dual_fr.market.g_per_kwh == pytest.approx(30.0)
    assert "residual mix" in dual_fr.market.source
    dual_pl = market.dual("PL", pl)
    assert dual_pl.market is not None
    assert dual_pl.market.g_per_kwh == pytest.approx(0.2 * 12.0 + 0.8 * pl.g_per_kwh)
    assert "grid average" in dual_pl.market.source


def test_lookup_by_cloud_key_or_resolved_zone(catalogue: Catalogue) -> None:
    market = MarketFactors([MarketInstrument("IE", covered_fraction=1.0)])
    dual = market.dual("aws:eu-west-1", catalogue.get("aws:eu-west-1"))
    assert dual.market is not None and dual.market.g_per_kwh == 0.0
    assert market.dual("DE", catalogue.get("DE")).market is None  # nothing supplied: none


def test_market_factors_cannot_stand_in_for_location(catalogue: Catalogue) -> None:
    assert not isinstance(MarketFactors([]), IntensityLookup)


@pytest.mark.parametrize(
    ("entry", "message"),
    [({"zone": "DE", "covered_fraction": 1.5}, "between 0 and 1"),
     ({"zone": "DE", "supplier_g_per_kwh": -3}, "must be 0-1500"),
     ({"zone": "DE", "ppa": 0.5}, "unknown market-based field"),
     ({"zone": " "}, "without a zone")],
)
def test_bad_input_is_one_clear_line(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MarketFactors.from_mapping([entry])


def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "market.json"
    path.write_text(json.dumps([{"zone": "DE", "supplier_g_per_kwh": 100}]))
    inst = MarketFactors.from_file(path)
    assert inst.dual("DE", Catalogue.load().get("DE")).market is not None
    path.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        MarketFactors.from_file(path)
    with pytest.raises(ConfigError, match="does not exist"):
        MarketFactors.from_file(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="two market-based entries"):
        MarketFactors.from_mapping([{"zone": "DE"}, {"zone": "de"}])
