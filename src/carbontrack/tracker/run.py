"""Run a command under a tracker: spawn it, forward signals, reap it, report its exit.

Signals: SIGINT, SIGTERM and SIGHUP sent to `carbontrack run` are forwarded to the child.
A signal the terminal sends to the whole foreground process group (Ctrl-C, hang-up) already
reached the child, which shares our group, so it is not sent a second time (told apart by
``si_code == SI_KERNEL``). The exit status is the child's, or 128+N if a signal N killed it.

The signals and SIGCHLD are blocked and taken with ``sigwaitinfo`` in the main thread: no
polling, so waiting costs no CPU, and no handler can interrupt the result writing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Sequence

from ..core.errors import ConfigError
from .api import Tracker
from .result import RunResult
from .scope import ProcessTreeScope

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_SI_KERNEL = 0x80  # Linux si_code of signals raised by the kernel (tty job control)


def find_command(argv: Sequence[str]) -> str:
    if not argv:
        raise ConfigError("no command given: use carbontrack run [OPTIONS] -- CMD [ARGS...]")
    exe = shutil.which(argv[0])
    if exe is None:
        raise ConfigError(f"command not found: {argv[0]!r} is not an executable file or on PATH")
    return exe


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by signal N: 128+N, as shells report it


def run_command(argv: Sequence[str], tracker: Tracker) -> tuple[int, RunResult]:
    """Validate, spawn, track and reap ``argv``; returns (exit status, result)."""
    exe = find_command(argv)
    tracker.prepare()  # zone, PUE, output directory: fail before anything runs
    waited = {*FORWARDED, signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        # The child gets the mask we had before blocking; the sampler thread started below
        # inherits the blocked mask, so every signal comes to sigwaitinfo here.
        # Python ignores SIGPIPE and SIGXFSZ; exec would pass that on, so reset them.
        try:
            pid = os.posix_spawn(
                exe,
                list(argv),
                os.environ,
                setsigmask=old_mask,
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            )
        except OSError as err:
            raise ConfigError(f"cannot run {argv[0]!r}: {err.strerror or err}") from None
        tracker.set_command(argv, pid)
        try:
            tracker.start()
        except BaseException:
            # Validated already, so this is rare: never leave the command running untracked.
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
            raise
        status, cpu_s = _wait(pid, waited)
        scope = tracker.scope
        if isinstance(scope, ProcessTreeScope):
            scope.set_final_cpu_seconds(cpu_s)
        tracker.exit_code = exit_code(status)
        result = tracker.stop()
        return tracker.exit_code, result
    finally:
        # Drop signals forwarded already or that came after the child ended, then restore.
        while signal.sigtimedwait(waited, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _wait(pid: int, waited: set[signal.Signals]) -> tuple[int, float]:
    """Forward signals until the child exits; returns (wait status, child CPU seconds)."""
    while True:
        got, status, usage = os.wait4(pid, os.WNOHANG)
        if got == pid:
            return status, usage.ru_utime + usage.ru_stime
        info = signal.sigwaitinfo(waited)
        if info.si_signo != signal.SIGCHLD and info.si_code != _SI_KERNEL:
            # ProcessLookupError: it exited in between, and its SIGCHLD is pending
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, info.si_signo)
