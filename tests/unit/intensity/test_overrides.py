"""User overrides replace a zone's factor visibly; other zones are untouched."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.core.types import IntensityLookup, Lifecycle
from carbontrack.intensity.catalogue import Catalogue
from carbontrack.intensity.overrides import OverrideLookup, ZoneOverride

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
T1 = datetime(2025, 1, 1, 1, tzinfo=timezone.utc)


def test_override_by_zone_and_by_cloud_key(catalogue: Catalogue) -> None:
    lookup = OverrideLookup(catalogue, [ZoneOverride("IE", 250.0, "SEAI 2024 national factor",
                                                     2024)], catalogue)
    assert isinstance(lookup, IntensityLookup)
    for key in ("IE", "ie", "aws:eu-west-1", "IRL"):
        factor = lookup.intensity(key, T0, T1)
        assert (factor.g_per_kwh, factor.year) == (250.0, 2024)
        assert factor.source == "user override: SEAI 2024 national factor"
    assert lookup.intensity("FR", T0, T1) == catalogue.get("FR")


def test_from_file(tmp_path: Path, catalogue: Catalogue) -> None:
    path = tmp_path / "overrides.json"
    path.write_text(json.dumps([{"zone": "CAMX", "g_per_kwh": 190.5, "source": "CARB 2024",
                                 "lifecycle": "direct"}]))
    factor = OverrideLookup.from_file(catalogue, path, catalogue).intensity("94103", T0, T1)
    assert factor.g_per_kwh == 190.5 and factor.basis.lifecycle is Lifecycle.DIRECT
    path.write_text(json.dumps([{"zone": "CAMX", "g_per_kwh": 190.5}]))
    with pytest.raises(ConfigError, match="need zone, g_per_kwh, source"):
        OverrideLookup.from_file(catalogue, path)


@pytest.mark.parametrize(
    ("value", "source", "message"),
    [(-1.0, "x", "negative"), (5000.0, "x", "above any real grid"), (100.0, " ", "a source")],
)
def test_bad_overrides_are_refused(value: float, source: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ZoneOverride("DE", value, source)
