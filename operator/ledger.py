"""Budget ledger: one entry per accounted Job, keyed by Job UID.

The ledger is the budget's source of truth; `used` is always derived from it, never
incremented. Merging is a set union keyed by UID where the first accounting of a UID
wins, so it is idempotent, commutative for distinct UIDs and safe against retries,
operator restarts, re-delivered watch events and Jobs re-created under the same name
(a new Job has a new UID, so it is a new entry; the same Job is never two entries).
Stored in ``status.ledger`` as ``{uid: entry}`` so a JSON merge patch of one key adds
exactly one entry without rewriting the others.

Folding keeps the ledger small. An entry per Job costs ~195 bytes of status, so a budget
whose period sees thousands of Jobs would grow past etcd's object size limit (~1.5 MiB,
~7,700 entries) and every status write would carry it. Once a Job provably carries its
accounting annotation (so it is never accounted again), its entry may be folded into a
15-minute bucket of ``status.ledgerFolded``: totals plus a 12-hex-digit tag of each folded
UID (12 bytes a Job), so a UID folded once is still recognised and never added again.
Calendar periods start on 15-minute UTC boundaries (every UTC offset in use is a multiple
of 15 minutes) and rolling windows start on 15-minute UTC steps, so a bucket is wholly
inside or outside a period and totals stay exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from carbontrack.core.errors import ConfigError

from .period import Window, step_start
from .timeutil import format_time, parse_time


@dataclass(frozen=True)
class LedgerEntry:
    uid: str
    name: str
    finished_at: datetime  # when the Job completed or failed: decides its period
    accounted_at: datetime
    co2e_grams: float | None  # None: no energy data for this Job ("no data", never 0 g)
    energy_kwh: float | None

    def __post_init__(self) -> None:
        for value in (self.co2e_grams, self.energy_kwh):
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"ledger entry {self.uid}: invalid amount {value!r}")

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "finishedAt": format_time(self.finished_at),
            "accountedAt": format_time(self.accounted_at),
            "co2eGrams": self.co2e_grams,
            "energyKwh": self.energy_kwh,
        }

    @classmethod
    def from_dict(cls, uid: str, data: Mapping[str, object]) -> LedgerEntry:
        """Raises ConfigError naming the entry's UID and the field: a ledger is written by
        the operator, so a bad entry was hand-edited (or written by a broken client) and
        retrying cannot fix it."""

        def amount(key: str) -> float | None:
            value = data.get(key)
            if value is None:
                return None
            # bool is an int; strings like "NaN" or "12" are not what the operator writes
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{key} {value!r} is not a number")
            return float(value)

        def time(key: str) -> datetime:
            value = data.get(key)
            if not isinstance(value, str):
                raise ConfigError(f"{key} is missing")
            try:
                return parse_time(value)
            except ValueError as err:
                raise ConfigError(f"{key} {value!r} is not an RFC 3339 time") from err

        try:
            return cls(
                uid=uid,
                name=str(data.get("name", "")),
                finished_at=time("finishedAt"),
                accounted_at=time("accountedAt"),
                co2e_grams=amount("co2eGrams"),
                energy_kwh=amount("energyKwh"),
            )
        except (ConfigError, ValueError) as err:
            raise ConfigError(
                f"malformed CarbonBudget status.ledger entry {uid!r}: {str(err)[:200]}; "
                "fix or delete that entry (it is written by the operator, not by hand)"
            ) from err


TAG_LEN = 12  # hex digits of a UID kept per folded Job: 48 bits, P(collision) ~ n^2 / 2^49


bucket_start = step_start  # the 15-minute UTC bucket an instant falls in


def uid_tag(uid: str) -> str:
    return uid.replace("-", "").lower()[:TAG_LEN]


@dataclass(frozen=True)
class FoldedBucket:
    """Folded entries of Jobs that finished in [start, start + 15 min)."""

    start: datetime
    co2e_grams: float
    energy_kwh: float
    jobs: int
    jobs_without_data: int
    tags: str  # concatenated uid_tag() of every folded Job

    def tag_set(self) -> set[str]:
        return {self.tags[i : i + TAG_LEN] for i in range(0, len(self.tags), TAG_LEN)}

    def to_dict(self) -> dict[str, object]:
        return {"co2eGrams": self.co2e_grams, "energyKwh": self.energy_kwh, "jobs": self.jobs,
                "jobsWithoutData": self.jobs_without_data, "uidTags": self.tags}

    @classmethod
    def from_dict(cls, key: str, data: Mapping[str, object]) -> FoldedBucket:
        def amount(name: str) -> float:
            v = data.get(name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{name} {v!r} is not a number >= 0")
            return float(v)

        def count(name: str) -> int:
            v = data.get(name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name} {v!r} is not a count")
            return v

        try:
            start = parse_time(key)
            if bucket_start(start) != start:
                raise ConfigError("the key is not a 15-minute UTC boundary")
            grams, kwh = amount("co2eGrams"), amount("energyKwh")
            jobs, without = count("jobs"), count("jobsWithoutData")
            tags = data.get("uidTags")
            if not isinstance(tags, str) or len(tags) != TAG_LEN * jobs or without > jobs:
                raise ConfigError("uidTags must hold one 12-digit tag per Job")
        except (ConfigError, ValueError) as err:
            raise ConfigError(
                f"malformed CarbonBudget status.ledgerFolded bucket {key!r}: {str(err)[:200]}; "
                "it is written by the operator, not by hand"
            ) from err
        return cls(start, grams, kwh, jobs, without, tags)

    def add(self, entry: LedgerEntry) -> FoldedBucket:
        return FoldedBucket(self.start, self.co2e_grams + (entry.co2e_grams or 0.0),
                            self.energy_kwh + (entry.energy_kwh or 0.0), self.jobs + 1,
                            self.jobs_without_data + (entry.co2e_grams is None),
                            self.tags + uid_tag(entry.uid))


@dataclass(frozen=True)
class Fold:
    """A folded ledger and the merge patch that stores it (``status.ledger`` keys set to
    null, ``status.ledgerFolded`` buckets rewritten)."""

    ledger: Ledger
    ledger_patch: dict[str, None]
    folded_patch: dict[str, dict[str, object]]


@dataclass(frozen=True)
class Totals:
    co2e_grams: float
    jobs_counted: int
    jobs_without_data: int


class Ledger:
    """Immutable map UID -> entry, plus folded 15-minute buckets."""

    def __init__(self, entries: Iterable[LedgerEntry] = (),
                 folded: Iterable[FoldedBucket] = (), _tags: set[str] | None = None) -> None:
        self._folded: dict[datetime, FoldedBucket] = {b.start: b for b in folded}
        # tags of every folded UID: built on first membership test, or handed on by merge()
        # (same buckets) so a budget write does not rebuild a 100,000-tag set several times
        self._tags: set[str] | None = _tags
        self._entries: dict[str, LedgerEntry] = {}
        for entry in entries:
            if self._folded and self._is_folded(entry.uid):
                continue  # folded earlier: the first accounting won
            self._entries.setdefault(entry.uid, entry)

    def _is_folded(self, uid: str) -> bool:
        if self._tags is None:
            self._tags = set().union(*(b.tag_set() for b in self._folded.values()))
        return uid_tag(uid) in self._tags

    @classmethod
    def from_status(cls, raw: object) -> Ledger:
        """Strict: ConfigError naming the first malformed entry."""
        ledger, errors = cls.from_status_lenient(raw)
        if errors:
            raise errors[0]
        return ledger

    @classmethod
    def from_status_lenient(cls, raw: object, raw_folded: object = None) -> tuple[Ledger, list[ConfigError]]:
        """Every well-formed entry and folded bucket, plus one ConfigError per malformed one.
        The operator uses this so that one bad entry neither blocks the budget (a retry
        cannot fix it) nor drops the valid entries; the errors are reported as Events on the
        budget."""
        entries: list[LedgerEntry] = []
        folded: list[FoldedBucket] = []
        errors: list[ConfigError] = []
        for uid, data in (raw.items() if isinstance(raw, Mapping) else ()):
            if not isinstance(data, Mapping):
                continue  # not an entry at all (the schema forbids it): nothing to count
            try:
                entries.append(LedgerEntry.from_dict(str(uid), data))
            except ConfigError as err:
                errors.append(err)
        for key, data in (raw_folded.items() if isinstance(raw_folded, Mapping) else ()):
            if not isinstance(data, Mapping):
                continue
            try:
                folded.append(FoldedBucket.from_dict(str(key), data))
            except ConfigError as err:
                errors.append(err)
        return cls(entries, folded), errors

    def to_status(self) -> dict[str, dict[str, object]]:
        return {uid: entry.to_dict() for uid, entry in sorted(self._entries.items())}

    def merge(self, other: Ledger | Iterable[LedgerEntry]) -> Ledger:
        """Union keyed by UID; an entry already present, or folded, is kept (the first
        accounting wins)."""
        incoming = other.entries() if isinstance(other, Ledger) else other
        if self._folded and self._tags is None:
            self._is_folded("")  # build the tag set once, for this ledger and the merged one
        return Ledger([*self._entries.values(), *incoming], self._folded.values(), self._tags)

    def fold(self, uids: Iterable[str]) -> Fold:
        """Fold these UIDs' entries into their buckets (unknown UIDs are ignored)."""
        entries = dict(self._entries)
        buckets = dict(self._folded)
        ledger_patch: dict[str, None] = {}
        changed: set[datetime] = set()
        for uid in sorted(set(uids)):  # sorted: the same fold gives the same tags, any order
            entry = entries.pop(uid, None)
            if entry is None:
                continue
            start = bucket_start(entry.finished_at)
            bucket = buckets.get(start) or FoldedBucket(start, 0.0, 0.0, 0, 0, "")
            buckets[start] = bucket.add(entry)
            ledger_patch[uid] = None
            changed.add(start)
        folded_patch = {format_time(b): buckets[b].to_dict() for b in sorted(changed)}
        return Fold(Ledger(entries.values(), buckets.values()), ledger_patch, folded_patch)

    def folded(self) -> list[FoldedBucket]:
        return [self._folded[k] for k in sorted(self._folded)]

    def __contains__(self, uid: object) -> bool:
        return uid in self._entries or (isinstance(uid, str) and bool(self._folded)
                                         and self._is_folded(uid))

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Ledger) and self._entries == other._entries
                and self._folded == other._folded)

    def __hash__(self) -> int:  # immutable by construction
        return hash((frozenset(self._entries), frozenset(self._folded)))

    def entries(self) -> list[LedgerEntry]:
        return list(self._entries.values())

    def within(self, window: Window) -> Ledger:
        """Entries whose Job finished inside ``window`` and buckets that start inside it
        (older ones belong to past periods)."""
        return Ledger((e for e in self._entries.values() if window.contains(e.finished_at)),
                      (b for b in self._folded.values() if window.contains(b.start)))

    def totals(self, window: Window) -> Totals:
        entries = [e for e in self._entries.values() if window.contains(e.finished_at)]
        buckets = [b for b in self._folded.values() if window.contains(b.start)]
        grams = math.fsum([*(e.co2e_grams for e in entries if e.co2e_grams is not None),
                           *(b.co2e_grams for b in buckets)])
        without = sum(1 for e in entries if e.co2e_grams is None) + sum(b.jobs_without_data for b in buckets)
        return Totals(co2e_grams=grams, jobs_counted=len(entries) + sum(b.jobs for b in buckets),
                      jobs_without_data=without)
