"""`carbontrack report --market-factors FILE` (or $CARBONTRACK_MARKET_FACTORS): the same
instruments file, read by the same selection code, as `carbontrack run --market-factors`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.core.types import IntensityFactor
from carbontrack.reports.cli import with_market_file
from carbontrack.reports.ghg import GhgSettings

DE = IntensityFactor("DE", 300.0, "test grid")


def instruments(tmp_path: Path, rate: float) -> Path:
    path = tmp_path / f"market-{rate:g}.json"
    path.write_text(json.dumps([{"zone": "DE", "supplier_g_per_kwh": rate,
                                 "source": "supplier disclosure 2025"}]))
    return path


def test_flag_then_environment_then_nothing(tmp_path: Path) -> None:
    flag, env = instruments(tmp_path, 50.0), instruments(tmp_path, 80.0)
    base = GhgSettings.from_dict({})
    by_flag = with_market_file(base, flag, {"CARBONTRACK_MARKET_FACTORS": str(env)})
    inst = by_flag.market.instrument("DE", DE)
    assert inst is not None and inst.supplier_g_per_kwh == 50.0
    by_env = with_market_file(base, None, {"CARBONTRACK_MARKET_FACTORS": str(env)})
    inst = by_env.market.instrument("DE", DE)
    assert inst is not None and inst.supplier_g_per_kwh == 80.0
    assert with_market_file(base, None, {}) is base


def test_instruments_in_the_config_and_a_file_are_refused(tmp_path: Path) -> None:
    config = GhgSettings.from_dict({"market_instruments": [
        {"zone": "FR", "residual_mix_g_per_kwh": 60.0, "source": "AIB 2024"}]})
    with pytest.raises(ConfigError, match="given twice"):
        with_market_file(config, instruments(tmp_path, 50.0), {})
    with pytest.raises(ConfigError, match="does not exist"):
        with_market_file(GhgSettings.from_dict({}), tmp_path / "missing.json", {})
