"""Fill a line's factor year from the packaged grid catalogue.

The exporter labels its intensity series with the catalogue factor's ``source`` and
``basis`` but not its year, so the operator's annotation carries no year. When a line's zone
and source are exactly the catalogue's entry, that entry's year is the factor's year;
anything else (a live provider, several factors, an override) stays unknown rather than
guessed.
"""

from __future__ import annotations

from typing import Protocol

from carbontrack.core.errors import ConfigError
from carbontrack.core.types import IntensityFactor

from .model import LineItem


class FactorCatalogue(Protocol):
    def get(self, key: str) -> IntensityFactor: ...


class CatalogueYears:
    def __init__(self, catalogue: FactorCatalogue):
        self._catalogue = catalogue

    def year(self, zone: str, source: str) -> int | None:
        if not zone or not source or "," in zone:
            return None
        try:
            f = self._catalogue.get(zone)
        except ConfigError:  # UnknownZoneError: a zone the catalogue does not know
            return None
        return f.year if f.source == source else None

    def fill(self, line: LineItem) -> LineItem:
        if line.intensity_year is not None:
            return line
        year = self.year(line.grid_zone, line.intensity_source)
        return line if year is None else line.with_(intensity_year=year)
