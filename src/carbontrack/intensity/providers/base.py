"""What every live provider shares: the static fallback and its visibility.

A subclass implements ``_live(zone, start, end)``. Whatever goes wrong there -
network, status, malformed body, no data for the interval, a zone the provider
does not cover - :meth:`LiveProvider.intensity` returns the catalogue's static
factor with ``fallback_reason`` set and logs a warning. It never returns a
default the user did not ask for: if the catalogue does not know the zone
either, it raises ``UnknownZoneError`` carrying both reasons.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone

from ...core.errors import CarbonTrackError, ConfigError, UnknownZoneError
from ...core.redact import redact
from ...core.types import IntensityFactor
from ..catalogue import Catalogue
from ..forecast import Forecast, ForecastUnusable
from ..series import as_utc

log = logging.getLogger("carbontrack.intensity")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class NoData(CarbonTrackError):
    """The provider answered but had no usable point for the interval or zone."""


def _plausible(factor: IntensityFactor) -> IntensityFactor:
    """A live factor is a finite, non-negative number, or a failure (then the static one):
    JSON allows NaN and Infinity, and a huge value overflows the time-weighted mean."""
    if not math.isfinite(factor.g_per_kwh) or factor.g_per_kwh < 0:
        raise NoData(f"implausible intensity {factor.g_per_kwh!r} g/kWh")
    return factor


class LiveProvider(ABC):
    """``IntensityLookup`` over a live API with a visible static fallback."""

    name = "live"

    def __init__(self, catalogue: Catalogue, *, now: Callable[[], datetime] = utc_now) -> None:
        self.catalogue = catalogue
        self._now = now
        self.fallbacks = 0  # how many answers came from the catalogue instead (for metrics)

    def intensity(self, zone: str, start: datetime, end: datetime) -> IntensityFactor:
        start, end = as_utc(start), as_utc(end)
        if end < start:
            raise ConfigError(f"interval end {end.isoformat()} is before start {start.isoformat()}")
        try:
            return _plausible(self._live(zone, start, end))
        except CarbonTrackError as err:
            reason = f"{self.name}: {err}"
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError, RecursionError) as err:
            # valid JSON of the wrong shape (a field missing, a string where a list was), or
            # numbers and times past what Python can add (a year-9999 point plus its hour)
            reason = f"{self.name}: unexpected response ({type(err).__name__}: {err})"
        # the reason is logged and kept in the factor (reports, records): no credentials in it
        reason = redact(reason, self._secrets())
        try:
            static = self.catalogue.intensity(zone, start, end)
        except UnknownZoneError as err:
            raise UnknownZoneError(f"{reason}; static fallback failed too: {err}") from None
        self.fallbacks += 1
        log.warning("grid intensity for %s from the static catalogue (%s)", zone, reason)
        return replace(static, fallback_reason=reason)

    def _secrets(self) -> tuple[str, ...]:
        """The provider's credentials, redacted from fallback reasons."""
        return ()

    def forecast(self, zone: str) -> Forecast:
        """The provider's forecast for ``zone`` from now on. Any failure (HTTP status,
        rate limit, malformed or wrongly shaped body, a forecast in the past) raises
        :class:`ForecastUnusable` with the reason, credentials redacted; there is no
        static stand-in for a forecast."""
        try:
            return self._forecast(zone, self._now())
        except ForecastUnusable as err:
            reason = str(err)
        except CarbonTrackError as err:
            reason = f"{self.name} forecast: {err}"
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError,
                RecursionError) as err:
            reason = f"{self.name} forecast: unexpected response ({type(err).__name__}: {err})"
        raise ForecastUnusable(redact(reason, self._secrets())) from None

    def _forecast(self, zone: str, now: datetime) -> Forecast:
        raise ForecastUnusable(f"{self.name} publishes no forecast")

    @abstractmethod
    def _live(self, zone: str, start: datetime, end: datetime) -> IntensityFactor:
        """The provider's factor for the interval; raise CarbonTrackError on any failure."""
