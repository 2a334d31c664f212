"""Market-based factors (GHG Protocol Scope 2), always reported beside location-based.

The user supplies, per zone, what their contracts say: a supplier-specific rate,
a residual-mix rate, and the share of consumption covered by PPAs / RECs / GOs
(with the covered supply's own rate, 0 for wind or solar). The market-based
factor is then

    covered * covered_rate + (1 - covered) * uncovered_rate

where ``uncovered_rate`` follows the Scope 2 hierarchy: supplier rate, else
residual mix, else the location-based grid average (the hierarchy's last resort,
named in the factor's source because it counts renewables others have claimed).

:class:`MarketFactors` is deliberately *not* an ``IntensityLookup``: it cannot be
plugged in where the location-based factor belongs; :meth:`MarketFactors.dual`
returns both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.types import Accounting, Averaging, Basis, IntensityFactor
from .validate import MAX_PLAUSIBLE_G_PER_KWH


@dataclass(frozen=True)
class MarketInstrument:
    """Contractual data for one zone. Rates are gCO2e/kWh; ``covered_fraction`` is 0..1."""

    zone: str
    supplier_g_per_kwh: float | None = None
    residual_mix_g_per_kwh: float | None = None
    covered_fraction: float = 0.0  # share covered by PPAs / RECs / GOs
    covered_g_per_kwh: float = 0.0  # rate of the covered supply (0 for wind/solar)
    source: str = "user-supplied"  # contract, supplier disclosure, residual-mix publication
    year: int | None = None

    def __post_init__(self) -> None:
        if not self.zone.strip():
            raise ConfigError("market-based instrument without a zone; set \"zone\"")
        if not 0.0 <= self.covered_fraction <= 1.0:
            raise ConfigError(f"market-based covered_fraction for {self.zone} must be between 0 "
                              f"and 1, got {self.covered_fraction!r}")
        for name in ("supplier_g_per_kwh", "residual_mix_g_per_kwh", "covered_g_per_kwh"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= MAX_PLAUSIBLE_G_PER_KWH:
                raise ConfigError(f"market-based {name} for {self.zone} must be 0-"
                                  f"{MAX_PLAUSIBLE_G_PER_KWH:g} gCO2e/kWh, got {value!r}")


@dataclass(frozen=True)
class DualFactor:
    """Location-based always; market-based when the user supplied instruments."""

    location: IntensityFactor
    market: IntensityFactor | None


def market_factor(instrument: MarketInstrument, location: IntensityFactor) -> IntensityFactor:
    if instrument.supplier_g_per_kwh is not None:
        rest, rest_note = instrument.supplier_g_per_kwh, "supplier-specific rate"
    elif instrument.residual_mix_g_per_kwh is not None:
        rest, rest_note = instrument.residual_mix_g_per_kwh, "residual mix"
    else:
        rest, rest_note = location.g_per_kwh, "grid average (no supplier rate or residual mix)"
    covered = instrument.covered_fraction
    value = covered * instrument.covered_g_per_kwh + (1.0 - covered) * rest
    return IntensityFactor(
        zone=location.zone, g_per_kwh=value,
        source=(f"market-based: {covered:.0%} contractual instruments at "
                f"{instrument.covered_g_per_kwh:g} g/kWh, rest at {rest_note}; "
                f"{instrument.source}"),
        year=instrument.year, licence="user-supplied",
        basis=Basis(Averaging.AVERAGE, location.basis.lifecycle, Accounting.MARKET),
    )


class MarketFactors:
    """User-supplied instruments by zone key (the key as resolved, or its catalogue zone)."""

    def __init__(self, instruments: Iterable[MarketInstrument]) -> None:
        self._by_zone: dict[str, MarketInstrument] = {}
        for inst in instruments:
            key = inst.zone.strip().upper()
            if key in self._by_zone:
                raise ConfigError(f"two market-based entries for zone {inst.zone}; merge them")
            self._by_zone[key] = inst

    @classmethod
    def from_mapping(cls, data: Iterable[Mapping[str, Any]]) -> MarketFactors:
        fields = set(MarketInstrument.__dataclass_fields__)
        out = []
        for entry in data:
            unknown = set(entry) - fields
            if unknown:
                raise ConfigError(f"unknown market-based field(s) {sorted(unknown)}; "
                                  f"allowed: {sorted(fields)}")
            try:
                out.append(MarketInstrument(**entry))
            except TypeError as err:
                raise ConfigError(f"market-based entry {dict(entry)!r}: {err}") from None
        return cls(out)

    @classmethod
    def from_file(cls, path: Path) -> MarketFactors:
        """A JSON list of objects with MarketInstrument's fields."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"market-based factors file {path} does not exist") from None
        except ValueError as err:
            raise ConfigError(f"market-based factors file {path} is not valid JSON: {err}") from None
        if not isinstance(data, list):
            raise ConfigError(f"market-based factors file {path} must hold a JSON list")
        return cls.from_mapping(data)

    def __len__(self) -> int:
        return len(self._by_zone)

    def instrument(self, key: str, location: IntensityFactor) -> MarketInstrument | None:
        return self._by_zone.get(key.strip().upper()) or self._by_zone.get(location.zone.upper())

    def dual(self, key: str, location: IntensityFactor) -> DualFactor:
        """Location-based unchanged, with the market-based factor beside it when supplied."""
        inst = self.instrument(key, location)
        return DualFactor(location, market_factor(inst, location) if inst else None)
