"""Line items from the one-machine tracker's output files (``carbontrack run`` / ``track()``).

Two shapes, both written by ``carbontrack.tracker.output``:

- CSV: CodeCarbon's emissions.csv columns with CodeCarbon's units (``duration`` s,
  ``emissions`` kgCO2e, ``*_energy`` kWh *including PUE*, as CodeCarbon writes them, with
  "other" energy folded into ``cpu_energy``; timestamps UTC), then CarbonTrack's own columns.
- JSON: one ``carbontrack.run/v1`` document per run (``RunResult.to_dict()``): energy per
  component in joules (IT energy), ``co2e_grams``, factors, host.

Each run becomes one line, keyed by ``run_id`` (the same run in both files counts once).
A tracker run has no Kubernetes identity: ``project_name`` becomes the Job and model name.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from carbontrack.core import csvsafe
from carbontrack.core.errors import ConfigError
from carbontrack.core.types import JOULES_PER_KWH

from . import methods
from .model import COMPONENTS, SOURCE_TRACKER, LineItem, parse_time

MAX_DURATION_S = 100 * 365.25 * 86400  # longer is a corrupt file (and past timedelta's range)
REQUIRED = ("timestamp", "run_id", "duration", "emissions", "cpu_energy", "gpu_energy", "ram_energy", "pue")
JSON_SCHEMA = "carbontrack.run/v1"


def _f(row: Mapping[str, Any], key: str, where: str, default: float | None = 0.0) -> float | None:
    v = row.get(key)
    if v in (None, ""):
        return default
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: column {key!r} is {v!r}, not a number") from None


def _host_int(v: Any) -> int:
    """A host count (CPUs, GPUs); 0 (unknown) for anything but a non-negative number."""
    try:
        return max(int(float(v)), 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _sane(line: LineItem, where: str) -> LineItem:
    """``validate()`` plus what only a tracker file can get wrong: a negative or infinite
    duration, host size or GPU-hours would otherwise be reported as measured."""
    try:
        line.validate()
    except ConfigError as err:  # its message names the run; say which file and row too
        raise ConfigError(f"{where}: {err}") from None
    if line.start is not None and line.end is not None and line.end < line.start:
        raise ConfigError(f"{where}: the run ends before it starts (negative duration)")
    for name in ("gpu_hours", "cpu_cores_reserved", "memory_gb_reserved"):
        if getattr(line, name) < 0:
            raise ConfigError(f"{where}: {name} is negative ({getattr(line, name)})")
    return line


def row_to_line(row: Mapping[str, Any], where: str, cluster: str = "", team: str = "") -> LineItem:
    """One tracker CSV row -> a line item (energies converted back to IT energy)."""
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise ConfigError(
            f"{where}: not a carbontrack run CSV row (missing {', '.join(missing)}); "
            "pass files written by `carbontrack run` or track()"
        )
    end = parse_time(str(row["timestamp"]), f"{where} timestamp")
    duration = _f(row, "duration", where) or 0.0
    if not 0 <= duration <= MAX_DURATION_S:  # NaN fails too
        raise ConfigError(f"{where}: duration {duration!r} is not a number of seconds between 0 and 100 years")
    try:
        start = end - timedelta(seconds=duration)
    except OverflowError:
        raise ConfigError(f"{where}: the run would start before year 1 ({end.isoformat()} - {duration} s)") from None
    pue = _f(row, "pue", where, 1.0) or 1.0
    if pue < 1.0:
        raise ConfigError(f"{where}: pue {pue} is below 1.0")
    # CodeCarbon-compatible columns include PUE; line items carry IT energy per component.
    cpu = (_f(row, "cpu_energy", where) or 0.0) / pue
    gpu = (_f(row, "gpu_energy", where) or 0.0) / pue
    ram = (_f(row, "ram_energy", where) or 0.0) / pue
    market = _f(row, "market_based_emissions", where, None)
    year = str(row.get("intensity_year", "") or "")
    gpu_count = _host_int(row.get("gpu_count"))
    line = LineItem(
        source=SOURCE_TRACKER,
        cluster=cluster,
        job=str(row.get("project_name") or row["run_id"]),
        job_uid=f"run:{row['run_id']}",
        team=team,
        model=str(row.get("project_name") or ""),
        status="Complete",
        start=start,
        end=end,
        gpu_model=str(row.get("gpu_model", "") or ""),
        gpu_count=gpu_count,
        gpu_hours=gpu_count * duration / 3600.0,
        cpu_cores_reserved=float(_host_int(row.get("cpu_count"))),
        memory_gb_reserved=_f(row, "ram_total_size", where) or 0.0,
        cpu_kwh=cpu,
        dram_kwh=ram,
        gpu_kwh=gpu,
        it_energy_kwh=cpu + gpu + ram,
        energy_method=methods.canonical([str(row.get("method", "") or "")]),
        pue=pue,
        pue_source="tracker setting",
        facility_energy_kwh=(cpu + gpu + ram) * pue,
        grid_zone=str(row.get("zone", "") or ""),
        intensity_g_per_kwh=_f(row, "intensity_g_per_kwh", where) or 0.0,
        intensity_basis=str(row.get("intensity_basis", "") or ""),
        intensity_source=str(row.get("intensity_source", "") or ""),
        intensity_year=int(year) if year.isdigit() else None,
        location_kgco2e=_f(row, "emissions", where) or 0.0,
        market_kgco2e=market,
        uncertainty=_f(row, "uncertainty", where, None),
        tool_version=str(row.get("carbontrack_version", "") or ""),
        notes="one-machine tracker run",
    )
    return _sane(line, where)


def doc_to_line(doc: Mapping[str, Any], where: str, cluster: str = "", team: str = "") -> LineItem:
    """One ``carbontrack.run/v1`` JSON document -> a line item."""
    try:
        energy_j: Mapping[str, float] = doc["energy_j"]
        kwh = {c: 0.0 for c in COMPONENTS}
        for comp, j in energy_j.items():
            kwh[comp if comp in COMPONENTS else "other"] += float(j) / JOULES_PER_KWH
        pue = float(doc["pue"])
        start = parse_time(str(doc["started_at"]), f"{where} started_at")
        end = parse_time(str(doc["ended_at"]), f"{where} ended_at")
        factors = list(doc.get("factors") or [])
        host: Mapping[str, Any] = doc.get("host") or {}
        market = doc.get("market_based_co2e_grams")
        it = sum(kwh.values())
        years = sorted({int(f["year"]) for f in factors if f.get("year") is not None})
        gpu_count = _host_int(host.get("gpu_count"))
        line = LineItem(
            source=SOURCE_TRACKER,
            cluster=cluster,
            job=str(doc.get("project_name") or doc["run_id"]),
            job_uid=f"run:{doc['run_id']}",
            team=team,
            model=str(doc.get("project_name") or ""),
            status="Complete" if doc.get("exit_code") in (None, 0) else "Failed",
            start=start,
            end=end,
            gpu_model=str(host.get("gpu_model", "") or ""),
            gpu_count=gpu_count,
            gpu_hours=gpu_count * float(doc.get("duration_s", 0.0)) / 3600.0,
            cpu_cores_reserved=float(_host_int(host.get("cpu_count"))),
            memory_gb_reserved=float(host.get("ram_total_size_gb") or 0.0),
            cpu_kwh=kwh["cpu"],
            dram_kwh=kwh["dram"],
            gpu_kwh=kwh["gpu"],
            other_kwh=kwh["other"],
            it_energy_kwh=it,
            energy_method=methods.canonical([str(doc.get("method", ""))]),
            pue=pue,
            pue_source="tracker setting",
            facility_energy_kwh=it * pue,
            grid_zone=str(doc.get("zone", "")),
            intensity_g_per_kwh=float(doc.get("intensity_g_per_kwh") or 0.0),
            intensity_basis="; ".join(sorted({str(f.get("basis", "")) for f in factors} - {""})),
            intensity_source="; ".join(sorted({str(f.get("source", "")) for f in factors} - {""})),
            intensity_year=years[0] if len(years) == 1 else None,
            location_kgco2e=float(doc["co2e_grams"]) / 1000.0,
            market_kgco2e=float(market) / 1000.0 if market is not None else None,
            uncertainty=float(doc["uncertainty"]) if doc.get("uncertainty") is not None else None,
            tool_version=str(doc.get("carbontrack_version", "")),
            notes="one-machine tracker run",
        )
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as err:
        raise ConfigError(
            f"{where}: not a {JSON_SCHEMA} document ({type(err).__name__}: {err}); "
            "pass files written by `carbontrack run` or track()"
        ) from None
    return _sane(line, where)


# run id -> (parent run id, run ids it overlaps with), as the tracker recorded them
Relations = dict[str, tuple[str, tuple[str, ...]]]


def _relations_of(rec: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    ov = rec.get("overlaps_with") or ()
    overlaps = tuple(x for x in ov.split(";") if x) if isinstance(ov, str) else tuple(str(x) for x in ov)
    return str(rec.get("parent_run_id") or ""), overlaps


def read_csv(path: Path, cluster: str = "", team: str = "", relations: Relations | None = None) -> list[LineItem]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            # cells quoted against spreadsheet formulas come back as written (core/csvsafe.py)
            rows = [csvsafe.original_row(r) for r in csv.DictReader(fh)]
    except OSError as err:
        raise ConfigError(f"cannot read tracker file {path}: {err.strerror}") from None
    out = []
    for i, r in enumerate(rows):
        out.append(row_to_line(r, f"{path}:{i + 2}", cluster, team))
        if relations is not None:
            relations[str(r["run_id"])] = _relations_of(r)
    return out


def read_json(path: Path, cluster: str = "", team: str = "", relations: Relations | None = None) -> list[LineItem]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read tracker file {path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    docs = doc if isinstance(doc, list) else [doc]
    out = []
    for i, d in enumerate(docs):
        out.append(doc_to_line(d, f"{path}" + (f"[{i}]" if len(docs) > 1 else ""), cluster, team))
        if relations is not None and isinstance(d, Mapping):
            relations[str(d.get("run_id"))] = _relations_of(d)
    return out


def read_tracker_path(
    path: Path, cluster: str = "", team: str = "", relations: Relations | None = None
) -> list[LineItem]:
    """A .csv or .json file, or a directory of them (read in name order)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".csv", ".json"))
        if not files:
            raise ConfigError(f"{path}: no tracker .csv or .json files in this directory")
        out: list[LineItem] = []
        for f in files:
            out += read_tracker_path(f, cluster, team, relations)
        return out
    if not path.exists():
        raise ConfigError(f"tracker file {path} does not exist; pass the CSV/JSON written by `carbontrack run`")
    if path.suffix == ".csv":
        return read_csv(path, cluster, team, relations)
    if path.suffix == ".json":
        return read_json(path, cluster, team, relations)
    raise ConfigError(f"{path}: tracker files end in .csv or .json")


