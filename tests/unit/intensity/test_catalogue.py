"""Catalogue values against the raw files, key resolution, and provenance on every factor."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

import pytest

from carbontrack.core.errors import ConfigError, UnknownZoneError
from carbontrack.core.types import Accounting, Averaging, IntensityLookup, Lifecycle
from carbontrack.intensity.catalogue import Catalogue

OWID = "owid/carbon-intensity-electricity_owid-grapher_ember2025.csv"
EGRID = "epa-egrid/egrid2023_subregion_output_emission_rates.csv"


def _owid_latest(raw: Path, code: str) -> tuple[int, float]:
    with (raw / OWID).open(encoding="utf-8-sig", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["Code"] == code]
    last = max(rows, key=lambda r: int(r["Year"]))
    return int(last["Year"]), float(last["Carbon intensity of electricity - gCO2/kWh"])


@pytest.mark.parametrize(
    ("key", "alpha3"), [("DE", "DEU"), ("FR", "FRA"), ("IN", "IND"), ("BR", "BRA"), ("ZA", "ZAF"),
                        ("JP", "JPN"), ("US", "USA"), ("XK", "OWID_KOS")],
)
def test_country_factor_is_latest_owid_year(
    catalogue: Catalogue, raw: Path, key: str, alpha3: str
) -> None:
    year, value = _owid_latest(raw, alpha3)
    factor = catalogue.get(key)
    assert (factor.zone, factor.year) == (key, year)
    assert factor.g_per_kwh == pytest.approx(value, abs=1e-6)
    assert factor.licence == "CC BY 4.0"
    assert factor.source.startswith("owid-ember-2025: Ember (2025)")
    assert factor.basis.lifecycle is Lifecycle.LIFECYCLE
    assert factor.basis.accounting is Accounting.LOCATION


@pytest.mark.parametrize("sub", ["CAMX", "SRSO", "NYUP", "ERCT", "HIOA"])
def test_egrid_subregion_matches_raw_lb_per_mwh(catalogue: Catalogue, raw: Path, sub: str) -> None:
    with (raw / EGRID).open(newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["subregion"] == sub)
    expected = float(row["co2e_total_output_rate_lb_per_mwh"]) * 0.45359237
    for key in (sub, f"US-EGRID-{sub}", f"egrid:{sub.lower()}"):
        factor = catalogue.get(key)
        assert factor.zone == f"US-EGRID-{sub}"
        assert factor.g_per_kwh == pytest.approx(expected, abs=1e-3)
        assert factor.year == 2023
        assert factor.basis.lifecycle is Lifecycle.DIRECT  # eGRID is combustion-only
        assert "Public domain" in factor.licence


def test_known_published_egrid_values(catalogue: Catalogue) -> None:
    # PROVENANCE.md cross-check: SRSO 846.007 lb/MWh -> 0.383742 kg/kWh.
    assert catalogue.get("SRSO").g_per_kwh == pytest.approx(383.742, abs=1e-3)


def test_alpha3_and_case_insensitive_keys(catalogue: Catalogue) -> None:
    assert catalogue.get("deu") == catalogue.get("DE")
    assert catalogue.get(" fra ") == catalogue.get("FR")
    assert catalogue.lookup("DEU").via == "alias"


@pytest.mark.parametrize(
    ("key", "name_fragment"),
    [("US-CAL-CISO", "CAISO"), ("AU-NSW", "New South Wales"), ("CA-ON", "Ontario"),
     ("IN-WE", "West"), ("SE-SE3", "")],
)
def test_electricitymaps_subnational_zones(
    catalogue: Catalogue, raw: Path, key: str, name_fragment: str
) -> None:
    with (raw / "co2js/electricity-maps_yearly_2021-2025_zones.csv").open(newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["zone"] == key and r["year"] == "2025")
    factor = catalogue.get(key)
    assert factor.g_per_kwh == float(row["carbon_intensity_gco2eq_per_kwh"])
    assert factor.year == 2025
    assert factor.licence.startswith("ODbL")
    assert name_fragment in catalogue.lookup(key).zone.name


def test_zip_code_resolves_through_epa_table(catalogue: Catalogue, raw: Path) -> None:
    with (raw / "epa-egrid/power-profiler_zip_to_egrid_subregion_2023.csv").open(
        encoding="utf-8-sig", newline=""
    ) as fh:
        sample = [r for r in csv.DictReader(fh) if r["Predominant Utility"] == "1"][::5000]
    assert len(sample) >= 8
    for row in sample:
        found = catalogue.lookup(row["zip"])
        assert found.via == "zip"
        assert found.zone.key == f"US-EGRID-{row['SUBRGN']}"
    assert catalogue.get("94103-1234").zone == "US-EGRID-CAMX"  # ZIP+4
    assert catalogue.get("zip:10001").zone == catalogue.get("10001").zone


def test_cloud_regions_map_to_zones_with_provider_figures(catalogue: Catalogue, raw: Path) -> None:
    # Google's own 2024 per-region figure and its CFE-adjusted market-style figure.
    with (raw / "google-region-carbon-info/2024.csv").open(newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["Google Cloud Region"] == "europe-west1")
    grid = float(row["Grid carbon intensity (gCO2eq / kWh)"])
    cfe = float(row["Google CFE"])
    found = catalogue.lookup("gcp:europe-west1")
    assert found.via == "cloud" and found.cloud is not None
    assert found.factor == catalogue.get("BE")  # location-based: the Belgian grid
    google = {f.source.split(":")[0]: f for f in found.cloud.provider_factors}
    assert google["google-region-carbon"].g_per_kwh == grid
    assert google["google-region-carbon"].year == 2024
    assert google["google-cfe-adjusted"].g_per_kwh == pytest.approx(grid * (1 - cfe), abs=1e-3)
    assert google["google-cfe-adjusted"].basis.accounting is Accounting.MARKET
    assert catalogue.provider_pue("gcp", "europe-west1")[0] == 1.09  # CCF TTM figure


def test_us_cloud_regions_use_egrid_via_campus_zip(catalogue: Catalogue) -> None:
    assert catalogue.get("aws:us-east-1").zone == "US-EGRID-SRVC"  # Ashburn VA, Dominion
    assert catalogue.get("gcp:us-west2").zone == "US-EGRID-CAMX"
    assert catalogue.get("azure:westus3").zone == "US-EGRID-AZNM"
    region = catalogue.cloud_region("aws", "us-east-1")
    assert (region.egrid_zip, region.em_zone) == ("20147", "US-MIDA-PJM")


@pytest.mark.parametrize(
    ("key", "zone"),
    [("aws:eu-west-1", "IE"), ("azure:westeurope", "NL"), ("azure:West Europe", "NL"),
     ("gce:europe-west4", "NL"), ("aws:ap-southeast-2", "AU-NSW"), ("gcp:asia-east2", "HK")],
)
def test_cloud_region_keys(catalogue: Catalogue, key: str, zone: str) -> None:
    assert catalogue.get(key).zone == zone


def test_catalogue_size_and_provenance(catalogue: Catalogue) -> None:
    zones = catalogue.zones()
    assert len(zones) >= 400
    location_based = [z for z in zones if z.factor.basis.accounting is Accounting.LOCATION]
    assert len(location_based) == len(zones)
    for zone in zones:
        for factor in zone.factors:
            assert factor.source and factor.licence
            assert factor.basis.averaging is Averaging.AVERAGE
            assert 1.0 <= factor.g_per_kwh <= 1500.0
            assert factor.zone == zone.key
    assert len(catalogue.cloud_regions()) >= 120
    assert {c.provider for c in catalogue.cloud_regions()} == {"aws", "gcp", "azure"}


def test_primary_factor_follows_documented_priority(catalogue: Catalogue) -> None:
    # Country keys: OWID/Ember first (one method for every country), then the rest.
    us = catalogue.lookup("US").zone
    assert us.datasets == (
        "owid-ember-2025", "egrid-2023", "electricitymaps-yearly", "green-algorithms-2022"
    )
    assert us.factors[1].g_per_kwh == pytest.approx(349.667)  # eGRID national, as alternative
    de = catalogue.lookup("DE").zone
    assert de.datasets[0] == "owid-ember-2025"
    assert "electricitymaps-yearly" in de.datasets
    ca_on = catalogue.lookup("CA-ON").zone
    assert ca_on.datasets == ("electricitymaps-yearly", "green-algorithms-2022")


@pytest.mark.parametrize("key", ["XX", "Atlantis", "aws:mars-north-1", "ibm:us-south", "00000", ""])
def test_unknown_keys_raise_with_what_was_tried(catalogue: Catalogue, key: str) -> None:
    with pytest.raises(UnknownZoneError) as info:
        catalogue.get(key)
    message = str(info.value)
    assert "\n" not in message
    assert "tried" in message or "known" in message or "not in EPA" in message or "empty" in message
    if key in ("XX", "Atlantis"):
        assert "carbontrack zones --search" in message


def test_intensity_is_an_intensity_lookup(catalogue: Catalogue) -> None:
    assert isinstance(catalogue, IntensityLookup)
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    end = datetime(2025, 1, 1, 1, tzinfo=timezone.utc)
    assert catalogue.intensity("FR", start, end) == catalogue.get("FR")
    with pytest.raises(ConfigError, match="before start"):
        catalogue.intensity("FR", end, start)


def test_provider_pue_defaults_and_errors(catalogue: Catalogue) -> None:
    assert catalogue.provider_pue("aws", "eu-west-1")[0] == 1.135
    assert catalogue.provider_pue("azure")[0] == 1.185
    assert catalogue.provider_pue("unknown")[0] == 1.56
    value, source = catalogue.provider_pue("gcp", "us-central1")
    assert value == 1.11 and "trailing-twelve-month" in source
    with pytest.raises(ConfigError, match="no PUE default"):
        catalogue.provider_pue("ibm")


def test_version_and_notices_ship_with_the_package(catalogue: Catalogue) -> None:
    assert catalogue.version
    assert "CC BY 4.0" in catalogue.notice()
    from carbontrack.intensity.catalogue import DATA_DIR

    assert "Open Database License" in (DATA_DIR / "NOTICE-ElectricityMaps-ODbL.txt").read_text()
    assert (DATA_DIR / "VERSION.txt").read_text().strip() == catalogue.version


def test_zip_table_matches_every_predominant_epa_row(raw: Path) -> None:
    from carbontrack.intensity.catalogue import DATA_DIR, _read_zip_table

    table = _read_zip_table(DATA_DIR / "zip_egrid_2023.csv.gz")
    with (raw / "epa-egrid/power-profiler_zip_to_egrid_subregion_2023.csv").open(
        encoding="utf-8-sig", newline=""
    ) as fh:
        expected = {r["zip"]: r["SUBRGN"] for r in csv.DictReader(fh)
                    if r["Predominant Utility"] == "1"}
    assert len(table) == len(expected) == 41588
    assert all(table.get(z) == sub for z, sub in expected.items())
    assert table.get("00000") is None and table.get("99999") is None


def test_damaged_zip_table_is_a_clear_error() -> None:
    from carbontrack.intensity.catalogue import ZipTable

    with pytest.raises(ConfigError, match="damaged"):
        ZipTable("zip,subregion\n94103,CAMX\n1234,CAMX\n")
    with pytest.raises(ConfigError, match="damaged"):
        ZipTable("not a zip table")
