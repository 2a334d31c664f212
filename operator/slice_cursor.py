"""Where a long-running workload's slices stand: the latest recorded slice (operator memory,
else found again after a restart).

Slices of a workload are recorded strictly in order, so the latest recorded slice implies
every earlier one. After a restart the operator's own ``carbontrack.io/last-slice`` annotation
(start) and ``slice-end`` are a hint, used only when the record holds that slice (a namespace
user can write annotations, not records); otherwise the records are walked forward on the
current grid from the first slice in the catch-up window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from carbontrack.core import contract
from carbontrack.core.records import RecordEntry
from carbontrack.core.timeutil import parse_time

from .long_running_kinds import WorkloadFacts
from .record_store import RecordStore
from .settings import OperatorSettings
from .slices import EPOCH, Slice, slice_key, slice_start

LAST_SLICE = contract.LAST_SLICE  # start of the latest recorded slice, epoch s (a hint)
SLICE_END = contract.SLICE_END


@dataclass
class Latest:
    piece: Slice
    entry: RecordEntry


class SliceCursor:
    def __init__(self, records: RecordStore, settings: OperatorSettings) -> None:
        self._records = records
        self._settings = settings
        self._memory: dict[str, Latest | None] = {}  # workload UID -> latest recorded slice

    def moved(self, uid: str, latest: Latest) -> None:
        self._memory[uid] = latest

    def forget(self, uid: str) -> None:
        self._memory.pop(uid, None)

    async def latest(self, facts: WorkloadFacts, now: datetime) -> Latest | None:
        """The latest recorded slice: memory, else the operator's hint verified against the
        record, else a walk forward through the records from the first slice."""
        if facts.uid in self._memory:
            return self._memory[facts.uid]
        step = timedelta(seconds=self._settings.slice_length_s)
        hint = facts.annotations.get(LAST_SLICE, "")
        if hint.isdigit():
            start = EPOCH + timedelta(seconds=int(hint))
            try:  # the record is filed under the slice's end (whatever the length was then)
                end = parse_time(facts.annotations.get(SLICE_END, ""))
            except ValueError:
                end = start + step
            entry = await self._records.find(facts.namespace, slice_key(facts.uid, start), end)
            if entry is not None:
                return Latest(Slice(start, entry.finished_at), entry)
        first = max(facts.created_at, now - timedelta(seconds=self._settings.slice_catchup_s))
        start, found = slice_start(first, self._settings.slice_length_s), None
        while start + step <= now:
            mark = await self._records.recorded(facts.namespace, slice_key(facts.uid, start), start + step)
            if mark is None:
                break
            found, start = start, start + step
        if found is None:
            return None
        entry = await self._records.find(facts.namespace, slice_key(facts.uid, found), found + step)
        return Latest(Slice(found, entry.finished_at), entry) if entry else None
