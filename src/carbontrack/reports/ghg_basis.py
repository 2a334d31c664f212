"""Which factor basis a line's GHG figures use: the Scope 2 / Scope 3 Category 3 split.

GHG Protocol Scope 2 counts the emissions of generating the electricity a company buys:
combustion at the plant ("direct"). Lifecycle factors (Ember, Electricity Maps) add the
upstream emissions of fuels and plants, which belong in Scope 3 Category 3 (fuel- and
energy-related activities). Marginal rates (WattTime MOER) answer "what would one more kWh
emit" and are not an inventory figure at all.

So for electricity in Scope 2 a line's location figure is split when its factor is lifecycle
and a direct-combustion, grid-average factor from the same source is configured for each of
its zones (``DirectFactors``): Scope 2 = facility kWh x direct factor, Scope 3 Category 3 = the
accounted lifecycle figure - that. Without a direct factor the lifecycle figure stays whole
and the line says so. ``basis`` always says which was used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from carbontrack.core.errors import ConfigError
from carbontrack.core.types import Accounting, Averaging, Basis, IntensityFactor, Lifecycle
from carbontrack.intensity.validate import MAX_PLAUSIBLE_G_PER_KWH

from .model import LineItem

DirectLookup = Callable[[str], "IntensityFactor | None"]
DIRECT_AVERAGE = Basis(Averaging.AVERAGE, Lifecycle.DIRECT, Accounting.LOCATION)


def no_direct_factors(_zone: str) -> IntensityFactor | None:
    return None


class DirectFactors:
    """Direct-combustion factors by zone from the report config (``ghg.direct_factors``:
    ``[{"zone", "g_per_kwh", "source", "year"?}]``), each with the source it came from.

    Only the source of a line's lifecycle factor can say what part of it is combustion: the
    packaged catalogue has no dataset with both for a zone (Ember and Electricity Maps are
    lifecycle; eGRID, Green Algorithms and CCF direct, of other years), and mixing datasets
    gives nonsense (FR: Ember 2024 lifecycle 44.2 g/kWh < Green Algorithms 2020 direct
    51.3 g/kWh). So the split uses what the user takes from the same provider (Electricity
    Maps' ``emissionFactorType=direct``, a national inventory), never a catalogue guess."""

    def __init__(self, factors: Mapping[str, IntensityFactor]):
        self._by_zone = {z.strip().upper(): f for z, f in factors.items()}

    @staticmethod
    def from_list(doc: Any) -> DirectFactors:
        if not isinstance(doc, list):
            raise ConfigError('ghg.direct_factors must be a list of {"zone", "g_per_kwh", "source"} objects')
        out: dict[str, IntensityFactor] = {}
        for i, row in enumerate(doc):
            try:
                zone, g, source = str(row["zone"]), float(row["g_per_kwh"]), str(row["source"]).strip()
                year = int(row["year"]) if row.get("year") is not None else None
            except (KeyError, TypeError, ValueError, AttributeError):
                raise ConfigError(f"ghg.direct_factors[{i}]: give zone, g_per_kwh, source [, year]") from None
            if not source or not zone.strip() or not 0.0 <= g <= MAX_PLAUSIBLE_G_PER_KWH:
                raise ConfigError(f"ghg.direct_factors[{i}]: zone and source must be set and g_per_kwh "
                                  f"0-{MAX_PLAUSIBLE_G_PER_KWH:g}")
            if zone.strip().upper() in out:
                raise ConfigError(f"ghg.direct_factors: two entries for zone {zone}")
            out[zone.strip().upper()] = IntensityFactor(zone=zone, g_per_kwh=g, source=source, year=year,
                                                        licence="user-supplied", basis=DIRECT_AVERAGE)
        return DirectFactors(out)

    def __call__(self, zone: str) -> IntensityFactor | None:
        return self._by_zone.get(zone.strip().upper())


@dataclass(frozen=True)
class Split:
    basis: str
    direct_kg: float | None = None  # Scope 2 when own; None: not split
    upstream_kg: float | None = None  # Scope 3 Category 3 when own
    direct_by_zone: dict[str, float] = field(default_factory=dict)


def bases(line: LineItem) -> set[tuple[str, str]]:
    """(averaging, lifecycle) of each factor basis on the line (``average/lifecycle/...``)."""
    out = set()
    for part in line.intensity_basis.split(";"):
        words = part.strip().split("/")
        if len(words) >= 2:
            out.add((words[0], words[1]))
    return out


def refuse_marginal(line: LineItem) -> None:
    if any(avg == Averaging.MARGINAL.value for avg, _ in bases(line)):
        where = f"{line.namespace}/{line.job}" if line.namespace else line.job or line.key
        raise ConfigError(
            f"{where}: its grid factor is marginal ({line.intensity_basis}; {line.intensity_source}) "
            f"and its zone {line.grid_zone or '?'} is reported as Scope 2 (own data centre). A marginal "
            "rate (e.g. WattTime MOER) suits load shifting, not a GHG inventory: account this zone "
            "with a grid-average factor (the catalogue, Electricity Maps, GB), or set it to "
            "\"cloud\" in the report config's ghg block"
        )


def split(line: LineItem, direct: DirectLookup) -> Split:
    """The Scope 2 (direct) and Scope 3 Category 3 (upstream) parts of a line's figure."""
    lifecycles = {lc for _, lc in bases(line)}
    if not lifecycles:
        return Split("unknown: the factor's basis is not recorded; the location figure is used whole")
    if lifecycles == {Lifecycle.DIRECT.value}:
        kg = line.location_kgco2e
        return Split("direct (combustion only), as accounted", kg, None, _zone_kg(line))
    if lifecycles != {Lifecycle.LIFECYCLE.value}:
        return Split(f"mixed direct and lifecycle factors ({line.intensity_basis}): the location "
                     "figure is used whole, upstream not separated")
    parts = line.by_zone or ((line.grid_zone, line.facility_energy_kwh, line.location_kgco2e),)
    found = {z: direct(z) for z, _, _ in parts if z and "," not in z}
    missing = sorted({z for z, _, _ in parts} - {z for z, f in found.items() if f is not None})
    if missing:
        return Split(
            f"lifecycle (includes upstream): no direct-combustion factor from its source configured "
            f"(ghg.direct_factors) for zone(s) "
            f"{', '.join(m or '?' for m in missing)}, so Scope 2 keeps the lifecycle figure and "
            "upstream is not separated into Scope 3 Category 3"
        )
    by_zone: dict[str, float] = {}
    texts = []
    for z, kwh, _ in parts:
        f = found[z]
        assert f is not None
        by_zone[z] = by_zone.get(z, 0.0) + kwh * f.g_per_kwh / 1000.0
        texts.append(f"{z} {f.g_per_kwh:g} g/kWh ({f.source}{', ' + str(f.year) if f.year else ''})")
    direct_kg = sum(by_zone.values())
    upstream = line.location_kgco2e - direct_kg
    note = ""
    if upstream < 0:  # different datasets/years: never a negative upstream
        note = f"; the direct factor exceeds the lifecycle one by {-upstream:.6g} kg: upstream set to 0"
        upstream = 0.0
    return Split(
        "direct for Scope 2: " + "; ".join(texts)
        + "; upstream (lifecycle - direct) in Scope 3 Category 3" + note,
        direct_kg, upstream, by_zone,
    )


def _zone_kg(line: LineItem) -> dict[str, float]:
    if line.by_zone:
        return {z: kg for z, _, kg in line.by_zone}
    return {line.grid_zone: line.location_kgco2e}
