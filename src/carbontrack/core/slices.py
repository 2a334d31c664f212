"""The identity of a slice of a long-running workload (pure, shared by the operator that
records slices and the reports that read them): ``<workload uid>@<slice start, epoch s>``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# the functional unit a slice without unit data records (with a count of 1); reserved, so a
# workload's own unit name can never make reports take counted slices for unit-less ones
NO_UNIT = "slice"


def slice_key(workload_uid: str, start: datetime) -> str:
    return f"{workload_uid}@{int((start - EPOCH).total_seconds())}"


def parse_slice_key(key: str) -> tuple[str, datetime] | None:
    """(workload uid, slice start), or None for a key that is not a slice's (a Job's UID)."""
    uid, sep, stamp = key.rpartition("@")
    if not sep or not uid or not stamp.isdigit():
        return None
    return uid, EPOCH + timedelta(seconds=int(stamp))
