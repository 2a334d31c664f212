"""Line items from the one-machine tracker's output files (``carbontrack run`` / ``track()``).

The CSV keeps CodeCarbon's emissions.csv columns and units (``duration`` s, ``emissions``
kgCO2e, ``*_energy`` kWh) followed by CarbonTrack's own columns (method, zone, intensity and
its provenance, uncertainty, market-based emissions, version); the JSON document per run
carries the same fields. Each run becomes one line; ``run_id`` identifies it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from carbontrack.core.errors import ConfigError

from .model import SOURCE_TRACKER, LineItem, parse_time

REQUIRED = ("timestamp", "duration", "emissions", "cpu_energy", "gpu_energy", "ram_energy")


def _f(row: Mapping[str, Any], key: str, where: str, default: float | None = 0.0) -> float | None:
    v = row.get(key)
    if v in (None, ""):
        return default
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: column {key!r} is {v!r}, not a number") from None


def row_to_line(row: Mapping[str, Any], where: str, cluster: str = "") -> LineItem:
    """One tracker record (CSV row or JSON document, same field names) -> a line item."""
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise ConfigError(
            f"{where}: not a carbontrack/CodeCarbon emissions record (missing {', '.join(missing)})"
        )
    end = parse_time(str(row["timestamp"]), f"{where} timestamp")
    duration = _f(row, "duration", where) or 0.0
    cpu = _f(row, "cpu_energy", where) or 0.0
    gpu = _f(row, "gpu_energy", where) or 0.0
    ram = _f(row, "ram_energy", where) or 0.0
    pue = _f(row, "pue", where, 1.0) or 1.0
    it = cpu + gpu + ram
    kg = _f(row, "emissions", where) or 0.0
    market = _f(row, "market_based_emissions", where, None)
    year = _f(row, "intensity_year", where, None)
    unc = _f(row, "uncertainty", where, None)
    gpu_count = int(_f(row, "gpu_count", where) or 0)
    return LineItem(
        source=SOURCE_TRACKER,
        cluster=cluster,
        job=str(row.get("project_name") or row.get("run_id") or ""),
        job_uid=f"run:{row['run_id']}" if row.get("run_id") else "",
        model=str(row.get("model", "") or ""),
        team=str(row.get("team", "") or ""),
        mlflow_run_id=str(row.get("mlflow_run_id", "") or ""),
        wandb_run_id=str(row.get("wandb_run_id", "") or ""),
        status=str(row.get("status", "") or "Complete"),
        start=end - timedelta(seconds=duration),
        end=end,
        gpu_model=str(row.get("gpu_model", "") or ""),
        gpu_count=gpu_count,
        gpu_hours=gpu_count * duration / 3600.0,
        cpu_cores_reserved=_f(row, "cpu_count", where) or 0.0,
        cpu_kwh=cpu,
        dram_kwh=ram,
        gpu_kwh=gpu,
        it_energy_kwh=it,
        energy_method=str(row.get("method", "") or ""),
        pue=pue,
        pue_source=str(row.get("pue_source", "") or "tracker setting"),
        facility_energy_kwh=it * pue,
        grid_zone=str(row.get("zone", "") or row.get("country_iso_code", "") or ""),
        intensity_g_per_kwh=_f(row, "intensity_g_per_kwh", where) or 0.0,
        intensity_basis=str(row.get("intensity_basis", "") or ""),
        intensity_source=str(row.get("intensity_source", "") or ""),
        intensity_year=int(year) if year is not None else None,
        location_kgco2e=kg,
        market_g_per_kwh=None,
        market_kgco2e=market,
        uncertainty=unc,
        tool_version=str(row.get("carbontrack_version", "") or row.get("codecarbon_version", "") or ""),
        notes="one-machine tracker run",
    ).validate()


def read_csv(path: Path, cluster: str = "") -> list[LineItem]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return [row_to_line(r, f"{path}:{i + 2}", cluster) for i, r in enumerate(csv.DictReader(fh))]
    except OSError as err:
        raise ConfigError(f"cannot read tracker file {path}: {err.strerror}") from None


def _records(doc: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(doc, list):
        for d in doc:
            yield from _records(d)
    elif isinstance(doc, Mapping):
        if "runs" in doc and isinstance(doc["runs"], list):
            yield from _records(doc["runs"])
        elif "record" in doc and isinstance(doc["record"], Mapping):
            flat = {k: v for k, v in doc.items() if k != "record" and not isinstance(v, (dict, list))}
            yield {**doc["record"], **flat}
        else:
            yield doc


def read_json(path: Path, cluster: str = "") -> list[LineItem]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read tracker file {path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    return [row_to_line(r, f"{path}[{i}]", cluster) for i, r in enumerate(_records(doc))]


def read_tracker_path(path: Path, cluster: str = "") -> list[LineItem]:
    """A .csv or .json file, or a directory of them (read in name order)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".csv", ".json"))
        if not files:
            raise ConfigError(f"{path}: no tracker .csv or .json files in this directory")
        out: list[LineItem] = []
        for f in files:
            out += read_tracker_path(f, cluster)
        return out
    if not path.exists():
        raise ConfigError(f"tracker file {path} does not exist; pass the CSV/JSON written by `carbontrack run`")
    if path.suffix == ".csv":
        return read_csv(path, cluster)
    if path.suffix == ".json":
        return read_json(path, cluster)
    raise ConfigError(f"{path}: tracker files end in .csv or .json")
