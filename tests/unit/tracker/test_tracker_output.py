"""CSV (CodeCarbon columns, safe appends, header conflicts) and JSON writers."""

from __future__ import annotations

import ast
import csv
import importlib.util
import json
import multiprocessing
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from carbontrack.tracker.output import (
    OWN_COLUMNS,
    append_csv,
    codecarbon_columns,
    csv_header,
    csv_row,
    write_json,
)
from carbontrack.tracker.result import FactorUse, RunResult

COLUMNS_FILE = Path(__file__).parents[3] / "src/carbontrack/tracker/codecarbon_columns.json"

# CodeCarbon 3.3.2 EmissionsData, in order (copied from the package; see the JSON's provenance).
CODECARBON_3_3_2 = [
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
]


def result(run_id: str = "r1", **kw: object) -> RunResult:
    base = RunResult(
        run_id=run_id,
        project_name="p",
        experiment_id="",
        started_at=datetime(2025, 1, 1, tzinfo=timezone.utc),
        ended_at=datetime(2025, 1, 1, 1, tzinfo=timezone.utc),
        duration_s=3600.0,
        scope="process",
        method="estimated",
        energy_j={"cpu": 3.6e6, "dram": 1.8e6},
        co2e_grams=600.0,
        market_based_co2e_grams=None,
        market_factor_g_per_kwh=None,
        zone="DE",
        pue=1.0,
        factors=(FactorUse("DE", 400.0, "src", 2024, "CC BY 4.0", "average/lifecycle/location-based", None, 1, 5.4e6),),
        devices=(),
        sources=(),
        uncertainty=0.2,
        intervals=1,
        host={"os": "Linux", "cpu_count": 2},
        carbontrack_version="0.1.0",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_header_is_codecarbons_columns_in_order_then_ours() -> None:
    assert codecarbon_columns() == CODECARBON_3_3_2
    assert csv_header() == CODECARBON_3_3_2 + OWN_COLUMNS
    assert OWN_COLUMNS[:9] == [
        "method", "zone", "intensity_g_per_kwh", "intensity_source", "intensity_basis",
        "intensity_year", "uncertainty", "market_based_emissions", "carbontrack_version",
    ]  # fmt: skip
    doc = json.loads(COLUMNS_FILE.read_text())
    assert "codecarbon" in doc["provenance"]["source"].lower() and doc["provenance"]["licence"]
    units = {c["name"]: c["unit"] for c in doc["columns"]}
    assert (units["emissions"], units["energy_consumed"], units["cpu_power"], units["duration"]) == (
        "kg CO2eq", "kWh", "W", "s",
    )  # fmt: skip


def _installed_codecarbon_columns() -> list[str] | None:
    """Read EmissionsData's fields from an installed codecarbon without importing it (its
    __init__ pulls pandas and more)."""
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        return None
    src = Path(next(iter(spec.submodule_search_locations))) / "output_methods" / "emissions_data.py"
    tree = ast.parse(src.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "EmissionsData")
    return [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]


def test_header_matches_the_installed_codecarbon() -> None:
    cols = _installed_codecarbon_columns()
    if cols is None:
        pytest.skip("codecarbon not installed (.ci/run installs codecarbon==3.3.2 --no-deps)")
    assert csv_header()[: len(cols)] == cols


def test_row_units_follow_codecarbon() -> None:
    row = csv_row(result(pue=1.5, co2e_grams=900.0))
    assert row["duration"] == 3600.0
    assert row["cpu_energy"] == pytest.approx(1.0 * 1.5)  # kWh, facility (x PUE) like CodeCarbon
    assert row["ram_energy"] == pytest.approx(0.5 * 1.5)
    assert row["energy_consumed"] == pytest.approx(1.5 * 1.5)
    assert row["cpu_power"] == pytest.approx(1000 * 1.5)  # W average
    assert row["emissions"] == pytest.approx(0.9)  # kg
    assert row["emissions_rate"] == pytest.approx(0.9 / 3600)  # kg/s
    assert row["water_consumed"] == "" and row["latitude"] == "" and row["codecarbon_version"] == ""
    assert row["intensity_year"] == 2024 and row["market_based_emissions"] == ""
    assert row["on_cloud"] == "N" and row["tracking_mode"] == "process"


def test_append_writes_header_once(tmp_path: Path) -> None:
    p = tmp_path / "emissions.csv"
    assert append_csv(p, result("a")) == (p, None)
    assert append_csv(p, result("b")) == (p, None)
    with open(p, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == csv_header()
    assert [r[2] for r in rows[1:]] == ["a", "b"]


def test_file_with_another_header_is_never_rewritten(tmp_path: Path) -> None:
    p = tmp_path / "emissions.csv"
    old = "timestamp,project_name,run_id\n2024-01-01,x,old\n"
    p.write_text(old)
    written, warning = append_csv(p, result("new"))
    assert written == tmp_path / "emissions-1.csv"
    assert warning is not None and "different header" in warning and "emissions-1.csv" in warning
    assert p.read_text() == old
    # the next run finds the compatible file again
    assert append_csv(p, result("next"))[0] == tmp_path / "emissions-1.csv"
    with open(written, newline="") as f:
        assert [r["run_id"] for r in csv.DictReader(f)] == ["new", "next"]


def _append_many(args: tuple[str, int]) -> None:
    path, k = args
    for i in range(25):
        append_csv(Path(path), result(f"w{k}-{i}", project_name="x" * 2000))  # ~4 kB rows


def test_concurrent_appends_from_processes_never_interleave(tmp_path: Path) -> None:
    p = tmp_path / "emissions.csv"
    # spawn, not fork: pytest's process holds threads of earlier tests, and a forked worker
    # can inherit a lock one of them held (a CI run hung in Pool.terminate that way)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        pool.map_async(_append_many, [(str(p), k) for k in range(4)]).get(timeout=120)
    with open(p, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == csv_header()
    assert len(rows) == 1 + 100
    assert all(len(r) == len(csv_header()) for r in rows)
    assert sorted(r[2] for r in rows[1:]) == sorted(f"w{k}-{i}" for k in range(4) for i in range(25))


def test_json_is_complete_and_atomic(tmp_path: Path) -> None:
    p = write_json(tmp_path / "run.json", result(market_based_co2e_grams=10.0, market_factor_g_per_kwh=5.0))
    doc = json.loads(p.read_text())
    assert doc["schema"] == "carbontrack.run/v1"
    assert doc["energy_kwh"] == pytest.approx(1.5)
    assert doc["factors"][0]["source"] == "src" and doc["market_based_co2e_grams"] == 10.0
    assert doc["started_at"] == "2025-01-01T00:00:00+00:00"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run.json"]  # no temporary left


