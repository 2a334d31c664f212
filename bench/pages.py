"""Writing a bench page: the script writes the page whole; a dated ``## Notes`` section that
a person added (figures measured by hand, each with the command that produced it) is kept.

tests/unit/test_bench_pages.py checks every page in docs/performance/ against its script.
"""

from __future__ import annotations

from pathlib import Path

NOTES = "\n## Notes"


def keep_notes(page: Path, generated: str) -> str:
    """``generated`` followed by the page's existing notes section, if it has one."""
    old = page.read_text() if page.exists() else ""
    notes = old[old.index(NOTES):] if NOTES in old else ""
    return generated.rstrip("\n") + "\n" + notes if notes else generated


def write(page: Path, generated: str) -> None:
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(keep_notes(page, generated))
