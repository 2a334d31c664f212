"""Period slices of long-running workloads (pure): where a slice starts and ends, which are
due, and a slice's identity.

A Deployment, StatefulSet, LeaderWorkerSet or InferenceService never finishes, so it is
accounted per slice of wall time. Slices lie on a fixed UTC grid of ``length_s`` seconds
counted from the Unix epoch (hourly by default: 00:00-01:00, ...), so every operator
replica, before and after a restart, cuts the same slices. A slice's identity is the
workload's UID plus the slice start (``slice_key``): the CarbonRecord store adds a key at
most once, so a slice is recorded exactly once however often it is attempted.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from carbontrack.core.slices import EPOCH, parse_slice_key, slice_key

__all__ = ["EPOCH", "Slice", "contiguous", "due_slices", "grid_slice", "parse_slice_key",
           "slice_key", "slice_start"]


@dataclass(frozen=True, order=True)
class Slice:
    """[start, end) in UTC. ``end`` is earlier than the grid end only for a deleted
    workload's last slice (it ends at the deletion)."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def check_length(length_s: float) -> float:
    if not math.isfinite(length_s) or length_s < 1 or length_s != int(length_s):
        raise ValueError(f"slice length must be a whole number of seconds >= 1, got {length_s!r}")
    return length_s


def slice_start(at: datetime, length_s: float) -> datetime:
    """Start of the grid slice holding ``at`` (a slice holds its start, not its end)."""
    check_length(length_s)
    offset = (at - EPOCH).total_seconds()
    return EPOCH + timedelta(seconds=math.floor(offset / length_s) * length_s)


def grid_slice(at: datetime, length_s: float) -> Slice:
    start = slice_start(at, length_s)
    return Slice(start, start + timedelta(seconds=length_s))


def due_slices(first: datetime, resume_at: datetime | None, now: datetime, length_s: float,
               settle_s: float, ended_at: datetime | None = None, limit: int = 1000) -> list[Slice]:
    """Slices to account, oldest first: from the slice holding ``first`` (the workload's
    creation), or from ``resume_at`` (the end of the latest recorded slice), up to the last
    slice whose end lies ``settle_s`` (a scrape interval plus margin) in the past. Each slice
    ends at the grid line after its start, so after a change of the slice length the first
    new slice runs from the old slice's end to the new grid (no gap, no overlap).
    ``ended_at`` (deletion): the slice holding it ends there and is the last one. At most
    ``limit`` slices (a long outage is caught up over several rounds). ``first`` is also the
    catch-up bound: a latest recorded slice that ended before the slice holding it resumes at
    that slice, as when no record is found, so what is counted after a long outage does not
    depend on whether the (user-writable) ``last-slice`` hint led to the record."""
    floor = slice_start(first, length_s)
    start = floor if resume_at is None or resume_at < floor else resume_at
    if ended_at is not None and resume_at is not None and ended_at <= start:
        return []
    out: list[Slice] = []
    while len(out) < limit:
        end = slice_start(start, length_s) + timedelta(seconds=length_s)
        if ended_at is not None and ended_at < end:
            end = max(ended_at, start + timedelta(seconds=1))
            if end + timedelta(seconds=settle_s) <= now:
                out.append(Slice(start, end))
            break
        if end + timedelta(seconds=settle_s) > now:
            break
        out.append(Slice(start, end))
        start = end
    return out


def contiguous(slices: list[Slice]) -> bool:
    """Each slice starts where the one before ended (no gap, no overlap)."""
    ordered = sorted(slices)
    return all(a.end == b.start for a, b in itertools.pairwise(ordered))
