"""User overrides of location-based factors, visible as such.

For a grid the catalogue covers badly (an on-site plant, a national figure an
auditor prescribes), the user supplies the number and its provenance. The factor
returned says ``user override: <source>`` so no report can mistake it for a
catalogue value. Zones without an override go to the wrapped lookup unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..core.errors import ConfigError, UnknownZoneError
from ..core.types import Accounting, Averaging, Basis, IntensityFactor, IntensityLookup, Lifecycle
from .catalogue import Catalogue
from .validate import MalformedValue, check_intensity


@dataclass(frozen=True)
class ZoneOverride:
    zone: str
    g_per_kwh: float
    source: str  # who published the number, edition; required so reports can cite it
    year: int | None = None
    licence: str = "user-supplied"
    basis: Basis = field(default_factory=Basis)

    def __post_init__(self) -> None:
        if not self.zone.strip() or not self.source.strip():
            raise ConfigError("an intensity override needs a zone and a source (who published "
                              "the number)")
        try:
            check_intensity(self.g_per_kwh)
        except MalformedValue as err:
            raise ConfigError(f"intensity override for {self.zone}: {err}") from None


class OverrideLookup:
    """``IntensityLookup``: overrides first (by key as given or by catalogue zone), then ``base``."""

    def __init__(self, base: IntensityLookup, overrides: Iterable[ZoneOverride],
                 catalogue: Catalogue | None = None) -> None:
        self._base = base
        self._catalogue = catalogue
        self._by_zone: dict[str, ZoneOverride] = {}
        for item in overrides:
            key = item.zone.strip().upper()
            if key in self._by_zone:
                raise ConfigError(f"two intensity overrides for zone {item.zone}; keep one")
            self._by_zone[key] = item
            canonical = self._canonical(item.zone)
            if canonical is not None:  # "CAMX" also matches "US-EGRID-CAMX", "94103", ...
                self._by_zone.setdefault(canonical, item)

    @classmethod
    def from_file(cls, base: IntensityLookup, path: Path,
                  catalogue: Catalogue | None = None) -> OverrideLookup:
        """JSON list of {zone, g_per_kwh, source, year?, licence?, averaging?, lifecycle?}."""
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"intensity overrides file {path} does not exist") from None
        except ValueError as err:
            raise ConfigError(f"intensity overrides file {path} is not valid JSON: {err}") from None
        if not isinstance(rows, list):
            raise ConfigError(f"intensity overrides file {path} must hold a JSON list")
        items = []
        for row in rows:
            try:
                basis = Basis(Averaging(row.get("averaging", "average")),
                              Lifecycle(row.get("lifecycle", "lifecycle")), Accounting.LOCATION)
                items.append(ZoneOverride(str(row["zone"]), float(row["g_per_kwh"]),
                                          str(row["source"]), row.get("year"),
                                          str(row.get("licence", "user-supplied")), basis))
            except (KeyError, TypeError, ValueError) as err:
                raise ConfigError(f"bad intensity override {row!r} in {path}: {err}; need zone, "
                                  "g_per_kwh, source") from None
        return cls(base, items, catalogue)

    def _canonical(self, zone: str) -> str | None:
        if self._catalogue is None:
            return None
        try:
            return self._catalogue.lookup(zone).zone.key
        except UnknownZoneError:
            return None

    def _find(self, zone: str) -> ZoneOverride | None:
        hit = self._by_zone.get(zone.strip().upper())
        if hit is None:
            canonical = self._canonical(zone)
            hit = self._by_zone.get(canonical) if canonical else None
        return hit

    def intensity(self, zone: str, start: datetime, end: datetime) -> IntensityFactor:
        item = self._find(zone)
        if item is None:
            return self._base.intensity(zone, start, end)
        return IntensityFactor(zone=item.zone, g_per_kwh=float(item.g_per_kwh),
                               source=f"user override: {item.source}", year=item.year,
                               licence=item.licence, basis=item.basis)
