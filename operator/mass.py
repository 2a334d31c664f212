"""CO2e masses written by people ("800g", "250kg", "1.5t") <-> grams.

The grammar matches the CRD's CEL rule for ``spec.limit`` exactly, so a value the API
server accepts always parses here and vice versa.
"""

from __future__ import annotations

import math
import re

from carbontrack.core.errors import ConfigError

GRAMS_PER_UNIT: dict[str, float] = {"mg": 1e-3, "g": 1.0, "kg": 1e3, "t": 1e6}  # t = metric tonne

_MASS = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(mg|g|kg|t)$")


def parse_mass(text: str) -> float:
    """Grams in ``text``; raises ConfigError with the accepted form for anything else."""
    match = _MASS.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(
            f"invalid mass {text!r}: write a number and a unit mg, g, kg or t, "
            'e.g. "800g", "250kg" or "1.5t"'
        )
    grams = float(match.group(1)) * GRAMS_PER_UNIT[match.group(2)]
    if grams <= 0 or not math.isfinite(grams):
        raise ConfigError(f"invalid mass {text!r}: a limit must be greater than zero")
    return grams


def format_mass(grams: float) -> str:
    """Short human form for status and printer columns: 950g, 12.3kg, 1.25t (3 significant
    figures; the exact number is kept alongside in grams)."""
    if not math.isfinite(grams):
        raise ValueError(f"cannot format non-finite mass {grams!r}")
    sign = "-" if grams < 0 else ""
    g = abs(grams)
    for unit, scale in (("t", 1e6), ("kg", 1e3), ("g", 1.0)):
        if g >= scale:
            return f"{sign}{_sig3(g / scale)}{unit}"
    if g == 0:
        return "0g"
    return f"{sign}{_sig3(g * 1e3)}mg"


def _sig3(value: float) -> str:
    if value >= 1000:  # only tonnes get here: whole tonnes read better than 1.23e+03
        return str(round(value))
    return f"{value:.3g}"
