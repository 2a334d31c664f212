"""The operator's record store over the API server: find, add (exactly once) and list entries.

Writes are read-modify-write with a resourceVersion precondition, like the budget ledgers:
two writers (a crash-restarted replica, a retried accounting) can never both add a UID, and
the entry already stored wins over a new computation of the same Job, so a retry after a
crash writes the same numbers to budgets and annotations as the first attempt did.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from carbontrack.core.errors import ConfigError, TemporaryError
from carbontrack.core.records import (
    MAX_OBJECT_BYTES,
    MONTH_LABEL,
    RECORD_LABEL,
    ParsedObject,
    RecordEntry,
    days_between,
    entry_bytes,
    new_object,
    object_name,
    parse_object,
    record_day,
    shard_of,
)

from .kube import Conflict, Gone

log = logging.getLogger(__name__)

MAX_LINKS = 64  # 64 x 768 KiB a shard-day: far beyond any cluster; a guard against loops
CACHE_MARKS = 50_000  # ~150 bytes each: under 10 MB, ~all Jobs of a busy month's objects


class RecordApi(Protocol):
    async def get_record(self, namespace: str, name: str) -> dict[str, Any]: ...
    async def create_record(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    async def add_record_entries(self, namespace: str, name: str, entries: Mapping[str, Any],
                                 resource_version: str) -> dict[str, Any]: ...
    async def list_records(self, namespace: str, label_selector: str, limit: int,
                           token: str | None) -> tuple[list[dict[str, Any]], str | None]: ...


ErrorReporter = Callable[[str, str, list[ConfigError]], Awaitable[None]]


@dataclass(frozen=True)
class RecordMark:
    """That a Job is recorded, and a digest of the annotations recorded for it: enough to
    tell a genuine copy on the Job from a changed one without keeping whole entries."""

    uid: str
    keys: tuple[str, ...]
    digest: str

    @classmethod
    def of(cls, entry: RecordEntry) -> RecordMark:
        keys = tuple(sorted(entry.annotations))
        return cls(entry.uid, keys, annotations_digest(entry.annotations, keys))

    def matches(self, annotations: Mapping[str, str]) -> bool:
        return annotations_digest(annotations, self.keys) == self.digest


def annotations_digest(annotations: Mapping[str, str], keys: tuple[str, ...]) -> str:
    text = "\n".join(f"{k}={annotations.get(k)}" for k in keys)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class _Known:
    """What the operator knows of one record object: its resourceVersion, the bytes of its
    entries and a mark per UID. ``resource_version`` None: the object did not exist when
    last looked at."""

    resource_version: str | None
    size: int
    marks: dict[str, RecordMark]


Waiting = tuple[RecordEntry, int, "asyncio.Future[RecordEntry]"]  # entry, its bytes, its outcome


class RecordStore:
    """``recorded`` and ``find`` (cheap: cached), ``add`` for one workload UID;
    ``entries_between`` for budgets and reports.

    The cache is written through: per recently used record object it keeps the
    resourceVersion, the size and a mark per UID (not whole entries), updated from every
    read and every write of this store. kopf re-lists every Job at start-up and each
    accounted one is checked, so 10,000 Jobs cost one GET per object (a few hundred), not one
    per Job; and adding an entry costs one PATCH, not a GET and a PATCH.

    Why a cached "not recorded" is safe: every write is conditional on the resourceVersion
    the cache holds. If anything else changed the object since (a second writer), the write
    fails with a conflict, the object is read again, and an entry found there for the UID
    wins: nothing is counted twice, whatever the cache said.

    Adds to one shard's objects are group-committed: entries waiting while a write is in
    flight go together in the next PATCH (a thousand workloads finishing together mean a
    few dozen writes per shard, not a thousand serial read-modify-writes).
    """

    def __init__(self, api: RecordApi, on_malformed: ErrorReporter | None = None,
                 max_object_bytes: int = MAX_OBJECT_BYTES) -> None:
        self._api = api
        self._max_bytes = max_object_bytes
        self._on_malformed = on_malformed
        self._objects: OrderedDict[tuple[str, str], _Known] = OrderedDict()
        self._marks = 0
        self._waiting: dict[tuple[str, str, int], list[Waiting]] = {}
        self._locks: dict[tuple[str, str, int], asyncio.Lock] = {}

    # ------------------------------------------------------------ the cache
    def _remember(self, namespace: str, name: str, known: _Known) -> None:
        key = (namespace, name)
        old = self._objects.pop(key, None)
        self._marks -= len(old.marks) if old else 0
        self._objects[key] = known
        self._marks += len(known.marks)
        while self._marks > CACHE_MARKS and len(self._objects) > 1:
            _, dropped = self._objects.popitem(last=False)
            self._marks -= len(dropped.marks)

    def _added(self, namespace: str, name: str, resource_version: str, added: list[Waiting]) -> None:
        known = self._objects.get((namespace, name))
        if known is None:
            return
        known.resource_version = resource_version
        for entry, size, _ in added:
            if entry.uid not in known.marks:
                known.marks[entry.uid] = RecordMark.of(entry)
                known.size += size
                self._marks += 1

    async def _read(self, namespace: str, name: str) -> tuple[ParsedObject, _Known] | None:
        """GET the object (and cache what it holds); None when it does not exist."""
        try:
            obj = await self._api.get_record(namespace, name)
        except Gone:
            self._remember(namespace, name, _Known(None, 0, {}))
            return None
        parsed = parse_object(obj)
        if parsed.errors and self._on_malformed is not None:
            await self._on_malformed(namespace, name, parsed.errors)
        known = _Known(str((obj.get("metadata") or {}).get("resourceVersion", "")), parsed.size,
                       {uid: RecordMark.of(e) for uid, e in parsed.entries.items()})
        self._remember(namespace, name, known)
        return parsed, known

    async def _known(self, namespace: str, name: str) -> _Known:
        known = self._objects.get((namespace, name))
        if known is not None:
            self._objects.move_to_end((namespace, name))
            return known
        got = await self._read(namespace, name)
        return got[1] if got is not None else self._objects[(namespace, name)]

    # ------------------------------------------------------------ reading
    async def recorded(self, namespace: str, uid: str, finished_at: datetime) -> RecordMark | None:
        """Whether the operator recorded this workload (from the cache; see the class doc)."""
        day, shard = record_day(finished_at), shard_of(uid)
        for link in range(MAX_LINKS):
            known = await self._known(namespace, object_name(day, shard, link))
            if uid in known.marks:
                return known.marks[uid]
            if known.resource_version is None or not known.marks:
                return None
        return None

    async def find(self, namespace: str, uid: str, finished_at: datetime) -> RecordEntry | None:
        """The stored entry of this workload; None when never recorded. Only an object the
        cache marks as holding the UID is read again (for the whole entry)."""
        if await self.recorded(namespace, uid, finished_at) is None:
            return None
        day, shard = record_day(finished_at), shard_of(uid)
        for link in range(MAX_LINKS):
            got = await self._read(namespace, object_name(day, shard, link))
            if got is None:
                return None
            entry = got[0].entries.get(uid)
            if entry is not None:
                return entry
        return None

    # ------------------------------------------------------------ writing
    async def add(self, namespace: str, uid: str, finished_at: datetime,
                  data: Mapping[str, Any]) -> RecordEntry:
        """Store ``data`` for ``uid`` unless an entry exists; return the stored entry (the
        existing one wins). Raises TemporaryError when the API keeps conflicting."""
        new = RecordEntry.from_dict(uid, namespace, data)  # never store what we cannot read
        chain = (namespace, record_day(finished_at), shard_of(uid))
        outcome: asyncio.Future[RecordEntry] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(chain, []).append((new, entry_bytes(data), outcome))
        lock = self._locks.setdefault(chain, asyncio.Lock())
        async with lock:
            batch = self._waiting.pop(chain, [])
            if batch:
                await self._commit(chain, batch)
        if not lock.locked() and chain not in self._waiting:
            self._locks.pop(chain, None)
        return await outcome

    async def _commit(self, chain: tuple[str, str, int], batch: list[Waiting]) -> None:
        """Write a batch; each entry's future gets its stored entry or the error."""
        try:
            for _ in range(10):
                try:
                    await self._place(chain, batch)
                    return
                except Conflict:
                    continue  # _place dropped the cached state of the object it wrote
            raise TemporaryError(f"CarbonRecords {object_name(chain[1], chain[2])} in {chain[0]} "
                                 "kept changing; will retry")
        except Exception as err:
            for *_, outcome in batch:
                if not outcome.done():
                    outcome.set_exception(err)
        except BaseException:  # the writing task was cancelled: the others' adds are retried
            for *_, outcome in batch:
                if not outcome.done():
                    outcome.set_exception(TemporaryError("the record write was interrupted; will retry"))
            raise

    async def _place(self, chain: tuple[str, str, int], batch: list[Waiting]) -> None:
        """Link by link: an entry whose UID an object holds resolves to that entry; entries
        that fit go into the first object with room, in one conditional write."""
        namespace, day, shard = chain
        todo = [w for w in batch if not w[2].done()]
        for link in range(MAX_LINKS):
            if not todo:
                return
            name = object_name(day, shard, link)
            known = await self._known(namespace, name)
            if any(e.uid in known.marks for e, _, _ in todo):
                got = await self._read(namespace, name)  # the stored entries win
                stored = got[0].entries if got is not None else {}
                for entry, _, outcome in todo:
                    if entry.uid in stored:
                        outcome.set_result(stored[entry.uid])
                todo = [w for w in todo if not w[2].done()]
                known = self._objects[(namespace, name)]
            fits = _fitting(todo, known.size if known.resource_version else 0, self._max_bytes,
                            first_always=known.resource_version is None or not known.marks)
            if fits:
                await self._write(namespace, name, day, shard, link, known, fits)
                written = {e.uid: e for e, _, _ in fits}
                for entry, _, outcome in todo:  # a UID added twice gets the one stored
                    if entry.uid in written:
                        outcome.set_result(written[entry.uid])
                todo = [w for w in todo if not w[2].done()]
        if todo:
            raise ConfigError(f"CarbonRecord {namespace}/{object_name(day, shard)} has "
                              f"{MAX_LINKS} full links; cannot record UIDs "
                              f"{', '.join(e.uid for e, _, _ in todo)}")

    async def _write(self, namespace: str, name: str, day: str, shard: int, link: int,
                     known: _Known, fits: list[Waiting]) -> None:
        entries = {e.uid: e.data for e, _, _ in fits}
        try:
            if known.resource_version is None:
                answer = await self._api.create_record(new_object(namespace, day, shard, link, entries))
                self._remember(namespace, name, _Known("", 0, {}))  # _added fills it in
            else:
                answer = await self._api.add_record_entries(namespace, name, entries, known.resource_version)
        except Conflict:
            self._forget_object(namespace, name)  # read it again next time
            raise
        self._added(namespace, name, str((answer.get("metadata") or {}).get("resourceVersion", "")), fits)

    def _forget_object(self, namespace: str, name: str) -> None:
        known = self._objects.pop((namespace, name), None)
        self._marks -= len(known.marks) if known else 0

    async def entries_between(self, namespace: str, start: datetime,
                              end: datetime) -> AsyncIterator[RecordEntry]:
        """Every valid entry of ``namespace`` that finished in [start, end), paged (records
        of a busy month are tens of MB: never all in memory at once)."""
        days = set(days_between(start, end))
        months = sorted({d[:7] for d in days})
        selector = f"{RECORD_LABEL}=jobs,{MONTH_LABEL} in ({','.join(months)})"
        token: str | None = None
        while True:
            items, token = await self._api.list_records(namespace, selector, 20, token)
            for obj in items:
                parsed = parse_object(obj)
                if parsed.errors and self._on_malformed is not None:
                    await self._on_malformed(namespace, str(obj["metadata"]["name"]), parsed.errors)
                for entry in parsed.entries.values():
                    if start <= entry.finished_at < end:
                        yield entry
            if not token:
                return


def _fitting(todo: list[Waiting], size: int, max_bytes: int, first_always: bool) -> list[Waiting]:
    """The entries (in order) that fit under ``max_bytes``; a new object takes its first
    entry whatever its size (an entry never fits nowhere)."""
    out: list[Waiting] = []
    uids: set[str] = set()
    for waiting in todo:
        if waiting[0].uid in uids:
            continue
        if size + waiting[1] <= max_bytes or (first_always and not out):
            uids.add(waiting[0].uid)
            out.append(waiting)
            size += waiting[1]
    return out
