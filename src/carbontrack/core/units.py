"""One formatter for figures a person reads: mass in mg/g/kg/t, energy in J/Wh/kWh/MWh.

The unit is chosen by magnitude so the number shown is between 1 and 1000 (below the
smallest unit: a plain decimal, never ``7.777e-07``), with three significant figures by
default. Machine outputs (CSV, JSON, metrics) keep their fixed units and never call this.
"""

from __future__ import annotations

import math

# (symbol, size in the base unit), largest first. Base units: grams and joules.
MASS_UNITS = (("t", 1e6), ("kg", 1e3), ("g", 1.0), ("mg", 1e-3))
ENERGY_UNITS = (("MWh", 3.6e9), ("kWh", 3.6e6), ("Wh", 3.6e3), ("J", 1.0))


def format_sig(x: float, sig: int = 3) -> str:
    """``x`` to ``sig`` significant figures as a plain decimal (0.000778, 12.3, 1230)."""
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    decimals = sig - 1 - math.floor(math.log10(abs(x)))
    rounded = round(x, decimals)
    if rounded == 0:
        return "0"
    # rounding can carry into one more digit (9.996 -> 10.0): recount the decimals
    decimals = max(0, sig - 1 - math.floor(math.log10(abs(rounded))))
    return f"{rounded:.{decimals}f}"


def _scaled(value: float, units: tuple[tuple[str, float], ...], sig: int, zero: str) -> tuple[str, str]:
    if not math.isfinite(value) or value == 0:
        return format_sig(value, sig), zero
    for i, (symbol, size) in enumerate(units):
        if abs(value) >= size or i == len(units) - 1:
            text = format_sig(value / size, sig)
            # 999.6 g rounds to "1000": show it as 1.00 kg instead
            if i > 0 and abs(float(text)) * size >= units[i - 1][1]:
                return format_sig(value / units[i - 1][1], sig), units[i - 1][0]
            return text, symbol
    raise AssertionError("unreachable: the last unit always matches")


def format_mass(grams: float, suffix: str = "CO2e", sig: int = 3) -> str:
    """``grams`` as "778 mgCO2e", "12.3 gCO2e", "1.20 kgCO2e", "3.40 tCO2e"."""
    number, symbol = _scaled(grams, MASS_UNITS, sig, "g")
    return f"{number} {symbol}{suffix}"


def format_energy(joules: float, sig: int = 3) -> str:
    """``joules`` as "512 J", "1.20 Wh", "3.40 kWh", "2.10 MWh"."""
    number, symbol = _scaled(joules, ENERGY_UNITS, sig, "J")
    return f"{number} {symbol}"
