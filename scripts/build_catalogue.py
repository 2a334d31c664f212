#!/usr/bin/env python3
"""Build the packaged grid-intensity catalogue from the raw reference data.

    python scripts/build_catalogue.py [RAW_DIR] [--out DIR]

RAW_DIR defaults to data/raw in the repository (a copy of the shared raw datasets with their PROVENANCE.md); --out
defaults to src/carbontrack/intensity/data. The output is deterministic (sorted
keys, fixed gzip mtime), so running it again must reproduce the packaged files
byte for byte; tests/unit/intensity/test_build.py checks exactly that.

Files written (see docs/methodology.md for the meaning of every field):
  catalogue.json            countries (OWID/Ember), eGRID subregions, other
                            sub-national rows, cloud regions, PUE, datasets, rejects
  electricitymaps.json      Electricity Maps yearly zones (ODbL: kept apart)
  zip_egrid_2023.csv.gz     US ZIP -> eGRID subregion (predominant utility)
  NOTICE.md, NOTICE-ElectricityMaps-ODbL.txt, VERSION.txt

Every raw number goes through carbontrack.intensity.validate.check_intensity; a
value that fails is not shipped and is listed in catalogue.json "rejected".
Hand-made mappings (cloud region -> zone, representative ZIP codes) live in the
tables below, each with the reason it exists.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from carbontrack.intensity.validate import MalformedValue, check_intensity  # noqa: E402

CATALOGUE_VERSION = "2026.11.30-1"  # bump whenever the raw inputs or this script change

# --- datasets: provenance shared by every factor that cites them -------------------
# basis = [averaging, lifecycle, accounting] as in carbontrack.core.types.Basis.
DATASETS: dict[str, dict[str, Any]] = {
    "egrid-2023": {
        "source": "US EPA eGRID2023 subregion total output CO2e emission rate "
        "(via EPA Power Profiler data, USEPA/power-profiler 9463d66)",
        "licence": "Public domain (US Government work)",
        "basis": ["average", "direct", "location-based"],
        "notes": "Generation-based total output rate; combustion CO2e only (no upstream), "
        "no grid losses. lb/MWh converted with 0.45359237.",
    },
    "owid-ember-2025": {
        "source": "Ember (2025); Energy Institute - Statistical Review of World Energy (2025) "
        "- with major processing by Our World in Data (grapher carbon-intensity-electricity)",
        "licence": "CC BY 4.0",
        "basis": ["average", "lifecycle", "location-based"],
        "notes": "Generation-based, lifecycle (Ember method). Latest year per country.",
    },
    "electricitymaps-yearly": {
        "source": "Electricity Maps yearly averages (API v3 past, temporalGranularity=yearly), "
        "as republished by The Green Web Foundation co2.js (9a0a098)",
        "licence": "ODbL 1.0 (Open Database License) - see NOTICE-ElectricityMaps-ODbL.txt",
        "basis": ["average", "lifecycle", "location-based"],
        "notes": "Consumption-based (flow-traced, includes imports), lifecycle. Latest year.",
    },
    "green-algorithms-2022": {
        "source": "Green Algorithms CI_aggregated.csv (GreenAlgorithms/green-algorithms-tool "
        "ca65ba0), mostly carbonfootprint.com March 2022 edition",
        "licence": "CC BY 4.0 (Green Algorithms); carbonfootprint.com terms may apply",
        "basis": ["average", "direct", "location-based"],
        "notes": "Mixed compilation, mostly 2019-2020 generation factors; year is the data "
        "year stated in the row when given.",
    },
    "google-region-carbon": {
        "source": "Google Cloud region carbon data (GoogleCloudPlatform/region-carbon-info 49f3f26)",
        "licence": "Apache-2.0",
        "basis": ["average", "direct", "location-based"],
        "notes": "Google's hourly-weighted grid intensity for the region; 2021+ files describe "
        "it as average operational gross emissions (2019-2020 were lifecycle).",
    },
    "google-region-carbon-lifecycle": {
        "source": "Google Cloud region carbon data (GoogleCloudPlatform/region-carbon-info 49f3f26)",
        "licence": "Apache-2.0",
        "basis": ["average", "lifecycle", "location-based"],
        "notes": "2019-2020 files: lifecycle grid carbon intensity.",
    },
    "google-cfe-adjusted": {
        "source": "Derived: Google region grid intensity x (1 - Google CFE fraction), "
        "GoogleCloudPlatform/region-carbon-info 49f3f26",
        "licence": "Apache-2.0",
        "basis": ["average", "direct", "market-based"],
        "notes": "Provider-claimed carbon-free-energy share (hourly CFE matching); a "
        "market-based-style figure, not GHG Protocol residual-mix accounting.",
    },
    "ccf-2024": {
        "source": "Cloud Carbon Footprint region emission factors "
        "(cloud-carbon-footprint b7a049c, 2024-03-25)",
        "licence": "Apache-2.0",
        "basis": ["average", "direct", "location-based"],
        "notes": "Mixed, undocumented vintage (about 2020-2022: EEA, carbonfootprint.com, "
        "EPA eGRID NERC averages).",
    },
}

PUE_SOURCES: dict[str, str] = {
    "ccf-avg": "Cloud Carbon Footprint provider PUE_AVG (cloud-carbon-footprint b7a049c, 2024-03-25; "
    "provider-published fleet averages of about 2021-2022), Apache-2.0",
    "ccf-ttm": "Google trailing-twelve-month PUE per region, via Cloud Carbon Footprint "
    "(cloud-carbon-footprint b7a049c, 2024-03-25; Google figures of about 2021-2022), Apache-2.0",
    "uptime-2024": "Uptime Institute Global Data Center Survey 2024 industry average, via Green "
    "Algorithms defaults_PUE.csv (ca65ba0), CC BY 4.0",
}

# --- hand-made mappings -------------------------------------------------------------
# ISO alpha-3 codes missing from the UNFCCC/IFI table (which supplies the rest).
EXTRA_ALPHA3 = {"HKG": "HK", "MAC": "MO", "ESH": "EH", "OWID_KOS": "XK"}

# Green Algorithms keys that are not ISO 3166-2: Manitoba is CA-MB, not CA-MT.
GA_KEY_FIXES = {"CA-MT": "CA-MB"}

# Cloud regions whose CCF row has no Electricity Maps zone (or a wrong one), and regions
# CCF does not list at all. Locations are the providers' own region pages.
REGION_ZONE_OVERRIDES: dict[str, tuple[str, str]] = {
    # key: (zone, location)
    "aws:ap-east-1": ("HK", "Hong Kong"),
    "aws:cn-north-1": ("CN", "Beijing"),
    "aws:cn-northwest-1": ("CN", "Ningxia"),
    "aws:me-south-1": ("BH", "Bahrain"),
    "aws:me-central-1": ("AE", "UAE"),
    "aws:ap-south-2": ("IN-SO", "Hyderabad"),
    "aws:ap-southeast-4": ("AU-VIC", "Melbourne"),
    "aws:ap-southeast-5": ("MY-WM", "Malaysia"),
    "aws:ap-southeast-7": ("TH", "Thailand"),
    "aws:ca-west-1": ("CA-AB", "Calgary"),
    "aws:eu-central-2": ("CH", "Zurich"),
    "aws:eu-south-2": ("ES", "Aragon"),
    "aws:eu-north-1": ("SE-SE3", "Stockholm"),
    "aws:il-central-1": ("IL", "Tel Aviv"),
    "aws:mx-central-1": ("MX", "Queretaro"),
    "gcp:asia-east2": ("HK", "Hong Kong"),
    "gcp:africa-south1": ("ZA", "Johannesburg"),
    "gcp:europe-north2": ("SE-SE3", "Stockholm"),
    "gcp:europe-west10": ("DE", "Berlin"),
    "gcp:europe-west12": ("IT-NO", "Turin"),
    "gcp:me-central1": ("QA", "Doha"),
    "gcp:me-central2": ("SA", "Dammam"),
    "gcp:me-west1": ("IL", "Tel Aviv"),
    "gcp:northamerica-south1": ("MX", "Queretaro"),
    "gcp:us-east2": ("US-SE-SOCO", "Georgia"),
    "azure:eastasia": ("HK", "Hong Kong"),
    "azure:southeastasia": ("SG", "Singapore"),
    "azure:uaecentral": ("AE", "Abu Dhabi"),
    "azure:uaenorth": ("AE", "Dubai"),
    "azure:jioindiacentral": ("IN-WE", "Nagpur"),
    "azure:jioindiawest": ("IN-WE", "Jamnagar"),
    "azure:westus3": ("US-SW-AZPS", "Arizona"),  # CCF says US-NW-PACE; Phoenix is AZPS
    "azure:chinaeast": ("CN", "Shanghai"),
    "azure:chinaeast2": ("CN", "Shanghai"),
    "azure:chinanorth": ("CN", "Beijing"),
    "azure:chinanorth2": ("CN", "Beijing"),
    "azure:israelcentral": ("IL", "Israel"),
    "azure:italynorth": ("IT-NO", "Milan"),
    "azure:mexicocentral": ("MX", "Queretaro"),
    "azure:newzealandnorth": ("NZ", "Auckland"),
    "azure:polandcentral": ("PL", "Warsaw"),
    "azure:qatarcentral": ("QA", "Doha"),
    "azure:spaincentral": ("ES", "Madrid"),
}

# CCF azure rows that are geographies or staging rings, not deployable regions.
AZURE_NOT_REGIONS = {
    "southafrica", "australia", "apeast", "japan", "korea", "asia", "asiapacific", "india",
    "france", "switzerland", "norway", "uae", "canada", "brazil", "unitedstates",
    "unitedstateseuap", "uk", "germany", "usnorth",
}

# US cloud regions -> a ZIP code at the data-centre campus; the eGRID subregion then
# comes from EPA's own ZIP table (predominant utility), not from us.
US_REGION_ZIPS: dict[str, tuple[str, str]] = {
    "aws:us-east-1": ("20147", "Ashburn, VA"),
    "aws:us-east-2": ("43016", "Dublin, OH"),
    "aws:us-west-1": ("95054", "Santa Clara, CA"),
    "aws:us-west-2": ("97818", "Boardman, OR"),
    "aws:us-gov-east-1": ("43016", "Ohio (city not published; Columbus area assumed)"),
    "aws:us-gov-west-1": ("97818", "Oregon (city not published; Boardman assumed)"),
    "gcp:us-central1": ("51501", "Council Bluffs, IA"),
    "gcp:us-central2": ("74361", "Pryor, OK"),
    "gcp:us-east1": ("29461", "Moncks Corner, SC"),
    "gcp:us-east4": ("20147", "Ashburn, VA"),
    "gcp:us-east2": ("30122", "Douglas County (Lithia Springs), GA"),
    "gcp:us-east5": ("43215", "Columbus, OH"),
    "gcp:us-south1": ("76065", "Midlothian (Dallas), TX"),
    "gcp:us-west1": ("97058", "The Dalles, OR"),
    "gcp:us-west2": ("90001", "Los Angeles, CA"),
    "gcp:us-west3": ("84101", "Salt Lake City, UT"),
    "gcp:us-west4": ("89101", "Las Vegas, NV"),
    "azure:centralus": ("50309", "Des Moines, IA"),
    "azure:centraluseuap": ("50309", "Des Moines, IA"),
    "azure:eastus": ("23917", "Boydton, VA"),
    "azure:eastus2": ("23917", "Boydton, VA"),
    "azure:eastus2euap": ("23917", "Boydton, VA"),
    "azure:eastus3": ("30303", "Atlanta, GA"),
    "azure:northcentralus": ("60601", "Chicago, IL"),
    "azure:southcentralus": ("78201", "San Antonio, TX"),
    "azure:westcentralus": ("82001", "Cheyenne, WY"),
    "azure:westus": ("94102", "San Francisco, CA"),
    "azure:westus2": ("98848", "Quincy, WA"),
    "azure:westus3": ("85001", "Phoenix, AZ"),
}

CLOUD_PROVIDERS = ("aws", "gcp", "azure")


class Rejects:
    """Collects values that failed validation, for the shipped ``rejected`` table."""

    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []

    def check(
        self, raw: str, *, file: str, row: str, unit: str = "g/kWh", note: str = "",
        market: bool = False,
    ) -> float | None:
        try:
            return round(float(check_intensity(raw, unit=unit, note=note, market=market)), 6)
        except MalformedValue as err:
            if str(err) == "empty cell":
                return None  # no data is not a defect; it is simply absent
            self.rows.append({"file": file, "row": row, "value": raw, "reason": str(err)})
            return None


def read_csv(path: Path, skip: int = 0) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        for _ in range(skip):
            fh.readline()
        yield from csv.DictReader(fh)


def alpha3_table(raw: Path) -> dict[str, str]:
    data = json.loads((raw / "co2js/marginal-intensities-2021_unfccc-ifi.json").read_text("utf-8"))
    table = {
        v["country_code_iso_3"]: v["country_code_iso_2"]
        for v in data.values()
        if v.get("country_code_iso_3") and v.get("country_code_iso_2")
    }
    table.update(EXTRA_ALPHA3)
    return table


def build_countries(raw: Path, rej: Rejects, a3: dict[str, str]) -> dict[str, dict[str, Any]]:
    name = "owid/carbon-intensity-electricity_owid-grapher_ember2025.csv"
    latest: dict[str, tuple[int, float, str]] = {}
    col = "Carbon intensity of electricity - gCO2/kWh"
    for row in read_csv(raw / name):
        code = row["Code"]
        if not code or code == "OWID_WRL":  # aggregates have no code; World is no grid
            continue
        value = rej.check(row[col], file=name, row=f"{row['Entity']} {row['Year']}")
        if value is None:
            continue
        year = int(row["Year"])
        if code not in latest or year > latest[code][0]:
            latest[code] = (year, value, row["Entity"])
    zones: dict[str, dict[str, Any]] = {}
    for code, (year, value, entity) in latest.items():
        if code not in a3:
            raise SystemExit(f"build: no ISO alpha-2 code for {code} ({entity}); add to EXTRA_ALPHA3")
        zones[a3[code]] = {
            "name": entity, "kind": "country", "iso3": code.replace("OWID_KOS", "XKX"),
            "factors": [["owid-ember-2025", value, year]],
        }
    return zones


def build_egrid(raw: Path, rej: Rejects) -> tuple[dict[str, dict[str, Any]], float]:
    name = "epa-egrid/egrid2023_subregion_output_emission_rates.csv"
    zones: dict[str, dict[str, Any]] = {}
    national = 0.0
    for row in read_csv(raw / name):
        lb = row["co2e_total_output_rate_lb_per_mwh"]
        g = rej.check(lb, file=name, row=row["subregion"], unit="lb/MWh")
        if g is None:
            continue
        # The derived column must agree with lb/MWh x 0.45359237: a mismatch is a unit mix-up.
        derived = float(row["co2e_total_output_rate_g_per_kwh_derived"])
        if abs(derived - g) > 0.01:
            rej.rows.append({"file": name, "row": row["subregion"], "value": lb,
                             "reason": f"derived g/kWh {derived} != {g:.3f} from lb/MWh"})
            continue
        g = round(g, 3)
        if row["level"] == "national":
            national = g
            continue
        zones[f"US-EGRID-{row['subregion']}"] = {
            "name": f"eGRID {row['subregion']} ({row['subregion_name']})", "kind": "egrid",
            "factors": [["egrid-2023", g, int(row["data_year"])]],
        }
    return zones, national


def build_green_algorithms(raw: Path, rej: Rejects) -> dict[str, tuple[str, float, int | None]]:
    """Sub-national and country rows; the year is the 'data from YYYY' in the source text."""
    name = "green-algorithms/CI_aggregated.csv"
    out: dict[str, tuple[str, float, int | None]] = {}
    for row in read_csv(raw / name, skip=1):
        if row["Type"] == "World":
            continue
        key = GA_KEY_FIXES.get(row["location"], row["location"])
        value = rej.check(row["carbonIntensity"], file=name, row=row["location"])
        if value is None:
            continue
        text = f"{row['source']} {row['comments']}"
        year = None
        for marker in ("data from ", "Data from "):
            if marker in text:
                tail = text.split(marker, 1)[1]
                digits = "".join(ch for ch in tail[:12] if ch.isdigit())
                year = int(digits[-4:]) if len(digits) >= 4 else None
                break
        label = row["regionName"] if row["regionName"] != "Any" else row["countryName"]
        out[key] = (label if row["Type"] == "Region" else row["countryName"], value, year)
    return out


def build_electricitymaps(raw: Path, rej: Rejects) -> dict[str, Any]:
    name = "co2js/electricity-maps_yearly_2021-2025_zones.csv"
    zones: dict[str, Any] = {}
    for row in read_csv(raw / name):
        value = rej.check(row["carbon_intensity_gco2eq_per_kwh"], file=name,
                          row=f"{row['zone']} {row['year']}")
        entry = zones.setdefault(row["zone"], {"name": row["zone_name"], "years": {}})
        if value is not None:
            entry["years"][row["year"]] = value
    return {
        "dataset_id": "electricitymaps-yearly",
        "dataset": DATASETS["electricitymaps-yearly"],
        "zones": {k: v for k, v in zones.items() if v["years"]},
    }


def build_zip_table(raw: Path) -> dict[str, str]:
    name = "epa-egrid/power-profiler_zip_to_egrid_subregion_2023.csv"
    out: dict[str, str] = {}
    for row in read_csv(raw / name):
        if row["Predominant Utility"].strip() != "1":
            continue
        zip_code = row["zip"].strip().zfill(5)
        prev = out.get(zip_code)
        if prev is not None and prev != row["SUBRGN"]:
            raise SystemExit(f"build: ZIP {zip_code} has two predominant subregions")
        out[zip_code] = row["SUBRGN"]
    return out


def build_cloud(
    raw: Path, rej: Rejects, zips: dict[str, str]
) -> tuple[dict[str, dict[str, Any]], dict[str, list[Any]]]:
    regions: dict[str, dict[str, Any]] = {}

    def region(key: str) -> dict[str, Any]:
        return regions.setdefault(key, {"factors": [], "location": "", "em_zone": ""})

    ccf = "cloud-carbon-footprint/ccf_region_emission_factors.csv"
    for row in read_csv(raw / ccf):
        provider = row["provider"]
        if provider not in CLOUD_PROVIDERS or row["region"] == "Unknown":
            continue
        reg = row["region"].lower()
        if provider == "azure" and (reg in AZURE_NOT_REGIONS or reg.endswith("stage")):
            continue
        key = f"{provider}:{reg}"
        is_grid = row["factor_type"] == "grid_location_based"
        value = rej.check(row["gco2e_per_kwh"], file=ccf, row=f"{key} {row['factor_type']}",
                          note=row["source_comment"], market=not is_grid)
        if value is None or not is_grid:
            continue  # CCF's cfe_adjusted rows repeat Google's CFE data, shipped below
        entry = region(key)
        entry["em_zone"] = entry["em_zone"] or row["electricity_maps_zone"]
        entry["factors"].append(["ccf-2024", value, None])

    for year in range(2019, 2025):
        name = f"google-region-carbon-info/{year}.csv"
        for row in read_csv(raw / name):
            cols = list(row)
            intensity_col = cols[3]
            lifecycle = intensity_col.lower().startswith("lifecycle")
            key = f"gcp:{row['Google Cloud Region']}"
            value = rej.check(row[intensity_col], file=name, row=key)
            if value is None:
                continue
            entry = region(key)
            entry["location"] = row["Location"]
            entry["_google"] = (year, value, row["Google CFE"], lifecycle)

    for key, entry in regions.items():
        google = entry.pop("_google", None)
        if google is None:
            continue
        year, value, cfe, lifecycle = google
        ds = "google-region-carbon-lifecycle" if lifecycle else "google-region-carbon"
        entry["factors"].insert(0, [ds, value, year])
        if cfe.strip():
            market = rej.check(str(round(value * (1 - float(cfe)), 3)), file=f"{year}.csv",
                               row=f"{key} CFE", market=True)
            if market is not None:
                entry["factors"].insert(1, ["google-cfe-adjusted", market, year])

    for key, (zone, location) in REGION_ZONE_OVERRIDES.items():
        entry = region(key)
        entry["em_zone"] = zone
        entry["location"] = entry["location"] or location

    for key, (zip_code, place) in US_REGION_ZIPS.items():
        entry = region(key)
        entry["egrid_zip"] = zip_code
        entry["location"] = place
        entry["zone"] = f"US-EGRID-{zips[zip_code]}"

    pue_avg: dict[str, list[Any]] = {}
    for row in read_csv(raw / "cloud-carbon-footprint/ccf_provider_constants.csv"):
        if row["constant"] == "PUE_AVG" and row["provider"] in (*CLOUD_PROVIDERS, "on-premise"):
            pue_avg[row["provider"]] = [float(row["value"]), "ccf-avg"]
        if row["constant"] == "PUE_TRAILING_TWELVE_MONTH" and row["provider"] == "gcp":
            region(f"gcp:{row['key']}")["pue"] = [float(row["value"]), "ccf-ttm"]
    for row in read_csv(raw / "green-algorithms/defaults_PUE.csv", skip=1):
        if row["provider"] == "Unknown":
            pue_avg["unknown"] = [float(row["PUE"]), "uptime-2024"]

    for key, entry in regions.items():
        entry.setdefault("zone", entry["em_zone"])
        if not entry["zone"]:
            raise SystemExit(f"build: cloud region {key} has no grid zone; add it to "
                             "REGION_ZONE_OVERRIDES")
    return regions, pue_avg


def notice_md(version: str) -> str:
    lines = [
        "# CarbonTrack grid-intensity catalogue: sources and licences",
        "",
        f"Catalogue version {version}. Built by scripts/build_catalogue.py from the raw data",
        "described in data/raw/PROVENANCE.md. Every factor names its dataset below.",
        "",
    ]
    for ds_id, ds in sorted(DATASETS.items()):
        lines += [f"## {ds_id}", "", f"- Source: {ds['source']}", f"- Licence: {ds['licence']}",
                  f"- Basis: {' / '.join(ds['basis'])}", f"- Notes: {ds['notes']}", ""]
    lines += ["## PUE", ""] + [f"- {k}: {v}" for k, v in sorted(PUE_SOURCES.items())] + [""]
    lines += [
        "## ZIP to eGRID subregion",
        "",
        "- Source: EPA Power Profiler zip.csv (eGRID2023 edition), USEPA/power-profiler 9463d66;",
        "  public domain. Only the predominant utility of each ZIP is kept.",
        "",
        "## Attribution",
        "",
        "Our World in Data / Ember data: CC BY 4.0, cite \"Ember; Energy Institute - Statistical",
        "Review of World Energy; with major processing by Our World in Data\".",
        "Electricity Maps data is in electricitymaps.json only, under the ODbL: see",
        "NOTICE-ElectricityMaps-ODbL.txt.",
        "",
    ]
    return "\n".join(lines)


ODBL_NOTICE = """\
electricitymaps.json - Electricity Maps yearly carbon intensity by zone

