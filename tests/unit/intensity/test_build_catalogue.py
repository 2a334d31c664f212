"""scripts/build_catalogue.py reproduces the packaged data byte for byte and refuses bad values."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from carbontrack.intensity.catalogue import DATA_DIR

REPO = Path(__file__).resolve().parents[3]


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_catalogue", REPO / "scripts/build_catalogue.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_catalogue", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("catalogue")
    assert _build_module().main([str(raw), "--out", str(out)]) == 0
    return out


def test_build_reproduces_packaged_files_byte_for_byte(built: Path) -> None:
    produced = sorted(p.name for p in built.iterdir())
    packaged = sorted(p.name for p in DATA_DIR.iterdir()
                      if p.is_file() and p.name != "__init__.py")  # __init__: see data/
    assert produced == packaged
    for name in produced:
        assert (built / name).read_bytes() == (DATA_DIR / name).read_bytes(), name


def test_rejected_values_are_listed_and_not_shipped(built: Path) -> None:
    data = json.loads((built / "catalogue.json").read_text())
    reasons = {(r["row"], r["reason"].split(" (")[0]) for r in data["rejected"]}
    # CCF's multi-region rows are sums of regions, not intensities.
    assert ("gcp:asia grid_location_based", "sum of regions, not an intensity") in reasons
    assert not any(k in data["cloud_regions"] for k in ("gcp:asia", "gcp:eur4", "gcp:nam4"))
    # Green Algorithms' Iceland 0.13 g/kWh is a unit mix-up: no IS factor from that dataset.
    assert any(r["row"] == "IS" for r in data["rejected"])
    assert all(ds != "green-algorithms-2022" for ds, _, _ in data["zones"]["IS"]["factors"])
    # OWID codes 0 for missing years: Central African Republic's 2013-2022 zeros are refused,
    # so the shipped factor is the last real one, with its year.
    assert data["zones"]["CF"]["factors"][0][2] == 2012
    for zone in data["zones"].values():
        for _, value, _ in zone["factors"]:
            assert 1.0 <= value <= 1500.0


def test_build_refuses_a_wrong_raw_directory(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not the raw data directory"):
        _build_module().build(tmp_path)


def test_build_refuses_a_malformed_value_it_is_given(raw: Path, tmp_path: Path) -> None:
    """Copy the raw tree, corrupt Germany's latest OWID value, and check it is not shipped."""
    import shutil

    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    csv_path = copy / "owid/carbon-intensity-electricity_owid-grapher_ember2025.csv"
    csv_path.chmod(0o644)
    lines = csv_path.read_text(encoding="utf-8-sig").splitlines()
    lines = [
        "Germany,DEU,2024,-344.1" if ln.startswith("Germany,DEU,2024,") else ln for ln in lines
    ]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    files = _build_module().build(copy)
    data = json.loads(files["catalogue.json"])
    assert {"file": "owid/carbon-intensity-electricity_owid-grapher_ember2025.csv",
            "row": "Germany 2024", "value": "-344.1",
            "reason": "negative intensity '-344.1'"} in data["rejected"]
    assert data["zones"]["DE"]["factors"][0][2] == 2023  # the bad 2024 value is not used


def test_data_directory_is_a_package_so_the_wheel_ships_it() -> None:
    """setuptools' package-data globs only apply to packages: without data/__init__.py
    the wheel would ship no catalogue at all (checked with `pip wheel`)."""
    import importlib.resources

    files = importlib.resources.files("carbontrack.intensity.data")
    names = {f.name for f in files.iterdir()}
    assert {"catalogue.json", "electricitymaps.json", "zip_egrid_2023.csv.gz", "NOTICE.md",
            "NOTICE-ElectricityMaps-ODbL.txt", "VERSION.txt", "__init__.py"} <= names
