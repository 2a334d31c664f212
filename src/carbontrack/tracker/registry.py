"""Process-wide registry of live trackers, so nested or concurrent trackers never double
count silently.

Rules (docs/tracker.md):
* nested: a tracker started while another is live *in the same thread* is its child. It
  reports its own window with ``parent_run_id`` set; the parent measures its own window
  independently, so its totals already include the child's energy exactly once. Sum only
  rows without a parent to total a process's runs.
* concurrent: trackers live at the same time in *different threads* measure the same
  machine (or the same process) energy. Each still reports; both list the other in
  ``overlaps_with`` and an ``OverlapWarning`` is issued, because adding them double counts.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field


class OverlapWarning(UserWarning):
    """Two trackers measured overlapping energy; their totals must not be added."""


@dataclass
class _Entry:
    thread: int
    parent: str | None
    overlaps: list[str] = field(default_factory=list)


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, _Entry] = {}
        self._stacks: dict[int, list[str]] = {}

    def enter(self, run_id: str) -> str | None:
        """Register a starting tracker; returns its parent's run id (same thread) or None."""
        me = threading.get_ident()
        with self._lock:
            stack = self._stacks.setdefault(me, [])
            parent = stack[-1] if stack else None
            entry = _Entry(me, parent)
            others = [rid for rid, e in self._live.items() if e.thread != me]
            for rid in others:
                entry.overlaps.append(rid)
                self._live[rid].overlaps.append(run_id)
            self._live[run_id] = entry
            stack.append(run_id)
        if others:
            warnings.warn(
                f"carbontrack: tracker {run_id} overlaps running tracker(s) {', '.join(others)} "
                "in other threads; they measure the same energy, do not add their totals",
                OverlapWarning,
                stacklevel=3,
            )
        return parent

    def leave(self, run_id: str) -> tuple[str, ...]:
        """Unregister; returns the run ids this tracker overlapped while it was live."""
        with self._lock:
            entry = self._live.pop(run_id, None)
            if entry is None:
                return ()
            stack = self._stacks.get(entry.thread, [])
            if run_id in stack:
                stack.remove(run_id)
            if not stack:
                self._stacks.pop(entry.thread, None)
            return tuple(entry.overlaps)

    def live(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._live)


# The one registry of this process. Trackers take it as a constructor argument (tests pass
# a fresh one); this default exists because "one process" is exactly the registry's scope.
PROCESS_REGISTRY = Registry()
