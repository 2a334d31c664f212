"""The operator's record store over the API server: find, add (exactly once) and list entries.

Writes are read-modify-write with a resourceVersion precondition, like the budget ledgers:
two writers (a crash-restarted replica, a retried accounting) can never both add a UID, and
the entry already stored wins over a new computation of the same Job, so a retry after a
crash writes the same numbers to budgets and annotations as the first attempt did.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
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
CACHE_ENTRIES = 2048  # ~1.5 KB each: a few MB at most


class RecordApi(Protocol):
    async def get_record(self, namespace: str, name: str) -> dict[str, Any]: ...
    async def create_record(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    async def add_record_entries(self, namespace: str, name: str, entries: Mapping[str, Any],
                                 resource_version: str) -> dict[str, Any]: ...
    async def list_records(self, namespace: str, label_selector: str, limit: int,
                           token: str | None) -> tuple[list[dict[str, Any]], str | None]: ...


ErrorReporter = Callable[[str, str, list[ConfigError]], Awaitable[None]]


class RecordStore:
    """``find`` and ``add`` for one Job UID; ``entries_between`` for budgets and reports.

    A small cache of recently found entries saves GETs for events on accounted Jobs; it is
    only ever a positive cache (a UID seen in a record stays recorded: records are
    append-only), so it cannot make a Job look unaccounted, and a miss always reads the API.
    """

    def __init__(self, api: RecordApi, on_malformed: ErrorReporter | None = None,
                 max_object_bytes: int = MAX_OBJECT_BYTES) -> None:
        self._api = api
        self._max_bytes = max_object_bytes
        self._on_malformed = on_malformed
        self._seen: OrderedDict[tuple[str, str], RecordEntry] = OrderedDict()

    def _remember(self, namespace: str, entry: RecordEntry) -> None:
        self._seen[(namespace, entry.uid)] = entry
        self._seen.move_to_end((namespace, entry.uid))
        while len(self._seen) > CACHE_ENTRIES:
            self._seen.popitem(last=False)

    async def _read(self, namespace: str, name: str) -> tuple[ParsedObject, str] | None:
        try:
            obj = await self._api.get_record(namespace, name)
        except Gone:
            return None
        parsed = parse_object(obj)
        if parsed.errors and self._on_malformed is not None:
            await self._on_malformed(namespace, name, parsed.errors)
        return parsed, str((obj.get("metadata") or {}).get("resourceVersion", ""))

    async def find(self, namespace: str, uid: str, finished_at: datetime) -> RecordEntry | None:
        """The stored entry of this Job, or None when the operator never recorded it."""
        cached = self._seen.get((namespace, uid))
        if cached is not None:
            return cached
        day, shard = record_day(finished_at), shard_of(uid)
        for link in range(MAX_LINKS):
            got = await self._read(namespace, object_name(day, shard, link))
            if got is None:
                return None
            entry = got[0].entries.get(uid)
            if entry is not None:
                self._remember(namespace, entry)
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
                await self._api.create_record(new_object(namespace, day, shard, link,
                                                         {uid: new.data}))
                self._remember(namespace, new)
                return new
            parsed, rv = got
            existing = parsed.entries.get(uid)
            if existing is not None:
                self._remember(namespace, existing)
                return existing
            if parsed.size + size > self._max_bytes:
                continue  # full: the next link (existing links are checked for the UID too)
            await self._api.add_record_entries(namespace, name, {uid: new.data}, rv)
            self._remember(namespace, new)
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
