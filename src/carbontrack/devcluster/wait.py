"""Waiting with deadlines: every wait in the harness and the e2e tests goes through here,
so a stuck test fails with what it waited for and the last value it saw."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A wait ran past its deadline (an AssertionError so pytest shows it as a failure)."""


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout_s: float,
    *,
    interval_s: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``probe`` until it returns something truthy; return that. Exceptions from the
    probe count as "not yet" and the last one is reported on timeout."""
    deadline = clock() + timeout_s
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except Exception as err:  # reported below if the deadline passes
            last = err
        if clock() >= deadline:
            raise WaitTimeout(f"timed out after {timeout_s:g} s waiting for {what}; last: {last!r}")
        sleep(interval_s)
