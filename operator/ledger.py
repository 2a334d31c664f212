"""Budget ledger: one entry per accounted Job, keyed by Job UID.

The ledger is the budget's source of truth; `used` is always derived from it, never
incremented. Merging is a set union keyed by UID where the first accounting of a UID
wins, so it is idempotent, commutative for distinct UIDs and safe against retries,
operator restarts, re-delivered watch events and Jobs re-created under the same name
(a new Job has a new UID, so it is a new entry; the same Job is never two entries).
Stored in ``status.ledger`` as ``{uid: entry}`` so a JSON merge patch of one key adds
exactly one entry without rewriting the others.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from carbontrack.core.errors import ConfigError

from .period import Window
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


@dataclass(frozen=True)
class Totals:
    co2e_grams: float
    jobs_counted: int
    jobs_without_data: int


class Ledger:
    """Immutable map UID -> entry."""

    def __init__(self, entries: Iterable[LedgerEntry] = ()) -> None:
        self._entries: dict[str, LedgerEntry] = {}
        for entry in entries:
            self._entries.setdefault(entry.uid, entry)

    @classmethod
    def from_status(cls, raw: object) -> Ledger:
        """Strict: ConfigError naming the first malformed entry."""
        ledger, errors = cls.from_status_lenient(raw)
        if errors:
            raise errors[0]
        return ledger

    @classmethod
    def from_status_lenient(cls, raw: object) -> tuple[Ledger, list[ConfigError]]:
        """Every well-formed entry, plus one ConfigError per malformed one. The operator uses
        this so that one bad entry neither blocks the budget (a retry cannot fix it) nor
        drops the valid entries; the errors are reported as Events on the budget."""
        if not isinstance(raw, Mapping):
            return cls(), []
        entries: list[LedgerEntry] = []
        errors: list[ConfigError] = []
        for uid, data in raw.items():
            if not isinstance(data, Mapping):
                continue  # not an entry at all (the schema forbids it): nothing to count
            try:
                entries.append(LedgerEntry.from_dict(str(uid), data))
            except ConfigError as err:
                errors.append(err)
        return cls(entries), errors

    def to_status(self) -> dict[str, dict[str, object]]:
        return {uid: entry.to_dict() for uid, entry in sorted(self._entries.items())}

    def merge(self, other: Ledger | Iterable[LedgerEntry]) -> Ledger:
        """Union keyed by UID; an entry already present is kept (the first accounting wins)."""
        incoming = other.entries() if isinstance(other, Ledger) else other
        return Ledger([*self._entries.values(), *incoming])

    def __contains__(self, uid: object) -> bool:
        return uid in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ledger) and self._entries == other._entries

    def __hash__(self) -> int:  # immutable by construction
        return hash(frozenset(self._entries))

    def entries(self) -> list[LedgerEntry]:
        return list(self._entries.values())

    def within(self, window: Window) -> Ledger:
        """Entries whose Job finished inside ``window`` (older ones belong to past periods)."""
        return Ledger(e for e in self._entries.values() if window.contains(e.finished_at))

    def totals(self, window: Window) -> Totals:
        inside = self.within(window).entries()
        grams = math.fsum(e.co2e_grams for e in inside if e.co2e_grams is not None)
        without = sum(1 for e in inside if e.co2e_grams is None)
        return Totals(co2e_grams=grams, jobs_counted=len(inside), jobs_without_data=without)
