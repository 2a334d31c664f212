"""Output directories: created with their parents (as ``pip download -d`` does), checked for
writing before any work starts, and removed again if the work fails before writing into
them — a failed command leaves nothing behind.

Used by ``carbontrack run --output`` and ``carbontrack report -o``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import ConfigError


def ensure_output_dir(directory: Path, flag: str) -> list[Path]:
    """Make ``directory`` exist and be writable; return the directories this call created
    (outermost first) so a caller can remove them with :func:`remove_created` if its work
    fails. Raises ConfigError naming ``flag`` when the path cannot be created or written;
    then nothing this call created remains."""
    missing: list[Path] = []
    for p in (directory, *directory.parents):
        if p.is_dir():
            break
        if p.exists() or p.is_symlink():  # a file (or a dangling link) where a directory goes
            raise ConfigError(f"{flag} {directory}: {p} is not a directory; pass a directory")
        missing.append(p)
    created: list[Path] = []
    try:
        for p in reversed(missing):
            p.mkdir()
            created.append(p)
        probe = directory / f".carbontrack-probe-{os.getpid()}-{os.urandom(4).hex()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        remove_created(created)
        what = "create" if len(created) < len(missing) else "write to"
        raise ConfigError(
            f"{flag} {directory}: cannot {what} it ({err.strerror or err}); pass a writable directory"
        ) from None
    return created


def remove_created(created: list[Path]) -> None:
    """Remove the directories :func:`ensure_output_dir` created, innermost first; one that
    holds anything (another process wrote there) stays."""
    for p in reversed(created):
        with contextlib.suppress(OSError):
            p.rmdir()
