"""core.outdir: output directories made with their parents, removed again on failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.core.outdir import ensure_output_dir, remove_created


def test_creates_missing_parents_and_reports_what_it_made(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    assert ensure_output_dir(target, "--output") == [tmp_path / "a", tmp_path / "a" / "b", target]
    assert target.is_dir() and list(target.iterdir()) == []  # the write probe is gone
    assert ensure_output_dir(target, "--output") == []  # existing: nothing made


def test_a_file_in_the_path_is_an_error_and_nothing_is_made(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match=r"^--output .*/f/x/y: .*/f is not a directory; pass a directory$"):
        ensure_output_dir(tmp_path / "f" / "x" / "y", "--output")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_uncreatable_location_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^-o /proc/self/x/y: cannot create it \("):
        ensure_output_dir(Path("/proc/self/x/y"), "-o")


def test_remove_created_keeps_a_directory_someone_wrote_into(tmp_path: Path) -> None:
    made = ensure_output_dir(tmp_path / "a" / "b", "--output")
    (tmp_path / "a" / "keep.txt").write_text("another writer")
    remove_created(made)
    assert not (tmp_path / "a" / "b").exists()
    assert (tmp_path / "a" / "keep.txt").exists()
