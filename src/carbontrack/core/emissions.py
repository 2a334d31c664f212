"""Energy -> CO2e arithmetic. One place, so every part rounds and scales the same way."""

from __future__ import annotations

from .errors import ConfigError
from .types import JOULES_PER_KWH


def joules_to_kwh(joules: float) -> float:
    return joules / JOULES_PER_KWH


def co2e_grams(joules: float, g_per_kwh: float, pue: float) -> float:
    """Emissions of one interval: IT energy x facility overhead (PUE) x that interval's intensity."""
    return joules_to_kwh(joules) * pue * g_per_kwh


def validate_pue(pue: float) -> float:
    """PUE is facility energy / IT energy, so it is >= 1.0; reject anything else loudly."""
    if not (pue == pue) or pue < 1.0 or pue > 5.0:  # NaN check, then range
        raise ConfigError(f"invalid PUE {pue!r}: PUE must be a number between 1.0 and 5.0")
    return pue
