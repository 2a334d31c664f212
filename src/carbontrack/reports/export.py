"""CSV and JSON writers. Column names carry units; every line carries its factors."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from carbontrack.core import csvsafe
from carbontrack.core.outdir import ensure_output_dir, remove_created

from .build import Report
from .model import line_columns


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # readers never see half a report
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    # text a spreadsheet would evaluate is quoted (core/csvsafe.py); numbers are never changed
    return "".join([csvsafe.line(columns), *(csvsafe.line(r.get(c) for c in columns) for r in rows)])


def lines_csv(report: Report) -> str:
    return _csv(line_columns(), [x.to_row() for x in report.lines])


TOTAL_COLUMNS = [
    "group", "key", "jobs", "gpu_hours", "it_energy_kwh", "facility_energy_kwh",
    "location_kgco2e", "market_kgco2e", "embodied_kgco2e",
    "cpu_kwh", "dram_kwh", "gpu_kwh", "other_kwh",
]


def totals_csv(report: Report) -> str:
    rows: list[dict[str, Any]] = []
    for group, block in report.totals.items():
        items: dict[str, Any] = {"all": block} if group == "all" else dict(block)  # type: ignore[call-overload]
        for key, t in items.items():
            comp = t["by_component_kwh"]
            row = {k: t[k] for k in TOTAL_COLUMNS[2:9]}
            row.update({f"{c}_kwh": comp[c] for c in ("cpu", "dram", "gpu", "other")})
            rows.append({"group": group, "key": key, **row})
    return _csv(TOTAL_COLUMNS, rows)


def write(report: Report, out_dir: Path, formats: set[str], created: Sequence[Path] = ()) -> list[Path]:
    """Write the chosen formats into ``out_dir`` (created with its parents); returns the files
    written. All or nothing: every document is rendered before the first file is written, and
    if a write fails, the files this call wrote and the directories it created are removed
    (a file it replaced cannot come back: each write is a rename). An uncreatable or
    unwritable ``out_dir`` is a ConfigError. ``created``: directories the caller made for
    this report earlier (``ensure_output_dir`` before gathering), removed likewise."""
    docs = _render(report, formats)
    made = [*created, *ensure_output_dir(out_dir, "--output")]
    written: list[Path] = []
    try:
        for name, text in docs:
            p = out_dir / name
            _atomic_write(p, text)
            written.append(p)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        remove_created(made)
        raise
    return written


def _render(report: Report, formats: set[str]) -> list[tuple[str, str]]:
    docs: list[tuple[str, str]] = []
    if "csv" in formats:
        docs.append(("report-lines.csv", lines_csv(report)))
        docs.append(("report-totals.csv", totals_csv(report)))
    if "json" in formats:
        docs.append(("report.json", json.dumps(report.to_json(), indent=2, sort_keys=False) + "\n"))
    if "html" in formats:
        from .html import render

        docs.append(("report.html", render(report)))
    if "aiact" in formats:
        from .aiact import form_text, model_energy

        docs.append(("ai-act-training-energy.txt", "\n".join(form_text(e) for e in model_energy(report.lines))))
    if "statement" in formats:
        docs.append(("compute-statement.md", report.statement()))
    return docs
