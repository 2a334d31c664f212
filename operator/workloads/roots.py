"""Root-owner resolution for the operator: is this workload the unit of accounting, or does
it belong to a workload above it (a JobSet's Jobs, a RayJob's RayCluster)?

The walk is ``carbontrack.core.owners.RootWalk`` (shared with the exporter, so both lead a
pod to the same root); this module drives it with the operator's API reads. The workload's
own body is fed first (no read), and only a workload with a controller ownerReference costs
reads (one GET per owner above it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from carbontrack.core.owners import OwnerRef, Resolution, RootWalk, controller_ref, self_ref

# (namespace, owner) -> its body, or None when it does not exist
OwnerReader = Callable[[str, OwnerRef], Awaitable[Mapping[str, Any] | None]]


def needs_walk(body: Mapping[str, Any]) -> bool:
    """False for a workload without a controller: it is its own root (no reads)."""
    return controller_ref(body.get("metadata") or {}) is not None


async def resolve_root(body: Mapping[str, Any], read: OwnerReader, max_depth: int = 8) -> Resolution:
    namespace = str((body.get("metadata") or {}).get("namespace", ""))
    walk = RootWalk(self_ref(body), max_depth)
    walk.feed(body)
    while (ref := walk.pending) is not None:
        walk.feed(await read(namespace, ref))
    assert walk.result is not None
    return walk.result
