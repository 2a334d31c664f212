"""The operator's durable record of accounted workloads (pure part): naming, entries, parsing.

A ``CarbonRecord`` object holds the entries of the Jobs of one namespace that finished on one
UTC day and whose UID hashes to one of ``SHARDS`` shards; when an object would grow past
``MAX_OBJECT_BYTES`` the next entries go to a link object (``...-1``, ``...-2``). Why this
shape (docs/architecture.md "The accounting record"): etcd refuses objects over 1.5 MiB and
slows with many small ones; at 100,000 Jobs a month in one namespace a day holds ~3,300
entries of ~3 KB, ~660 KiB per shard (bench/bench_records.py), and a quiet namespace creates
only the shards its Jobs hash to. The name of the object a Job's entry lives in follows from the Job's
namespace, finish time and UID alone, so exactly-once needs no index: look there first.

Only the operator's ServiceAccount can write CarbonRecords (chart RBAC; users get read
access through the aggregated ``view`` role), so an entry is the operator's statement, unlike
the annotations on the Job, which are a convenience copy.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from . import contract
from .errors import ConfigError
from .timeutil import format_time, parse_time

GROUP, VERSION, PLURAL, KIND = contract.API_GROUP, contract.API_VERSION, "carbonrecords", "CarbonRecord"
SHARDS = 16
MAX_OBJECT_BYTES = 768 * 1024  # half of etcd's default 1.5 MiB request limit: room to spare
DAY_LABEL = contract.DAY_LABEL
MONTH_LABEL = contract.MONTH_LABEL
RECORD_LABEL = contract.RECORD_LABEL
CO2E_ANNOTATION = contract.CO2E_GRAMS
ENERGY_ANNOTATION = contract.ENERGY_KWH


def record_day(finished_at: datetime) -> str:
    """The UTC day a Job's entry is filed under (its finish time decides its period too)."""
    return finished_at.astimezone(timezone.utc).strftime("%Y-%m-%d")


def days_between(start: datetime, end: datetime) -> list[str]:
    """Every UTC day touching [start, end), for listing the records of a period."""
    day = start.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    while day < end:
        out.append(day.strftime("%Y-%m-%d"))
        day += timedelta(days=1)
    return out


def shard_of(uid: str) -> int:
    return hashlib.sha256(uid.encode()).digest()[0] % SHARDS


def object_name(day: str, shard: int, link: int = 0) -> str:
    """``jobs-2026-12-06-s03`` and its links ``jobs-2026-12-06-s03-1``, ... (DNS-1123)."""
    base = f"jobs-{day}-s{shard:02d}"
    return base if link == 0 else f"{base}-{link}"


def object_labels(day: str) -> dict[str, str]:
    return {RECORD_LABEL: "jobs", DAY_LABEL: day, MONTH_LABEL: day[:7]}


def new_object(namespace: str, day: str, shard: int, link: int,
               entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A CarbonRecord object (pure builder, tested by equality)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": object_name(day, shard, link), "namespace": namespace,
                     "labels": object_labels(day)},
        "spec": {"day": day, "shard": shard, "link": link,
                 "entries": {uid: dict(e) for uid, e in entries.items()}},
    }


def entry_bytes(entry: Mapping[str, Any]) -> int:
    return len(json.dumps(entry, separators=(",", ":")))


@dataclass(frozen=True)
class RecordEntry:
    """One accounted Job as the operator recorded it. ``data`` is the whole entry as stored;
    the fields are what budgets and the exactly-once check read from it."""

    uid: str
    namespace: str
    name: str
    finished_at: datetime
    accounted_at: datetime
    co2e_grams: float | None  # None: no energy data ("no data", never 0 g)
    energy_kwh: float | None
    labels: Mapping[str, str] = field(default_factory=dict)
    budgets: frozenset[str] = frozenset()
    annotations: Mapping[str, str] = field(default_factory=dict)  # the copy written to the Job
    data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, uid: str, namespace: str, data: Mapping[str, Any]) -> RecordEntry:
        """Raises ConfigError naming the entry: only the operator writes records, so a bad
        entry was edited by hand (an admin) and retrying cannot fix it."""
        try:
            if not isinstance(data, Mapping):
                raise ConfigError("entry is not an object")
            job = data.get("job")
            if not isinstance(job, Mapping) or job.get("uid") != uid:
                raise ConfigError("job.uid does not match the entry's key")
            labels = data.get("labels") or {}
            annotations = data.get("annotations") or {}
            budgets = data.get("budgets") or []
            if not isinstance(labels, Mapping) or not isinstance(annotations, Mapping) \
                    or not isinstance(budgets, list):
                raise ConfigError("labels/annotations must be maps and budgets a list")
            return cls(
                uid=uid,
                namespace=namespace,
                name=str(job.get("name", "")),
                finished_at=_time(data, "finishedAt"),
                accounted_at=_time(data, "accountedAt"),
                co2e_grams=_amount(data, "co2eGrams"),
                energy_kwh=_amount(data, "energyKwh"),
                labels={str(k): str(v) for k, v in labels.items()},
                budgets=frozenset(str(b) for b in budgets),
                annotations={str(k): str(v) for k, v in annotations.items()},
                data=data,
            )
        except ConfigError as err:
            raise ConfigError(
                f"malformed CarbonRecord entry {uid!r} in namespace {namespace}: {str(err)[:200]}; "
                "records are written only by the operator: restore the entry from a backup or "
                "delete it and re-account the Job"
            ) from err


