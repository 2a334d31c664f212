"""`carbontrack report -o DIR`: DIR is made with its parents; a failure leaves nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.reports import export
from carbontrack.reports.cli import main
from carbontrack.tracker.output import append_csv

from .test_files_and_cli import run_result


def _runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    runs.mkdir()
    append_csv(runs / "emissions.csv", run_result("r1"))
    return runs


def test_output_dir_is_created_with_parents(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "2026" / "11"
    assert main(["--tracker-file", str(_runs(tmp_path)), "-o", str(out), "--format", "csv,json", "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report-lines.csv", "report-totals.csv", "report.json"]


def test_failed_source_leaves_no_directory(tmp_path: Path) -> None:
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="missing timestamp"):
        main(["--tracker-file", str(bad), "-o", str(tmp_path / "new" / "dir"), "-q"])
    assert not (tmp_path / "new").exists()


def test_failed_write_removes_what_this_call_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = export._atomic_write
    calls: list[str] = []

    def flaky(path: Path, text: str) -> None:
        calls.append(path.name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(path, text)

    monkeypatch.setattr(export, "_atomic_write", flaky)
    out = tmp_path / "out" / "deep"
    with pytest.raises(OSError, match="No space left"):
        main(["--tracker-file", str(_runs(tmp_path)), "-o", str(out), "--format", "csv,json", "-q"])
    assert calls == ["report-lines.csv", "report-totals.csv", "report.json"]
    assert not (tmp_path / "out").exists()


def test_render_failure_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any) -> str:
        raise RuntimeError("render failed")

    monkeypatch.setattr(export, "totals_csv", boom)
    out = tmp_path / "existing"
    out.mkdir()
    with pytest.raises(RuntimeError, match="render failed"):
        main(["--tracker-file", str(_runs(tmp_path)), "-o", str(out), "--format", "csv", "-q"])
    assert list(out.iterdir()) == []  # report-lines.csv was rendered but never written


def test_output_under_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match=r"--output .*f/x: .*f is not a directory"):
        main(["--tracker-file", str(_runs(tmp_path)), "-o", str(tmp_path / "f" / "x"), "-q"])
