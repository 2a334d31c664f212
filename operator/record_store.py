"""The operator's record store over the API server: find, add (exactly once) and list entries.

Writes are read-modify-write with a resourceVersion precondition, like the budget ledgers:
two writers (a crash-restarted replica, a retried accounting) can never both add a UID, and
the entry already stored wins over a new computation of the same Job, so a retry after a
crash writes the same numbers to budgets and annotations as the first attempt did.
"""

from __future__ import annotations

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


class RecordStore:
    """``recorded`` (cheap, cached), ``find`` and ``add`` for one Job UID;
    ``entries_between`` for budgets and reports.

    The cache holds, per recently read record object, a mark per UID (not whole entries):
    kopf re-lists every Job at start-up and each accounted one is checked, so 10,000 Jobs
    cost one GET per object (a few hundred), not one per Job. Only the operator writes
    records and it updates the cache on each add, so a cached object is current; were it
    not (a second writer), a wrong "not recorded" only makes the accounting path read the
    API (``find`` never uses the cache) and find the entry: nothing is counted twice.
    """

    def __init__(self, api: RecordApi, on_malformed: ErrorReporter | None = None,
                 max_object_bytes: int = MAX_OBJECT_BYTES) -> None:
        self._api = api
        self._max_bytes = max_object_bytes
        self._on_malformed = on_malformed
        self._objects: OrderedDict[tuple[str, str], dict[str, RecordMark]] = OrderedDict()
        self._marks = 0

    def _cache(self, namespace: str, name: str, parsed: ParsedObject) -> None:
        key = (namespace, name)
        old = self._objects.pop(key, None)
        self._marks -= len(old or {})
        marks = {uid: RecordMark.of(e) for uid, e in parsed.entries.items()}
        self._objects[key] = marks
        self._marks += len(marks)
        while self._marks > CACHE_MARKS and len(self._objects) > 1:
            _, dropped = self._objects.popitem(last=False)
            self._marks -= len(dropped)

    def _cache_add(self, namespace: str, name: str, entry: RecordEntry) -> None:
        marks = self._objects.get((namespace, name))
        if marks is not None and entry.uid not in marks:
            marks[entry.uid] = RecordMark.of(entry)
            self._marks += 1

    async def _read(self, namespace: str, name: str) -> tuple[ParsedObject, str] | None:
        try:
            obj = await self._api.get_record(namespace, name)
        except Gone:
            return None
        parsed = parse_object(obj)
        if parsed.errors and self._on_malformed is not None:
            await self._on_malformed(namespace, name, parsed.errors)
        self._cache(namespace, name, parsed)
        return parsed, str((obj.get("metadata") or {}).get("resourceVersion", ""))

    async def recorded(self, namespace: str, uid: str, finished_at: datetime) -> RecordMark | None:
        """Whether the operator recorded this Job (cached per object; see the class doc)."""
        day, shard = record_day(finished_at), shard_of(uid)
        for link in range(MAX_LINKS):
            name = object_name(day, shard, link)
            marks = self._objects.get((namespace, name))
            if marks is None:
                got = await self._read(namespace, name)
                if got is None:
                    return None
                marks = self._objects.get((namespace, name), {})
            else:
                self._objects.move_to_end((namespace, name))
            if uid in marks:
                return marks[uid]
            if len(marks) == 0:
                return None
        return None

    async def find(self, namespace: str, uid: str, finished_at: datetime) -> RecordEntry | None:
        """The stored entry of this Job, read from the API; None when never recorded."""
        day, shard = record_day(finished_at), shard_of(uid)
        for link in range(MAX_LINKS):
            got = await self._read(namespace, object_name(day, shard, link))
            if got is None:
                return None
            entry = got[0].entries.get(uid)
            if entry is not None:
                return entry
        return None

    async def add(self, namespace: str, uid: str, finished_at: datetime,
                  data: Mapping[str, Any]) -> RecordEntry:
        """Store ``data`` for ``uid`` unless an entry exists; return the stored entry (the
        existing one wins). Raises TemporaryError when the API keeps conflicting."""
        new = RecordEntry.from_dict(uid, namespace, data)  # never store what we cannot read
        day, shard = record_day(finished_at), shard_of(uid)
        size = entry_bytes(data)
        for _ in range(10):
            try:
                return await self._add_once(namespace, uid, day, shard, new, size)
            except Conflict:
                continue
        raise TemporaryError(f"CarbonRecord for Job UID {uid} kept changing; will retry")

    async def _add_once(self, namespace: str, uid: str, day: str, shard: int,
                        new: RecordEntry, size: int) -> RecordEntry:
        for link in range(MAX_LINKS):
            name = object_name(day, shard, link)
            got = await self._read(namespace, name)
            if got is None:
                created = await self._api.create_record(new_object(namespace, day, shard, link,
                                                                   {uid: new.data}))
                self._cache(namespace, name, parse_object(created))
                return new
            parsed, rv = got
            existing = parsed.entries.get(uid)
            if existing is not None:
                return existing
            if parsed.size + size > self._max_bytes:
                continue  # full: the next link (existing links are checked for the UID too)
            await self._api.add_record_entries(namespace, name, {uid: new.data}, rv)
            self._cache_add(namespace, name, new)
            return new
        raise ConfigError(f"CarbonRecord {namespace}/{object_name(day, shard)} has "
                          f"{MAX_LINKS} full links; cannot record Job UID {uid}")

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
