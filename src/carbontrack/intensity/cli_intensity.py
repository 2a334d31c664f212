"""``carbontrack intensity KEY [--format table|json]``: one zone's factor with provenance."""

from __future__ import annotations

import argparse
import json
import sys

from ..core.errors import CarbonTrackError
from .catalogue import Catalogue
from .render import factor_json


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carbontrack intensity",
        description="Show the grid carbon intensity for a zone key, ISO country code, eGRID "
        "subregion, US ZIP code or provider:region (e.g. aws:eu-west-1).",
    )
    parser.add_argument("key", help="DE, DEU, US-CAL-CISO, CAMX, 94103, aws:eu-west-1, ...")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        catalogue = Catalogue.load()
        found = catalogue.lookup(args.key)
    except CarbonTrackError as err:
        print(f"carbontrack intensity: error: {err}", file=sys.stderr)
        return 2
    factor = found.factor
    others = list(found.zone.factors[1:])
    provider = list(found.cloud.provider_factors) if found.cloud else []
    if args.format == "json":
        out = {
            "query": args.key,
            "resolved_via": found.via,
            "zone": found.zone.key,
            "name": found.zone.name,
            "catalogue_version": catalogue.version,
            **factor_json(factor),
            "alternatives": [factor_json(f) for f in others],
            "provider_factors": [factor_json(f) for f in provider],
        }
        if found.cloud is not None:
            value, source = catalogue.provider_pue(found.cloud.provider, found.cloud.region)
            out["pue"] = {"value": value, "source": source}
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return 0
    lines = [
        f"{args.key} -> {found.zone.key} ({found.zone.name}; via {found.via})",
        f"  value:    {factor.g_per_kwh:.3f} gCO2e/kWh",
        f"  year:     {factor.year or 'not stated'}",
        f"  source:   {factor.source}",
        f"  basis:    {factor.basis.label()}",
        f"  licence:  {factor.licence}",
    ]
    if found.cloud is not None:
        value, source = catalogue.provider_pue(found.cloud.provider, found.cloud.region)
        lines.append(f"  PUE:      {value} ({source})")
    for title, extra in (("alternatives", others), ("provider figures", provider)):
        if extra:
            lines.append(f"  {title}:")
            lines += [f"    {f.g_per_kwh:9.3f}  {f.year or '-'}  {f.basis.label()}  "
                      f"{f.source.split(':', 1)[0]}" for f in extra]
    print("\n".join(lines))
    return 0
