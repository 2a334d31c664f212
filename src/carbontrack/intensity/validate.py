"""Checks that a raw source value is a plausible grid intensity before it ships.

Used by ``scripts/build_catalogue.py``: every number read from a raw file goes
through :func:`check_intensity`, and anything that fails is *rejected* (listed in
the catalogue's ``rejected`` table with the reason) instead of being packaged.
The raw notes (PROVENANCE.md) list the failure modes seen in the wild: negative
or non-numeric cells, multi-region rows that are *sums* of regions, and unit
mix-ups (t/kWh cells that lost their leading ``0.``, lb/MWh vs g/kWh).
"""

from __future__ import annotations

import math

# The dirtiest grids in any source here are below 1,100 g/kWh (Ember lifecycle,
# Botswana/Kosovo class). 1,500 leaves headroom for small island grids while still
# catching sums of regions (CCF "asia" = 1,676) and unit mix-ups.
MAX_PLAUSIBLE_G_PER_KWH = 1500.0
# Below 1 g/kWh a *grid average* means a unit mix-up (kg or t per kWh typed into a
# g/kWh column) or a rounding artefact; the cleanest grids (hydro/nuclear) are ~2-30.
MIN_PLAUSIBLE_G_PER_KWH = 1.0

UNIT_SCALE_TO_G_PER_KWH: dict[str, float] = {
    "g/kWh": 1.0,
    "kg/MWh": 1.0,
    "t/kWh": 1e6,
    "kg/kWh": 1e3,
    "lb/MWh": 0.45359237,  # 1 lb = 0.45359237 kg (exact, international pound)
}


class MalformedValue(ValueError):
    """A raw cell that must not ship; ``str()`` is the one-line reason."""


def check_intensity(
    raw: str | float | int | None,
    *,
    unit: str = "g/kWh",
    market: bool = False,
    note: str = "",
) -> float:
    """Parse ``raw`` (in ``unit``) and return gCO2e/kWh, or raise :class:`MalformedValue`.

    ``market`` is for market-based figures: contracts for carbon-free supply make
    0 or a few g/kWh legitimate, whereas a location-based grid average below
    1 g/kWh is a unit mix-up. ``note`` is the
    source row's comment: CCF marks multi-region rows "Sum of ...".
    """
    if unit not in UNIT_SCALE_TO_G_PER_KWH:
        raise MalformedValue(f"unknown unit {unit!r}; known: {sorted(UNIT_SCALE_TO_G_PER_KWH)}")
    if "sum of" in note.lower():
        raise MalformedValue(f"sum of regions, not an intensity ({note.strip()})")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise MalformedValue("empty cell")
    if isinstance(raw, bool):
        raise MalformedValue(f"non-numeric value {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise MalformedValue(f"non-numeric value {raw!r}") from None
    if math.isnan(value) or math.isinf(value):
        raise MalformedValue(f"non-finite value {raw!r}")
    if value < 0:
        raise MalformedValue(f"negative intensity {raw!r}")
    g = value * UNIT_SCALE_TO_G_PER_KWH[unit]
    if g == 0 and not market:
        raise MalformedValue("0 g/kWh is not a grid average (missing data coded as 0)")
    if g > MAX_PLAUSIBLE_G_PER_KWH:
        raise MalformedValue(
            f"{raw!r} {unit} = {g:g} g/kWh is above any real grid "
            f"(> {MAX_PLAUSIBLE_G_PER_KWH:g}): a sum of regions or a unit mix-up"
        )
    if g < MIN_PLAUSIBLE_G_PER_KWH and not market:
        raise MalformedValue(
            f"{raw!r} {unit} = {g:g} g/kWh is below any real grid average "
            f"(< {MIN_PLAUSIBLE_G_PER_KWH:g}): probably a unit mix-up (kg or t per kWh)"
        )
    return g
