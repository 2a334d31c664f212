"""Where a long-running workload's slices stand: the latest recorded slice (operator memory,
else found again after a restart).

Slices of a workload are recorded strictly in order, so the latest recorded slice implies
every earlier one. After a restart the operator's own ``carbontrack.io/last-slice`` annotation
(start) and ``slice-end`` are a hint, used only when the record holds that slice (a namespace
user can write annotations, not records); otherwise the namespace's records of the catch-up
window are scanned once (any grid) for each workload's latest slice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from carbontrack.core import contract
from carbontrack.core.records import RecordEntry
from carbontrack.core.slices import parse_slice_key
from carbontrack.core.timeutil import parse_time

from .long_running_kinds import WorkloadFacts
from .record_store import RecordStore
from .settings import OperatorSettings
from .slices import EPOCH, Slice, slice_key

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
        self._scanned: dict[str, dict[str, Latest]] = {}  # namespace -> what its records held

    def moved(self, uid: str, latest: Latest) -> None:
        self._memory[uid] = latest

    def forget(self, uid: str) -> None:
        self._memory.pop(uid, None)

    async def latest(self, facts: WorkloadFacts, now: datetime) -> Latest | None:
        """The latest recorded slice: memory, else the operator's hint verified against the
        record, else the latest found by a scan of the namespace's records."""
        if facts.uid in self._memory:
            return self._memory[facts.uid]
        step = timedelta(seconds=self._settings.slice_length_s)
        hint = _hint(facts.annotations, step)
        if hint is not None:
            start, end = hint
            entry = await self._records.find(facts.namespace, slice_key(facts.uid, start), end)
            if entry is not None:
                return Latest(Slice(start, entry.finished_at), entry)
        return (await self.recorded(facts.namespace, now)).get(facts.uid)

    async def recorded(self, namespace: str, now: datetime) -> dict[str, Latest]:
        """The latest recorded slice of every workload of ``namespace`` in the catch-up window
        (scanned once; the window is the namespace's, not one workload's)."""
        scanned = self._scanned.get(namespace)
        if scanned is None:
            first = now - timedelta(seconds=self._settings.slice_catchup_s)
            scanned = self._scanned[namespace] = await self._scan(namespace, first, now)
        return scanned

    async def _scan(self, namespace: str, first: datetime, now: datetime) -> dict[str, Latest]:
        """The latest recorded slice of every workload of ``namespace`` among the records that
        finished in the catch-up window, whatever grid they were cut on: one paged read per
        namespace after a start, then the operator's memory takes over. A walk along the
        current grid would miss slices cut on another (a restart with a changed
        --slice-length and no hint; annotating is off by default) and account their time
        again."""
        latest: dict[str, Latest] = {}
        async for entry in self._records.entries_between(namespace, first, now):
            parsed = parse_slice_key(entry.uid)
            if parsed is None:
                continue
            uid, start = parsed
            if uid not in latest or entry.finished_at > latest[uid].piece.end:
                latest[uid] = Latest(Slice(start, entry.finished_at), entry)
        return latest


def _hint(annotations: Mapping[str, str], step: timedelta) -> tuple[datetime, datetime] | None:
    """(start, end) of the slice the ``last-slice`` and ``slice-end`` annotations name, or None.
    Namespace users can write both: a value that is no time (``²``, twenty nines, a date that
    overflows in UTC) is no hint, never an exception that would stop the round for every
    workload."""
    text = annotations.get(LAST_SLICE, "")
    if not (text.isascii() and text.isdigit()):
        return None
    try:
        start = EPOCH + timedelta(seconds=int(text))
        grid_end = start + step
    except OverflowError:
        return None
    try:  # the record is filed under the slice's end (whatever the length was then)
        return start, parse_time(annotations.get(SLICE_END, ""))
    except (ValueError, OverflowError):
        return start, grid_end