Contains information from Electricity Maps (https://www.electricitymaps.com), yearly
averages 2021-2025 as republished by The Green Web Foundation in co2.js
(https://github.com/thegreenwebfoundation/co2.js, data/output/electricity-maps/), which
is made available here under the Open Database License (ODbL) 1.0:
https://opendatacommons.org/licenses/odbl/1-0/

Any rights in individual contents of the database are licensed under the Database
Contents License: https://opendatacommons.org/licenses/dbcl/1-0/

This file is a Derivative Database (flattened, validated, latest-year selection done
by CarbonTrack's scripts/build_catalogue.py). Share-alike applies to this file only;
it is kept separate from the rest of the catalogue, which is under the licences listed
in NOTICE.md.
"""


def dump_json(obj: Any) -> bytes:
    return (json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=0) + "\n").encode("utf-8")


def build(raw: Path) -> dict[str, bytes]:
    """Return {file name: exact bytes} for the packaged data directory."""
    for required in ("PROVENANCE.md", "owid", "epa-egrid", "co2js"):
        if not (raw / required).exists():
            raise SystemExit(f"build: {raw} is not the raw data directory (no {required}); "
                             "pass the path to data/raw")
    rej = Rejects()
    a3 = alpha3_table(raw)
    zones = build_countries(raw, rej, a3)
    egrid, national = build_egrid(raw, rej)
    zones.update(egrid)
    if "US" in zones and national:
        zones["US"]["factors"].append(["egrid-2023", national, 2023])
    for key, (label, value, year) in sorted(build_green_algorithms(raw, rej).items()):
        entry = zones.setdefault(key, {"name": label, "kind": "subnational", "factors": []})
        entry["factors"].append(["green-algorithms-2022", value, year])
    zips = build_zip_table(raw)
    cloud, pue = build_cloud(raw, rej, zips)
    em = build_electricitymaps(raw, rej)
    for key, entry in sorted(cloud.items()):
        if entry["zone"] not in zones and entry["zone"] not in em["zones"]:
            raise SystemExit(f"build: cloud region {key} maps to {entry['zone']}, which has "
                             "no factor; fix REGION_ZONE_OVERRIDES")
    aliases = {iso3: iso2 for iso3, iso2 in a3.items()
               if (iso2 in zones or iso2 in em["zones"]) and not iso3.startswith("OWID")}
    aliases["XKX"] = "XK"
    for key in egrid:
        aliases[key.removeprefix("US-EGRID-")] = key
    catalogue = {
        "version": CATALOGUE_VERSION,
        "datasets": DATASETS,
        "pue_sources": PUE_SOURCES,
        "dataset_priority": ["owid-ember-2025", "egrid-2023", "electricitymaps-yearly",
                             "green-algorithms-2022"],
        "zones": zones,
        "aliases": aliases,
        "cloud_regions": cloud,
        "provider_pue": pue,
        "rejected": rej.rows,
    }
    # Fixed-width sorted records: the loader binary-searches them in place.
    if {len(z) for z in zips} != {5} or {len(s) for s in zips.values()} != {4}:
        raise SystemExit("build: ZIP codes must be 5 digits and subregions 4 letters")
    zip_text = "zip,subregion\n" + "".join(f"{z},{s}\n" for z, s in sorted(zips.items()))
    buf = io.BytesIO()
    # mtime=0 and no file name in the header keep the gzip bytes reproducible.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(zip_text.encode("ascii"))
    return {
        "catalogue.json": dump_json(catalogue),
        "electricitymaps.json": dump_json(em),
        "zip_egrid_2023.csv.gz": buf.getvalue(),
        "NOTICE.md": notice_md(CATALOGUE_VERSION).encode("utf-8"),
        "NOTICE-ElectricityMaps-ODbL.txt": ODBL_NOTICE.encode("utf-8"),
        "VERSION.txt": f"{CATALOGUE_VERSION}\n".encode("ascii"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", nargs="?", type=Path, default=REPO / "data/raw",
                        help="raw data directory (default: data/raw)")
    parser.add_argument("--out", type=Path, default=REPO / "src/carbontrack/intensity/data",
                        help="output directory (default: the packaged data directory)")
    args = parser.parse_args(argv)
    files = build(args.raw.resolve())
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
    rejected = json.loads(files["catalogue.json"])["rejected"]
    print(f"wrote {len(files)} files to {args.out}; {len(rejected)} raw values rejected:")
    for row in rejected:
        print(f"  {row['file']} [{row['row']}] {row['value']!r}: {row['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
