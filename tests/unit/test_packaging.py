"""Packaging guards: import names never collide with the standard library (docs/architecture.md),
and CI tests the installed package rather than the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import carbontrack

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_stdlib_operator_is_not_shadowed_from_repo_root() -> None:
    # Running from the checkout puts operator/ on sys.path; the standard module must still win.
    result = _run("-c", "import operator, functools; print(operator.add(2, 3), operator.__file__)")
    assert result.returncode == 0, result.stderr
    value, path = result.stdout.split()
    assert value == "5"
    assert not path.startswith(str(REPO / "operator"))


def test_no_site_mode_keeps_stdlib_and_ours_apart() -> None:
    # `python -S` skips site-packages; with the repo root as cwd a bare `operator` package would
    # hide the standard one and break collections/functools. Ours is carbontrack.operator only.
    result = _run("-S", "-c", "import collections, functools, operator; print(operator.itemgetter(0)([7]))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7"


def test_mapped_packages_import_under_carbontrack() -> None:
    result = _run(
        "-c",
        "import carbontrack.operator as o, carbontrack.exporter as e, operator as std;"
        "print(o.__name__, e.__name__, std.__name__)",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["carbontrack.operator", "carbontrack.exporter", "operator"]


def test_ci_tests_the_installed_package() -> None:
    if os.environ.get("CI") != "true":
        return  # developers use an editable install; CI must not
    location = Path(carbontrack.__file__).resolve()
    assert "site-packages" in location.parts, f"CI imported carbontrack from {location}, not a wheel install"


def test_cli_lists_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "carbontrack", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for name in ("run", "zones", "intensity", "exporter", "operator", "report"):
        assert f"  {name} " in result.stdout


def test_wheel_ships_data_files(tmp_path: Path) -> None:
    # package-data globs only apply to listed packages: a data folder left out of the wheel
    # would only show up on a user's machine. Build the real wheel and look inside.
    import zipfile

    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("carbontrack-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "carbontrack/intensity/data/catalogue.json",
        "carbontrack/intensity/data/electricitymaps.json",
        "carbontrack/intensity/data/NOTICE-ElectricityMaps-ODbL.txt",
        "carbontrack/sources/data/PROVENANCE.md",
        "carbontrack/sources/data/cpu_tdp.csv",
        "carbontrack/sim/fakenvml.c",
        "carbontrack/reports/data/PROVENANCE.md",
        "carbontrack/exporter/cli.py",
        "carbontrack/operator/cli.py",
        "carbontrack/exporter/podresources/api.proto",
    ):
        assert required in names, f"{required} missing from {wheel.name}"
    assert not any(name.startswith("operator/") for name in names), "a bare top-level operator package shipped"
