"""Atomic file writes for simulated kernel files.

Real readers (the exporter, the tracker) read these files while a test or the
node simulator rewrites them, so every write goes to a temporary file in the
same directory and is renamed over the target: a reader sees the old or the
new content, never a half-written number.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Replace ``path`` with ``text``; keep ``mode`` (or the old file's mode) on the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None and path.exists():
        mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644 if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
