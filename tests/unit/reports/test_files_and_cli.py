"""Tracker files -> report, through the real tracker writers and the `carbontrack report` CLI."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from carbontrack.cli import main as carbontrack_main
from carbontrack.core.errors import ConfigError
from carbontrack.reports.cli import main, parse_period
from carbontrack.reports.sources_files import read_tracker_path
from carbontrack.tracker.output import append_csv, write_json
from carbontrack.tracker.result import FactorUse, RunResult

UTC = timezone.utc


def run_result(run_id: str, *, gpu_j: float = 7.2e6, cpu_j: float = 3.6e6, dram_j: float = 0.36e6,
               grams: float = 1500.0, pue: float = 1.5, project: str = "llm",
               end: datetime = datetime(2026, 11, 20, 8, tzinfo=UTC)) -> RunResult:
    return RunResult(
        run_id=run_id, project_name=project, experiment_id="exp", started_at=end - timedelta(hours=2),
        ended_at=end, duration_s=7200.0, scope="process", method="measured",
        energy_j={"cpu": cpu_j, "gpu": gpu_j, "dram": dram_j}, co2e_grams=grams,
        market_based_co2e_grams=None, market_factor_g_per_kwh=None, zone="DE", pue=pue,
        factors=(FactorUse("DE", 344.0, "owid-ember-2025", 2024, "CC BY 4.0", "average/lifecycle/location-based",
                           None, 10, cpu_j + gpu_j + dram_j),),
        devices=(), sources=(), uncertainty=0.1, intervals=10,
        host={"gpu_count": 1, "gpu_model": "NVIDIA H100", "cpu_count": 16}, carbontrack_version="0.1.0",
    )


def test_tracker_csv_and_json_give_the_same_line_and_count_once(tmp_path: Path) -> None:
    r = run_result("r1")
    append_csv(tmp_path / "emissions.csv", r)
    write_json(tmp_path / "r1.json", r)
    from_csv = read_tracker_path(tmp_path / "emissions.csv")
    from_json = read_tracker_path(tmp_path / "r1.json")
    assert len(from_csv) == len(from_json) == 1
    a, b = from_csv[0], from_json[0]
    assert a.it_energy_kwh == pytest.approx(11.16e6 / 3.6e6)  # CSV energies include PUE; IT recovered
    assert b.it_energy_kwh == pytest.approx(11.16e6 / 3.6e6)
    assert (a.gpu_kwh, a.dram_kwh) == (pytest.approx(2.0), pytest.approx(0.1))
    assert a.location_kgco2e == b.location_kgco2e == pytest.approx(1.5)
    assert a.facility_energy_kwh == pytest.approx(3.1 * 1.5)
    assert a.job_uid == b.job_uid == "run:r1" and a.model == "llm" and a.gpu_hours == pytest.approx(2.0)
    assert a.intensity_year == b.intensity_year == 2024

    out = tmp_path / "out"
    assert main(["--tracker-file", str(tmp_path), "-o", str(out), "--format", "csv,json", "-q"]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert len(doc["line_items"]) == 1 and doc["totals"]["all"]["location_kgco2e"] == pytest.approx(1.5)


def test_cli_period_scope_and_every_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = tmp_path / "runs" / "emissions.csv"
    csv_path.parent.mkdir()
    append_csv(csv_path, run_result("nov", end=datetime(2026, 11, 30, 23, tzinfo=UTC)))
    append_csv(csv_path, run_result("dec", end=datetime(2026, 12, 1, 1, tzinfo=UTC), grams=999.0))
    out = tmp_path / "rep"
    rc = carbontrack_main(["report", "--tracker-file", str(csv_path), "--period", "2026-11", "--tracker-team", "lab",
                           "-o", str(out), "--format", "csv,json,html,aiact,statement"])
    assert rc == 0
    printed = capsys.readouterr()
    assert sorted(Path(p).name for p in printed.out.split()) == sorted(
        ["report-lines.csv", "report-totals.csv", "report.json", "report.html", "ai-act-training-energy.txt",
         "compute-statement.md"])
    assert "report: files: 2 runs read" in printed.err
    rows = list(csv.DictReader((out / "report-lines.csv").open()))
    assert [r["job_uid"] for r in rows] == ["run:nov"] and rows[0]["team"] == "lab"
    assert "0.0047 MWh" in (out / "ai-act-training-energy.txt").read_text()  # 3.1 kWh x 1.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no data source: pass --cluster"),
        (["--tracker-file", "/nonexistent/x.csv"], "does not exist"),
        (["--tracker-file", "x.csv", "--format", "pdf"], "--format: unknown ['pdf']"),
        (["--tracker-file", "x.csv", "--period", "2026-13"], "month must be 01..12"),
        (["--tracker-file", "x.csv", "--since", "2026-12-01", "--until", "2026-11-01"], "is not before --until"),
        (["--prometheus-url", "http://127.0.0.1:9"], "needs a closed window"),
    ],
)
def test_bad_input_gives_one_line_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        main(argv)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_error_exit_code_and_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    assert carbontrack_main(["report", "--tracker-file", str(bad), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("carbontrack report: error: ") and "missing timestamp" in err[-1]


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [("2026", (2026, 1), (2027, 1)), ("2026-Q4", (2026, 10), (2027, 1)), ("2026-12", (2026, 12), (2027, 1)),
     ("2026-02", (2026, 2), (2026, 3))],
)
def test_periods(text: str, start: tuple[int, int], end: tuple[int, int]) -> None:
    assert parse_period(text) == (datetime(*start, 1, tzinfo=UTC), datetime(*end, 1, tzinfo=UTC))


def test_nested_and_concurrent_tracker_runs_are_counted_once(tmp_path: Path) -> None:
    import threading

    from carbontrack.tracker.api import track

    runs = tmp_path / "runs"
    runs.mkdir()
    opts = dict(zone="DE", scope="machine", output_dir=runs, interval_s=0.05, project_name="nest")
    with track(**opts) as outer, track(**opts) as inner:  # type: ignore[arg-type]  # inner nested in outer
        sum(range(100_000))
    assert outer.result is not None and inner.result is not None
    assert inner.result.parent_run_id == outer.result.run_id

    results: dict[str, object] = {}
    gate = threading.Barrier(2)

    def worker(name: str) -> None:
        with track(**{**opts, "project_name": "conc"}) as t:  # type: ignore[arg-type]
            gate.wait()
            sum(range(100_000))
            gate.wait()
        results[name] = t.result

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracker's OverlapWarning is expected here
        threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    a, b = results["a"], results["b"]
    assert b.run_id in a.overlaps_with or a.run_id in b.overlaps_with  # type: ignore[attr-defined]
    out = tmp_path / "out"
    assert main(["--tracker-file", str(runs), "-o", str(out), "--format", "json", "-q"]) == 0
    doc = json.loads((out / "report.json").read_text())
    ids = sorted(x["job_uid"] for x in doc["line_items"])
    # the report keeps the run with more energy (ties: the smaller run id)
    bigger = max(sorted((a, b), key=lambda r: r.run_id), key=lambda r: r.energy_kwh)  # type: ignore[attr-defined]
    assert ids == sorted([f"run:{outer.result.run_id}", f"run:{bigger.run_id}"])  # type: ignore[attr-defined]
    assert doc["totals"]["all"]["it_energy_kwh"] == pytest.approx(
        outer.result.energy_kwh + bigger.energy_kwh)  # type: ignore[attr-defined]
    assert any("nested in run" in n for n in doc["notes"]) and any("overlapped run" in n for n in doc["notes"])
