"""Child processes that always go away: each in its own process group, logs to a file.

A ``Supervisor`` owns every process a cluster starts. ``stop()`` signals whole
process groups (a child's own children die with it), newest first, SIGTERM then
SIGKILL after a grace period. ``install_cleanup`` ties ``stop()`` to interpreter
exit and to SIGTERM/SIGINT/SIGHUP so an interrupted test run leaves nothing behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from ..core.errors import TemporaryError


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def pgid(self) -> int:
        # start_new_session makes the child the leader of a group with its own pid
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def kill_group(pgid: int, grace_s: float, is_done: Callable[[], bool]) -> None:
    """SIGTERM the group, wait up to ``grace_s`` for ``is_done``, then SIGKILL the group."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if is_done():
            break
        time.sleep(0.05)
    # also reaps stragglers that the leader left behind in its group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@dataclass
class Supervisor:
    """Starts and stops the processes of one cluster. ``log_dir`` gets ``<name>.log``."""

    log_dir: Path
    grace_s: float = 5.0
    processes: list[ManagedProcess] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            try:
                popen = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(env) if env is not None else None,
                    cwd=cwd,
                    start_new_session=True,
                )
            except OSError as err:
                raise TemporaryError(f"cannot start {name} ({argv[0]}): {err}") from err
        proc = ManagedProcess(name, list(argv), log_path, popen)
        with self._lock:
            self.processes.append(proc)
        return proc

    def get(self, name: str) -> ManagedProcess:
        for p in self.processes:
            if p.name == name:
                return p
        raise KeyError(f"no process named {name!r}; have {[p.name for p in self.processes]}")

    def stop_one(self, proc: ManagedProcess) -> None:
        kill_group(proc.pgid, self.grace_s, lambda: proc.popen.poll() is not None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=self.grace_s)
        with self._lock:
            if proc in self.processes:
                self.processes.remove(proc)

    def stop(self) -> None:
        """Stop everything, newest first (kwok and the schedulers before the apiserver,
        the apiserver before etcd), so nothing logs errors about a vanished dependency."""
        with self._lock:
            procs = list(reversed(self.processes))
        for p in procs:
            self.stop_one(p)

    def pgids(self) -> list[int]:
        with self._lock:
            return [p.pgid for p in self.processes]


_handlers_installed = False
_cleanups: list[Callable[[], None]] = []
_cleanups_lock = threading.Lock()


def _run_cleanups() -> None:
    with _cleanups_lock:
        fns = list(reversed(_cleanups))
        _cleanups.clear()
    for fn in fns:
        with contextlib.suppress(Exception):  # one failing cleanup must not skip the others
            fn()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _run_cleanups()
    # Re-raise with the default action so the exit status says "killed by signal".
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_cleanup(fn: Callable[[], None]) -> Callable[[], None]:
    """Run ``fn`` at interpreter exit or on SIGTERM/SIGHUP (SIGINT raises
    KeyboardInterrupt, which unwinds through finalizers and then atexit). Returns a
    function that unregisters ``fn`` (call it after a normal, explicit stop)."""
    global _handlers_installed
    with _cleanups_lock:
        _cleanups.append(fn)
        if not _handlers_installed:
            atexit.register(_run_cleanups)
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, _on_signal)
            _handlers_installed = True

    def unregister() -> None:
        with _cleanups_lock:
            if fn in _cleanups:
                _cleanups.remove(fn)

    return unregister
