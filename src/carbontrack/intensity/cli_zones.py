"""``carbontrack zones [--search TEXT] [--format table|json]``: list grid zones and cloud regions."""

from __future__ import annotations

import argparse
import json
import sys

from ..core.errors import CarbonTrackError
from .catalogue import Catalogue
from .render import cloud_json, short_value, table, zone_json


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carbontrack zones",
        description="List grid zones and cloud regions with their carbon-intensity factor "
        "and provenance.",
    )
    parser.add_argument("--search", metavar="TEXT", default="",
                        help="case-insensitive match on key, name, alias or cloud region "
                        "(e.g. 'germany', 'US-CAL', 'aws:', 'egrid')")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        catalogue = Catalogue.load()
    except CarbonTrackError as err:
        print(f"carbontrack zones: error: {err}", file=sys.stderr)
        return 2
    needle = args.search.strip().lower()

    def hit(*texts: str) -> bool:
        return not needle or any(needle in t.lower() for t in texts)

    zones = [z for z in catalogue.zones()
             if hit(z.key, z.name, z.kind, *catalogue.aliases_of(z.key),
                    *(f.source.split(":", 1)[0] for f in z.factors))]
    regions = [r for r in catalogue.cloud_regions() if hit(r.key, r.location, r.zone)]
    if args.format == "json":
        out = [zone_json(catalogue, z) for z in zones]
        out += [cloud_json(catalogue, r) for r in regions]
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return 0
    if not zones and not regions:
        print(f"carbontrack zones: no zone or region matches {args.search!r}", file=sys.stderr)
        return 1
    rows = [[z.key, z.name[:40], z.kind, short_value(z.factor), str(z.factor.year or "-"),
             z.factor.basis.label(), z.factor.source.split(":", 1)[0]] for z in zones]
    for r in regions:
        factor = catalogue.get(r.key)
        name = r.location or catalogue.lookup(r.zone).zone.name
        rows.append([r.key, name[:40], "cloud-region", short_value(factor),
                     str(factor.year or "-"), factor.basis.label(), f"-> {r.zone}"])
    print(table(rows, ["KEY", "NAME", "KIND", "gCO2e/kWh", "YEAR", "BASIS", "DATASET"]))
    print(f"\n{len(zones)} zones, {len(regions)} cloud regions (catalogue {catalogue.version})")
    return 0
