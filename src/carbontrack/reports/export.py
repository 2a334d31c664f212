"""CSV and JSON writers. Column names carry units; every line carries its factors."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from .build import Report
from .model import line_columns


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # readers never see half a report


def _cell(v: Any) -> Any:
    return "" if v is None else v


def lines_csv(report: Report) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=line_columns(), lineterminator="\n")
    w.writeheader()
    for x in report.lines:
        w.writerow({k: _cell(v) for k, v in x.to_row().items()})
    return buf.getvalue()


TOTAL_COLUMNS = [
    "group", "key", "jobs", "gpu_hours", "it_energy_kwh", "facility_energy_kwh",
    "location_kgco2e", "market_kgco2e", "embodied_kgco2e",
    "cpu_kwh", "dram_kwh", "gpu_kwh", "other_kwh",
]


def totals_csv(report: Report) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=TOTAL_COLUMNS, lineterminator="\n")
    w.writeheader()
    for group, block in report.totals.items():
        items: dict[str, Any] = {"all": block} if group == "all" else dict(block)  # type: ignore[call-overload]
        for key, t in items.items():
            comp = t["by_component_kwh"]
            row = {k: t[k] for k in TOTAL_COLUMNS[2:9]}
            row.update({f"{c}_kwh": comp[c] for c in ("cpu", "dram", "gpu", "other")})
            w.writerow({"group": group, "key": key, **row})
    return buf.getvalue()


def write(report: Report, out_dir: Path, formats: set[str]) -> list[Path]:
    """Write the chosen formats into ``out_dir``; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(name: str, text: str) -> None:
        p = out_dir / name
        _atomic_write(p, text)
        written.append(p)

    if "csv" in formats:
        put("report-lines.csv", lines_csv(report))
        put("report-totals.csv", totals_csv(report))
    if "json" in formats:
        put("report.json", json.dumps(report.to_json(), indent=2, sort_keys=False) + "\n")
    if "html" in formats:
        from .html import render

        put("report.html", render(report))
    if "aiact" in formats:
        from .aiact import form_text, model_energy

        put("ai-act-training-energy.txt", "\n".join(form_text(e) for e in model_energy(report.lines)))
    if "statement" in formats:
        put("compute-statement.md", report.statement())
    return written
