"""GHG Protocol framing: location- vs market-based, and Scope 2 vs Scope 3 Category 1.

Electricity a company buys for its *own* data centre is Scope 2. Compute bought from a
cloud provider is a purchased service: Scope 3 Category 1 ("purchased goods and
services") for the customer, while the provider reports the electricity as its Scope 2.
Which applies is set per node pool or grid zone (node pool first), with a default.

Market-based figures need contractual instruments (PPAs, certificates, supplier-specific
or residual-mix factors) that only the reporting company knows; they are configured per
zone in the same form as the tracker's (``carbontrack.intensity.market.MarketInstrument``)
and combined by the same ``market_factor`` rule. Without one, the GHG Protocol Scope 2
Guidance falls back to the grid-average factor, and the line says so in ``market_source``.
A Job on nodes in several zones gets each zone's instrument applied to that zone's energy.

Scope 2 (own data centres) takes the combustion-only part of a lifecycle factor; the upstream
part is Scope 3 Category 3, and marginal factors are refused (``ghg_basis``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbontrack.core.errors import ConfigError
from carbontrack.core.types import IntensityFactor
from carbontrack.intensity.market import MarketFactors, market_factor

from . import ghg_basis
from .ghg_basis import DirectFactors, DirectLookup, no_direct_factors
from .model import LineItem

OWN = "own"
CLOUD = "cloud"
SCOPE_2 = "Scope 2"
SCOPE_3_CAT_1 = "Scope 3 Category 1"
SCOPE_3_CAT_3 = (
    "Scope 3 Category 3 (fuel- and energy-related activities: upstream of purchased electricity, "
    "own data centre)"
)
SCOPE_TEXT = {
    OWN: f"{SCOPE_2} (purchased electricity, own data centre)",
    CLOUD: f"{SCOPE_3_CAT_1} (purchased goods and services: cloud compute)",
}
NO_INSTRUMENT = (
    "no contractual instrument configured for zone {zone}: grid-average (location) factor "
    "used, as the GHG Protocol Scope 2 Guidance hierarchy allows when no residual mix is known"
)


@dataclass(frozen=True)
class GhgSettings:
    """Per-report GHG settings; loaded from the ``ghg`` block of the report config file."""

    default: str = CLOUD
    by_node_pool: Mapping[str, str] = field(default_factory=dict)
    by_zone: Mapping[str, str] = field(default_factory=dict)
    market: MarketFactors = field(default_factory=lambda: MarketFactors(()))
    # zone -> direct-combustion factor (ghg.direct_factors in the config); none by default
    direct: DirectLookup = no_direct_factors

    @staticmethod
    def from_dict(doc: Mapping[str, Any]) -> GhgSettings:
        def owner(v: Any, where: str) -> str:
            if v not in (OWN, CLOUD):
                raise ConfigError(f"ghg.{where}: {v!r} must be {OWN!r} or {CLOUD!r}")
            return str(v)

        instruments = doc.get("market_instruments") or []
        if not isinstance(instruments, list):
            raise ConfigError("ghg.market_instruments must be a list of {\"zone\": ..., ...} objects")
        market = MarketFactors.from_mapping(instruments)
        return GhgSettings(
            default=owner(doc.get("default", CLOUD), "default"),
            by_node_pool={k: owner(v, f"node_pools.{k}") for k, v in (doc.get("node_pools") or {}).items()},
            by_zone={k: owner(v, f"zones.{k}") for k, v in (doc.get("zones") or {}).items()},
            market=market,
            direct=DirectFactors.from_list(doc.get("direct_factors") or []),
        )

    @staticmethod
    def load(path: Path) -> GhgSettings:
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read report config {path}: {err}") from None
        return GhgSettings.from_dict(doc.get("ghg") or {})

    def ownership(self, line: LineItem) -> str:
        if line.node_pool and line.node_pool in self.by_node_pool:
            return self.by_node_pool[line.node_pool]
        if line.grid_zone in self.by_zone:
            return self.by_zone[line.grid_zone]
        # a multi-zone Job ("DE,FR"): its zones' setting when they all have the same one
        owners = {self.by_zone.get(z) for z in line.grid_zone.split(",")} if "," in line.grid_zone else set()
        if len(owners) == 1 and None not in owners:
            return str(owners.pop())
        return self.default


def classify(line: LineItem, settings: GhgSettings) -> LineItem:
    """Set the GHG scope, the basis of its figures and the market-based figure of one line."""
    owner = settings.ownership(line)
    if owner == OWN:
        ghg_basis.refuse_marginal(line)
        split = ghg_basis.split(line, settings.direct)
    else:
        split = ghg_basis.Split(
            f"whole location figure in {SCOPE_3_CAT_1} ({line.intensity_basis or 'basis not recorded'})"
        )
    parts = line.by_zone or ((line.grid_zone, line.facility_energy_kwh, line.location_kgco2e),)
    if len(parts) == 1:  # one zone: the line's own figures (the per-zone split is rounded to 6 s.f.)
        parts = ((parts[0][0], line.facility_energy_kwh, line.location_kgco2e),)
    market_kg, sources = 0.0, []
    for zone, kwh, loc_kg in parts:
        # the fallback is the zone's Scope 2 location figure: direct where it was split
        fallback_kg = split.direct_by_zone.get(zone, loc_kg)
        location = IntensityFactor(
            zone=zone, g_per_kwh=fallback_kg * 1000.0 / kwh if kwh > 0 else line.intensity_g_per_kwh,
            source=line.intensity_source, year=line.intensity_year,
        )
        inst = settings.market.instrument(zone, location) if zone and "," not in zone else None
        if inst is not None:
            m = market_factor(inst, location)
            market_kg += kwh * m.g_per_kwh / 1000.0
            sources.append(m.source)
        else:
            market_kg += fallback_kg
            sources.append(NO_INSTRUMENT.format(zone=zone or "?"))
    if len(parts) > 1:
        sources = [f"{z}: {s}" for (z, _, _), s in zip(parts, sources, strict=True)]
    facility = line.facility_energy_kwh
    return line.with_(
        ghg_scope=SCOPE_TEXT[owner],
        ghg_basis=split.basis,
        direct_kgco2e=split.direct_kg,
        upstream_kgco2e=split.upstream_kg,
        market_g_per_kwh=market_kg * 1000.0 / facility if facility > 0 else line.intensity_g_per_kwh,
        market_source=" | ".join(sources),
        market_kgco2e=market_kg,
    )


def summary(lines: Sequence[LineItem]) -> dict[str, dict[str, float]]:
    """Location- and market-based kgCO2e side by side, per scope. An own line's Scope 2
    location figure is its direct part where split; the upstream part is Scope 3 Cat. 3."""
    out: dict[str, dict[str, float]] = {}

    def add(scope: str, location: float, market: float, kwh: float) -> None:
        s = out.setdefault(scope, {"location_kgco2e": 0.0, "market_kgco2e": 0.0, "facility_energy_kwh": 0.0})
        s["location_kgco2e"] += location
        s["market_kgco2e"] += market
        s["facility_energy_kwh"] += kwh

    for x in lines:
        market = x.market_kgco2e if x.market_kgco2e is not None else x.location_kgco2e
        own = x.ghg_scope == SCOPE_TEXT[OWN]
        location = x.direct_kgco2e if own and x.direct_kgco2e is not None else x.location_kgco2e
        add(x.ghg_scope or "unclassified", location, market, x.facility_energy_kwh)
        if own and x.upstream_kgco2e is not None:
            # upstream of the electricity whatever the contract: the same in both columns
            add(SCOPE_3_CAT_3, x.upstream_kgco2e, x.upstream_kgco2e, 0.0)
    return dict(sorted(out.items()))
