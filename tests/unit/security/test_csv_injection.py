"""CSV formula injection (OWASP "CSV Injection"): every CSV we write quotes text a spreadsheet
would evaluate, leaves numbers alone, and our readers give back what was written."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbontrack.core import csvsafe
from carbontrack.reports import export
from carbontrack.reports.build import Scope, build_report
from carbontrack.reports.ghg import GhgSettings
from carbontrack.reports.sci import EmbodiedModel, EmbodiedSettings
from carbontrack.reports.sources_files import read_tracker_path
from carbontrack.tracker.output import append_csv, csv_header, csv_row
from carbontrack.tracker.result import FactorUse, RunResult


def result(run_id: str = "r1", **kw: object) -> RunResult:
    base = RunResult(
        run_id=run_id, project_name="p", experiment_id="",
        started_at=datetime(2025, 1, 1, tzinfo=timezone.utc), ended_at=datetime(2025, 1, 1, 1, tzinfo=timezone.utc),
        duration_s=3600.0, scope="process", method="estimated", energy_j={"cpu": 3.6e6, "dram": 1.8e6},
        co2e_grams=600.0, market_based_co2e_grams=None, market_factor_g_per_kwh=None, zone="DE", pue=1.25,
        factors=(FactorUse("DE", 400.0, "src", 2024, "CC BY 4.0", "average/lifecycle/location-based", None, 1, 5.4e6),),
        devices=(), sources=(), uncertainty=0.2, intervals=1, host={"os": "Linux", "cpu_count": 2},
        carbontrack_version="0.1.0",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


HOSTILE = [
    '=HYPERLINK("http://evil","click")',
    "+1",
    "-x",
    "@SUM(A1)",
    "\tcmd",
    "\r=1+1",
    "'=already quoted",
    "'",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_risky_text_is_quoted_and_restored(text: str) -> None:
    written = csvsafe.cell(text)
    assert written == "'" + text
    assert csvsafe.original(written) == text


@pytest.mark.parametrize("value", [-1.5, -3, 0, 2.5e-9, True, "plain", "a=b", "", "1-2"])
def test_numbers_and_harmless_text_are_unchanged(value: object) -> None:
    assert csvsafe.cell(value) is value
    if isinstance(value, str):
        assert csvsafe.original(value) == value


def test_none_is_an_empty_cell() -> None:
    assert csvsafe.cell(None) == ""


@settings(max_examples=1000, deadline=None)
@given(st.text())
def test_any_text_survives_a_csv_round_trip(text: str) -> None:
    written = csvsafe.line([text, 1.0, None])
    assert written.endswith("\n")
    rows = list(csv.reader(io.StringIO(written, newline="")))
    assert len(rows) == 1  # a carriage return or newline inside the text never splits the row
    got = rows[0]
    assert not got[0].startswith(csvsafe.FORMULA_STARTS)  # nothing a spreadsheet evaluates
    assert csvsafe.original(got[0]) == text
    assert got[1:] == ["1.0", ""]


def _tracker_csv(tmp_path: Path) -> Path:
    p = tmp_path / "emissions.csv"
    for i, name in enumerate(HOSTILE):
        append_csv(p, result(f"-run{i}", project_name=name))
    return p


def test_tracker_csv_cells_are_neutralised_and_numbers_byte_identical(tmp_path: Path) -> None:
    p = _tracker_csv(tmp_path)
    with open(p, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == csv_header()
    assert [r[1] for r in rows[1:]] == ["'" + n for n in HOSTILE]
    assert [r[2] for r in rows[1:]] == [f"'-run{i}" for i in range(len(HOSTILE))]
    expected = csv_row(result("-run0", project_name=HOSTILE[0]))
    numeric = {c: v for c, v in expected.items() if isinstance(v, (int, float))}
    assert {"duration", "emissions", "cpu_energy", "ram_energy", "pue", "intensity_g_per_kwh"} <= set(numeric)
    cells = dict(zip(rows[0], rows[1], strict=True))
    for column, value in numeric.items():
        assert cells[column] == str(value), column  # what csv.writer wrote before quoting existed


def test_negative_numbers_are_not_quoted(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    # a negative market-based figure (a supplier factor below zero is not ours to judge here)
    append_csv(p, replace(result(), market_based_co2e_grams=-5.0))
    with open(p, newline="", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert row["market_based_emissions"] == "-0.005"


def test_tracker_csv_through_report_gives_back_the_original_names(tmp_path: Path) -> None:
    lines = read_tracker_path(_tracker_csv(tmp_path))
    assert [x.job for x in lines] == HOSTILE
    assert [x.job_uid for x in lines] == [f"run:-run{i}" for i in range(len(HOSTILE))]
    report = build_report(
        lines, Scope(), GhgSettings(), EmbodiedModel(EmbodiedSettings(), {}),
        clock=lambda: datetime(2026, 12, 1, tzinfo=timezone.utc),
    )
    out = tmp_path / "out"
    export.write(report, out, {"csv"})
    with open(out / "report-lines.csv", newline="", encoding="utf-8") as f:
        raw = list(csv.DictReader(f))
    assert [r["job"] for r in raw] == ["'" + n for n in HOSTILE]
    assert all(not v.startswith(csvsafe.FORMULA_STARTS) for r in raw for v in r.values())
    assert [csvsafe.original_row(r)["model"] for r in raw] == HOSTILE
    with open(out / "report-totals.csv", newline="", encoding="utf-8") as f:
        totals = [csvsafe.original_row(r) for r in csv.DictReader(f)]
    assert sorted(r["key"] for r in totals if r["group"] == "by_model") == sorted(HOSTILE)
    with open(out / "report-totals.csv", newline="", encoding="utf-8") as f:
        assert all(not v.startswith(csvsafe.FORMULA_STARTS) for r in csv.DictReader(f) for v in r.values())
