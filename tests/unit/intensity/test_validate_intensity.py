"""The build's gate for raw values: each failure mode named in PROVENANCE.md is refused."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from carbontrack.intensity.validate import MalformedValue, check_intensity


@pytest.mark.parametrize(
    ("raw", "kwargs", "reason"),
    [
        ("-12.5", {}, "negative"),
        ("n/a", {}, "non-numeric"),
        ("", {}, "empty"),
        ("nan", {}, "non-finite"),
        ("1676.0", {"note": "Sum of region group data centers within Asia"}, "sum of regions"),
        ("2805", {}, "above any real grid"),
        ("0.000311", {}, "unit mix-up"),  # t/kWh typed into a g/kWh column
        ("000077", {"unit": "t/kWh"}, "above any real grid"),  # lost its leading "0."
        ("0", {}, "not a grid average"),
        ("12", {"unit": "furlongs"}, "unknown unit"),
    ],
)
def test_malformed_values_are_refused(raw: str, kwargs: dict[str, str], reason: str) -> None:
    with pytest.raises(MalformedValue, match=reason):
        check_intensity(raw, **kwargs)


@pytest.mark.parametrize(
    ("raw", "unit", "expected"),
    [
        ("344.1", "g/kWh", 344.1),
        ("0.000311", "t/kWh", 311.0),
        ("429.983", "lb/MWh", 429.983 * 0.45359237),
        ("0.4", "kg/kWh", 400.0),
    ],
)
def test_units_convert_to_grams_per_kwh(raw: str, unit: str, expected: float) -> None:
    assert check_intensity(raw, unit=unit) == pytest.approx(expected)


def test_market_figures_may_be_zero_or_tiny() -> None:
    assert check_intensity("0", market=True) == 0.0
    assert check_intensity("0.055", market=True) == pytest.approx(0.055)
    with pytest.raises(MalformedValue, match="negative"):
        check_intensity("-1", market=True)


def test_the_two_malformed_azure_rows_in_the_raw_file_are_caught(raw: Path) -> None:
    """PROVENANCE.md: 'Finland Central ... 000077' and 'Germany West Central ... 000402'."""
    refused = {}
    with (raw / "ccf-coefficients/grid-emissions-factors-azure.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                check_intensity(row["CO2e (metric ton/kWh)"], unit="t/kWh")
            except MalformedValue as err:
                refused[row["Region"]] = str(err)
    assert set(refused) == {"Finland Central", "Germany West Central"}
