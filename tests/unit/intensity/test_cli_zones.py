"""`carbontrack zones` and `carbontrack intensity` through the real dispatcher."""

from __future__ import annotations

import json

import pytest

from carbontrack.cli import main
from carbontrack.intensity.catalogue import Catalogue


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_intensity_table(capsys: pytest.CaptureFixture[str], catalogue: Catalogue) -> None:
    rc, out, _ = run(capsys, "intensity", "DE")
    assert rc == 0
    factor = catalogue.get("DE")
    assert f"{factor.g_per_kwh:.3f} gCO2e/kWh" in out
    for text in (str(factor.year), factor.source, factor.basis.label(), factor.licence):
        assert text in out


def test_intensity_json_for_a_cloud_region(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "intensity", "gcp:europe-west1", "--format", "json")
    assert rc == 0
    data = json.loads(out)
    assert (data["zone"], data["resolved_via"], data["dataset"]) == ("BE", "cloud", "owid-ember-2025")
    assert data["basis"] == {"averaging": "average", "lifecycle": "lifecycle",
                             "accounting": "location-based"}
    assert {f["dataset"] for f in data["provider_factors"]} >= {"google-region-carbon",
                                                                "google-cfe-adjusted"}
    assert data["pue"]["value"] == 1.09


def test_intensity_unknown_key_is_one_line_nonzero(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "intensity", "Atlantis")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("carbontrack intensity: error: unknown grid zone 'Atlantis'")


def test_zones_json_has_one_object_per_zone_with_provenance(
    capsys: pytest.CaptureFixture[str], catalogue: Catalogue
) -> None:
    rc, out, _ = run(capsys, "zones", "--format", "json")
    assert rc == 0
    data = json.loads(out)
    zones = [d for d in data if d["kind"] != "cloud-region"]
    assert len(zones) == len(catalogue.zones()) >= 400
    assert len(data) - len(zones) == len(catalogue.cloud_regions())
    for entry in zones:
        f = entry["factor"]
        assert f["g_per_kwh"] > 0 and f["source"] and f["licence"] and f["basis"]["accounting"]
    de = next(d for d in zones if d["key"] == "DE")
    assert "DEU" in de["aliases"]


def test_zones_search(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "zones", "--search", "camx", "--format", "json")
    assert rc == 0
    keys = {d["key"] for d in json.loads(out)}
    assert "US-EGRID-CAMX" in keys and "aws:us-west-1" in keys and "DE" not in keys
    rc, out, _ = run(capsys, "zones", "--search", "germany")
    assert rc == 0 and out.splitlines()[2].startswith("DE ")
    rc, _, err = run(capsys, "zones", "--search", "no-such-place")
    assert rc == 1 and "no zone or region matches" in err
