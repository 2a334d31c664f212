"""pytest imports test modules of directories without ``__init__.py`` by their basename
(rootdir import mode), so two such files with one name stop the whole run at collection.
Helpers adding tests in parallel did this twice; this names the clash before CI does."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def basename_clashes(root: Path) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in root.rglob("test_*.py"):
        if not (path.parent / "__init__.py").exists():
            seen[path.name].append(str(path.relative_to(root)))
    return {name: sorted(paths) for name, paths in seen.items() if len(paths) > 1}


def test_test_module_basenames_are_unique() -> None:
    assert basename_clashes(TESTS) == {}


def test_a_clash_is_found(tmp_path: Path) -> None:
    for sub in ("unit", "e2e"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "test_same.py").write_text("")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "test_same.py").write_text("")
    assert basename_clashes(tmp_path) == {"test_same.py": ["e2e/test_same.py", "unit/test_same.py"]}
