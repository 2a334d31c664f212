"""Per-interval emissions: each interval's energy x that interval's grid intensity x PUE.

Never total energy x final intensity (docs/exporter.md "Attribution"): the exporter asks the intensity lookup
for every collection interval, so a time-resolved provider gives each interval its own factor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone

from carbontrack.core.emissions import co2e_grams, validate_pue
from carbontrack.core.types import IntensityFactor, IntensityLookup


@dataclass(frozen=True)
class IntervalRate:
    """Grams of CO2e per joule of IT energy for one interval (PUE included).

    ``factor`` is None (and ``error`` says why) when no intensity is known: that interval's
    energy is counted but its emissions are not, and the intensity health metric goes to 0.
    """

    g_per_joule: float | None
    factor: IntensityFactor | None
    error: str = ""


class EmissionsRates:
    """Looks up the node zone's intensity per interval. ``lookup`` None means no zone set.

    ``provider`` names the selected intensity provider (``static`` or a live API: see
    carbontrack.intensity.selection); ``unresolved`` says why no zone was found, if so.
    ``zone_label`` is the catalogue zone the key resolved to: every factor is labelled with it,
    so the metric's ``zone`` stays the same whether a live provider (which names the key it was
    asked, ``aws:us-east-1``) or the static fallback (``US-EGRID-SRVC``) gave the value.
    """

    def __init__(self, lookup: IntensityLookup | None, zone: str | None, pue: float, *,
                 provider: str = "static", unresolved: str = "",
                 zone_label: str | None = None) -> None:
        self.lookup = lookup
        self.zone = zone
        self.zone_label = zone_label
        self.pue = validate_pue(pue)
        self.provider = provider
        self.unresolved = unresolved

    def rate(self, start_unix: float, end_unix: float) -> IntervalRate:
        if self.lookup is None or not self.zone:
            return IntervalRate(None, None, self.unresolved or
                                "no grid zone configured: pass --zone Z (or --provider P "
                                "--region R)")
        # a wall clock stepped back by NTP gives end < start: look up the instant at end
        start = datetime.fromtimestamp(min(start_unix, end_unix), tz=timezone.utc)
        end = datetime.fromtimestamp(end_unix, tz=timezone.utc)
        try:
            factor = self.lookup.intensity(self.zone, start, end)
        except Exception as err:  # a provider failure must not stop energy accounting
            return IntervalRate(None, None, f"intensity lookup for {self.zone} failed: {err}")
        if self.zone_label and factor.zone != self.zone_label:
            factor = replace(factor, zone=self.zone_label)
        return IntervalRate(co2e_grams(1.0, factor.g_per_kwh, self.pue), factor)