def _amount(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{key} {value!r} is not a non-negative number")
    return float(value)


def _time(data: Mapping[str, Any], key: str) -> datetime:
    value = data.get(key)
    if not isinstance(value, str):
        raise ConfigError(f"{key} is missing")
    try:
        return parse_time(value)
    except ValueError as err:
        raise ConfigError(f"{key} {value!r} is not an RFC 3339 time") from err


@dataclass(frozen=True)
class ParsedObject:
    entries: dict[str, RecordEntry]
    errors: list[ConfigError]
    size: int  # bytes of the entries as stored (decides whether a new entry still fits)


def parse_object(obj: Mapping[str, Any]) -> ParsedObject:
    """Entries of a CarbonRecord object; malformed ones are reported, never raised, so one
    hand-edited entry does not stop the rest from counting."""
    found = obj.get("metadata")
    meta: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    namespace = str(meta.get("namespace", ""))
    spec = obj.get("spec") or {}
    raw = spec.get("entries") if isinstance(spec, Mapping) else None
    entries: dict[str, RecordEntry] = {}
    errors: list[ConfigError] = []
    size = 0
    if raw is not None and not isinstance(raw, Mapping):
        errors.append(ConfigError(
            f"CarbonRecord {namespace}/{meta.get('name')}: spec.entries is not a map; "
            "records are written only by the operator"))
        raw = None
    for uid, data in (raw or {}).items():
        size += entry_bytes(data) if isinstance(data, Mapping) else 0
        try:
            entries[str(uid)] = RecordEntry.from_dict(str(uid), namespace, data)
        except ConfigError as err:
            errors.append(err)
    return ParsedObject(entries, errors, size)


def build_entry(
    *,
    uid: str,
    namespace: str,
    name: str,
    kind: str,
    outcome: str,
    started_at: datetime,
    finished_at: datetime,
    accounted_at: datetime,
    co2e_grams: float | None,
    energy_kwh: float | None,
    labels: Mapping[str, str],
    budgets: frozenset[str],
    annotations: Mapping[str, str],
    inputs: Mapping[str, str],
    template: Mapping[str, Any],
    parallelism: int,
    queries: Mapping[str, str],
) -> dict[str, Any]:
    """The stored form of an entry (pure): everything a report line needs, without the Job."""
    return {
        "job": {"uid": uid, "name": name, "kind": kind, "outcome": outcome},
        "startedAt": format_time(started_at),
        "finishedAt": format_time(finished_at),
        "accountedAt": format_time(accounted_at),
        "co2eGrams": co2e_grams,
        "energyKwh": energy_kwh,
        "labels": dict(labels),
        "budgets": sorted(budgets),
        "annotations": dict(annotations),
        # user-written identity (MLflow/W&B run, functional unit): labels a report line,
        # never an amount; kept so the line survives the Job
        "inputs": dict(inputs),
        "template": dict(template),
        "parallelism": parallelism,
        "queries": dict(queries),
    }


def entry_as_job(entry: RecordEntry) -> dict[str, Any]:
    """A Job-shaped dict built only from the record, for code that reads accounted Jobs
    (reports): the values come from the operator's record, never from the live Job."""
    data = entry.data
    template = data.get("template") if isinstance(data.get("template"), Mapping) else {}
    inputs = data.get("inputs") if isinstance(data.get("inputs"), Mapping) else {}
    outcome = (data.get("job") or {}).get("outcome", "")
    annotations = {**dict(inputs or {}), **dict(entry.annotations)}
    # the annotations carry 6 significant figures for people; the record's full values are
    # what the budget ledgers add, so a report's totals equal the ledgers exactly
    if entry.co2e_grams is not None:
        annotations[CO2E_ANNOTATION] = repr(entry.co2e_grams)
    if entry.energy_kwh is not None:
        annotations[ENERGY_ANNOTATION] = repr(entry.energy_kwh)
    return {
        "metadata": {"namespace": entry.namespace, "name": entry.name, "uid": entry.uid,
                     "labels": dict(entry.labels),
                     "annotations": annotations},
        "spec": {"parallelism": data.get("parallelism", 1),
                 "template": {"spec": dict(template or {})}},
        "status": {"startTime": data.get("startedAt"),
                   "conditions": [{"type": outcome, "status": "True",
                                   "lastTransitionTime": data.get("finishedAt")}]},
    }
