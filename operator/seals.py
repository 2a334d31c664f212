"""Which accounted Jobs are final, so their budget ledger entries may be folded (ledger.py).

A Job is sealed once the operator has seen its accounting written (record, ledgers and
annotations): it is never accounted again, so after ``fold_after_s`` its individual ledger
entries can move into 15-minute buckets without changing any total. In memory only: after a
restart Jobs are sealed again as their events arrive.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .ledger import Ledger, bucket_start
from .period import Window


class Seals:
    def __init__(self, fold_after_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._fold_after_s = fold_after_s
        self._monotonic = monotonic
        # Job UID -> monotonic time its accounting was seen final (forgotten an hour after
        # folding was due, so the map stays bounded with or without budgets to fold into)
        self._sealed: dict[str, float] = {}
        self._check_at = 1024

    def seal(self, uid: str) -> None:
        now = self._monotonic()
        self._sealed.setdefault(uid, now)
        if len(self._sealed) >= self._check_at:
            horizon = self._fold_after_s + 3600.0
            for old in [u for u, at in self._sealed.items() if now - at > horizon]:
                del self._sealed[old]
            self._check_at = max(1024, 2 * len(self._sealed))

    def __len__(self) -> int:
        return len(self._sealed)

    def foldable(self, window: Window, ledger: Ledger) -> list[str]:
        """UIDs of entries to fold now: sealed long enough, inside a window whose buckets are
        each wholly inside or outside it (so totals stay exact): the start on a bucket
        boundary, and the end too unless the window slides (it then ends now, after every
        finished Job, and only moves later)."""
        if not self._sealed:
            return []
        if bucket_start(window.start) != window.start or (
                not window.sliding and bucket_start(window.end) != window.end):
            return []
        now = self._monotonic()
        return [e.uid for e in ledger.entries()
                if window.contains(e.finished_at)
                and now - self._sealed.get(e.uid, now + 1) >= self._fold_after_s]