def without_shared_energy(lines: list[LineItem], relations: Relations) -> tuple[list[LineItem], list[str]]:
    """Keep each joule once, as the tracker's docs ask (docs/tracker.md "Nested and concurrent").

    A nested run (``parent_run_id`` set) is inside its parent's window and energy: dropped when
    the parent is among the runs read. Concurrent runs (``overlaps_with``) measured the same
    energy: of each overlapping group only the run with the most energy is kept (it spans the
    most of the shared window); the others are dropped with a note, so totals never add the
    same energy twice (they may undercount the non-shared part, which the note says).
    """
    by_id = {x.job_uid.removeprefix("run:"): x for x in lines}
    notes: list[str] = []
    dropped: set[str] = set()
    for rid in sorted(by_id):
        parent = relations.get(rid, ("", ()))[0]
        if parent and parent in by_id:
            dropped.add(rid)
            notes.append(f"tracker run {rid} is nested in run {parent}: its energy is in the parent's, counted once")
    # overlap groups: connected components of the overlaps_with relation among runs read
    seen: set[str] = set()
    for rid in sorted(by_id):
        if rid in seen or rid in dropped:
            continue
        group, todo = set(), [rid]
        while todo:
            r = todo.pop()
            if r in group or r not in by_id or r in dropped:
                continue
            group.add(r)
            todo += list(relations.get(r, ("", ()))[1])
            todo += [o for o, (_, ov) in relations.items() if r in ov]
        seen |= group
        if len(group) > 1:
            keep = max(sorted(group), key=lambda r: by_id[r].it_energy_kwh)
            for r in sorted(group - {keep}):
                dropped.add(r)
                notes.append(
                    f"tracker run {r} overlapped run {keep} (same energy measured twice): only {keep}, "
                    "the larger, is counted; energy outside the shared window may be undercounted"
                )
    return [x for x in lines if x.job_uid.removeprefix("run:") not in dropped], notes
