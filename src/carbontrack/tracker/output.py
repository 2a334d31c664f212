"""CSV and JSON writers.

CSV: every column of CodeCarbon's emissions.csv, same names, order and units (the list is
checked in as ``codecarbon_columns.json`` with its provenance), then CarbonTrack's own
columns. Each row is one ``os.write`` on an ``O_APPEND`` descriptor under ``flock``, so
concurrent writers never interleave and a crash never leaves half a row.

A file whose header differs from ours (another tool, an older CodeCarbon, an older
CarbonTrack) is never rewritten: the row goes to the first free ``<stem>-N.csv`` instead
and a warning names it. (CodeCarbon renames the old file to .bak; we leave it untouched.)

JSON: one document per run, written to a temporary file and renamed into place.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core import csvsafe
from ..core.types import JOULES_PER_KWH
from .result import RunResult

_COLUMNS_FILE = Path(__file__).with_name("codecarbon_columns.json")


def codecarbon_columns() -> list[str]:
    with open(_COLUMNS_FILE, encoding="utf-8") as f:
        return [c["name"] for c in json.load(f)["columns"]]


# Ours, after CodeCarbon's. Units: intensity gCO2e/kWh, market_based_emissions kg (like
# `emissions`), uncertainty relative half-width (0.15 = +/-15 %).
OWN_COLUMNS = [
    "method",
    "zone",
    "intensity_g_per_kwh",
    "intensity_source",
    "intensity_basis",
    "intensity_year",
    "uncertainty",
    "market_based_emissions",
    "carbontrack_version",
    "scope",
    "parent_run_id",
    "overlaps_with",
]


def csv_header() -> list[str]:
    return codecarbon_columns() + OWN_COLUMNS


def _kwh(joules: float) -> float:
    return joules / JOULES_PER_KWH


def csv_row(r: RunResult) -> dict[str, Any]:
    """One run as CodeCarbon would write it: power and energy columns include PUE (as
    CodeCarbon's do); emissions in kg; empty where a column does not apply."""
    pue, dur = r.pue, r.duration_s
    e = {c: r.energy_j.get(c, 0.0) for c in ("cpu", "gpu", "dram")}
    e["other"] = r.energy_j.get("other", 0.0)

    def watts(j: float) -> float:
        return j * pue / dur if dur > 0 else 0.0

    fac = r.factors[0] if len(r.factors) == 1 else None
    host = r.host
    return {
        "timestamp": r.ended_at.strftime("%Y-%m-%dT%H:%M:%S"),
        "project_name": r.project_name,
        "run_id": r.run_id,
        "experiment_id": r.experiment_id,
        "duration": dur,
        "emissions": r.co2e_grams / 1000.0,
        "emissions_rate": (r.co2e_grams / 1000.0 / dur) if dur > 0 else 0.0,
        "cpu_power": watts(e["cpu"] + e["other"]),
        "gpu_power": watts(e["gpu"]),
        "ram_power": watts(e["dram"]),
        "cpu_energy": _kwh(e["cpu"] + e["other"]) * pue,
        "gpu_energy": _kwh(e["gpu"]) * pue,
        "ram_energy": _kwh(e["dram"]) * pue,
        "energy_consumed": r.facility_energy_kwh,
        "water_consumed": "",
        "country_name": "",
        "country_iso_code": "",
        "region": "",
        "cloud_provider": host.get("cloud_provider", ""),
        "cloud_region": host.get("cloud_region", ""),
        "os": host.get("os", ""),
        "python_version": host.get("python_version", ""),
        "codecarbon_version": "",
        "cpu_count": host.get("cpu_count", ""),
        "cpu_model": host.get("cpu_model", ""),
        "gpu_count": host.get("gpu_count", ""),
        "gpu_model": host.get("gpu_model", ""),
        "longitude": "",
        "latitude": "",
        "ram_total_size": host.get("ram_total_size_gb", ""),
        "tracking_mode": r.scope,
        "cpu_utilization_percent": "",
        "gpu_utilization_percent": "",
        "ram_utilization_percent": "",
        "ram_used_gb": "",
        "on_cloud": "Y" if host.get("cloud_provider") else "N",
        "pue": pue,
        "wue": "",
        "method": r.method,
        "zone": r.zone,
        "intensity_g_per_kwh": r.intensity_g_per_kwh if r.intensity_g_per_kwh is not None else "",
        # several factors (a live provider): the source/basis/year columns list each once
        "intensity_source": fac.source if fac else ";".join(sorted({f.source for f in r.factors})),
        "intensity_basis": fac.basis if fac else ";".join(sorted({f.basis for f in r.factors})),
        "intensity_year": (fac.year if fac and fac.year is not None else "")
        if fac
        else ";".join(sorted({str(f.year) for f in r.factors if f.year is not None})),
        "uncertainty": r.uncertainty,
        "market_based_emissions": (r.market_based_co2e_grams / 1000.0) if r.market_based_co2e_grams is not None else "",
        "carbontrack_version": r.carbontrack_version,
        "scope": r.scope,
        "parent_run_id": r.parent_run_id or "",
        "overlaps_with": ";".join(r.overlaps_with),
    }


def _line(values: Sequence[Any]) -> bytes:
    # text a spreadsheet would evaluate is quoted (core/csvsafe.py); numbers are never changed
    return csvsafe.line(values).encode("utf-8")


def _append_if_header_matches(path: Path, header: list[str], row: list[Any]) -> bool:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_size == 0:
            data = _line(header) + _line(row)
        else:
            with open(path, newline="", encoding="utf-8") as f:
                existing = next(csv.reader(f), [])
            if existing != header:
                return False
            data = _line(row)
        os.write(fd, data)  # one write on O_APPEND: atomic with respect to other appenders
        return True
    finally:
        os.close(fd)  # closing releases the lock


def append_csv(path: Path, result: RunResult) -> tuple[Path, str | None]:
    """Append the run's row; returns (file written, warning or None)."""
    header = csv_header()
    values = csv_row(result)
    row = [values[c] for c in header]
    candidate, n = path, 0
    while not _append_if_header_matches(candidate, header, row):
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    if candidate == path:
        return path, None
    return candidate, (
        f"{path} has a different header (another tool or version); it was left untouched "
        f"and this run was written to {candidate}"
    )


def _create_temp(directory: Path, prefix: str) -> tuple[int, str]:
    """An exclusive new file in ``directory`` (what tempfile.mkstemp does, without importing
    tempfile and random at start-up)."""
    while True:
        name = os.path.join(directory, f"{prefix}{os.getpid()}-{os.urandom(6).hex()}.tmp")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), name
        except FileExistsError:
            continue


def write_json(path: Path, result: RunResult) -> Path:
    """Write the run's full document atomically (temporary file + rename)."""
    doc = {"schema": "carbontrack.run/v1", **result.to_dict()}
    fd, tmp = _create_temp(path.parent, f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
