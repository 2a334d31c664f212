"""Factor and zone rendering shared by the ``zones`` and ``intensity`` commands."""

from __future__ import annotations

from typing import Any

from ..core.types import IntensityFactor
from .catalogue import Catalogue, CloudRegion, ZoneEntry


def factor_json(factor: IntensityFactor) -> dict[str, Any]:
    return {
        "zone": factor.zone,
        "g_per_kwh": factor.g_per_kwh,
        "year": factor.year,
        "source": factor.source,
        "dataset": factor.source.split(":", 1)[0],
        "licence": factor.licence,
        "basis": {
            "averaging": factor.basis.averaging.value,
            "lifecycle": factor.basis.lifecycle.value,
            "accounting": factor.basis.accounting.value,
        },
        "fallback_reason": factor.fallback_reason,
    }


def zone_json(catalogue: Catalogue, zone: ZoneEntry) -> dict[str, Any]:
    return {
        "key": zone.key,
        "name": zone.name,
        "kind": zone.kind,
        "aliases": catalogue.aliases_of(zone.key),
        "factor": factor_json(zone.factor),
        "alternatives": [factor_json(f) for f in zone.factors[1:]],
    }


def cloud_json(catalogue: Catalogue, region: CloudRegion) -> dict[str, Any]:
    pue_value, pue_source = catalogue.provider_pue(region.provider, region.region)
    return {
        "key": region.key,
        "name": region.location or catalogue.lookup(region.zone).zone.name,
        "kind": "cloud-region",
        "zone": region.zone,
        "electricitymaps_zone": region.em_zone or None,
        "egrid_zip": region.egrid_zip or None,
        "factor": factor_json(catalogue.get(region.key)),
        "provider_factors": [factor_json(f) for f in region.provider_factors],
        "pue": {"value": pue_value, "source": pue_source},
    }


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def short_value(factor: IntensityFactor) -> str:
    return f"{factor.g_per_kwh:.1f}"
