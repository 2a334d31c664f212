"""core.units: the one formatter for figures a person reads."""

from __future__ import annotations

import pytest

from carbontrack.core.units import format_energy, format_mass, format_sig


@pytest.mark.parametrize(("grams", "text"), [
    (0.0, "0 gCO2e"),
    (7.777e-04, "0.778 mgCO2e"),  # the 7.777e-07 kgCO2e
    (0.5, "500 mgCO2e"),
    (1.0, "1.00 gCO2e"),
    (12.34, "12.3 gCO2e"),
    (999.6, "1.00 kgCO2e"),  # rounds up across the unit boundary: shown in the next unit
    (1234.5, "1.23 kgCO2e"),
    (3.4e6, "3.40 tCO2e"),
    (-2500.0, "-2.50 kgCO2e"),
    (4.2e-7, "0.000420 mgCO2e"),  # below the smallest unit: a plain decimal
])
def test_mass_unit_by_magnitude(grams: float, text: str) -> None:
    assert format_mass(grams) == text


@pytest.mark.parametrize(("joules", "text"), [
    (0.0, "0 J"),
    (0.5, "0.500 J"),
    (512.0, "512 J"),
    (3599.9, "1.00 Wh"),
    (7200.0, "2.00 Wh"),
    (1.44e6, "400 Wh"),
    (3.6e6 * 1234, "1.23 MWh"),
    (3.6e6 * 2.5, "2.50 kWh"),
])
def test_energy_unit_by_magnitude(joules: float, text: str) -> None:
    assert format_energy(joules) == text


def test_significant_figures_without_scientific_notation() -> None:
    assert [format_sig(x, 2) for x in (0.00012345, 9.96, 123456.0, 1e-12)] == [
        "0.00012", "10", "120000", "0.0000000000010"]
    assert format_mass(151.42, sig=4) == "151.4 gCO2e"
    assert format_mass(2.0, suffix="") == "2.00 g"
