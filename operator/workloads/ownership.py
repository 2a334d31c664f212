"""Which workloads are units of accounting: a workload is accounted when it is its own root
owner (core.owners); one whose root is another workload (a JobSet's Jobs, a RayJob's
submitter Job, a TrainJob's JobSet) is left to that root, whose PromQL covers its pods (the
exporter labels them with the root).

Decisions are remembered per UID and controller reference (ownerReferences of controllers do
not change in practice; a changed controller of the workload itself is re-walked). A walk that
ends on bad input (unknown owner kind, cycle, dangling owner) makes the workload its own root,
so it is still accounted, and posts one Warning Event on it saying what is wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from carbontrack.core.errors import TemporaryError
from carbontrack.core.owners import CYCLE, DANGLING, TOO_DEEP, UNKNOWN_KIND, OwnerRef, Resolution, controller_ref

from ..jobs import JobFacts
from .roots import OwnerReader, resolve_root

log = logging.getLogger(__name__)

EVENT_REASONS = {
    UNKNOWN_KIND: "CarbonOwnerUnknownKind",
    CYCLE: "CarbonOwnerCycle",
    DANGLING: "CarbonOwnerDangling",
    TOO_DEEP: "CarbonOwnerChainTooDeep",
}
PostEvent = Callable[[Mapping[str, str], str, str, bool, datetime], Awaitable[None]]


class Ownership:
    def __init__(self, read: OwnerReader, post_event: PostEvent, clock: Callable[[], datetime],
                 max_entries: int = 50_000) -> None:
        self._read = read
        self._post_event = post_event
        self._clock = clock
        self._max_entries = max_entries
        # uid -> (the controller reference walked from, its resolution)
        self._decided: dict[str, tuple[OwnerRef, Resolution]] = {}
        self._announced: set[str] = set()

    def forget(self, uid: str) -> None:
        self._decided.pop(uid, None)
        self._announced.discard(uid)

    async def is_root(self, facts: JobFacts, body: Mapping[str, Any], deleted: bool = False) -> bool:
        """True: account this workload. A read that fails for now answers False without
        remembering it (the next event of the workload asks again): never counted twice."""
        controller = controller_ref(body.get("metadata") or {})
        if controller is None:
            return True
        known = self._decided.get(facts.uid)
        if known is not None and known[0] == controller:
            resolution = known[1]
        else:
            try:
                resolution = await resolve_root(body, self._read_or_none)
            except TemporaryError as err:
                log.info("owner of %s %s/%s not readable yet: %s", facts.kind, facts.namespace, facts.name, err)
                return False
            if resolution.reason == DANGLING and (facts.deleting or deleted):
                # Its owner went first and the garbage collector is deleting it: the owner,
                # if it was a workload, accounted these pods (they carry its root labels).
                return False
            if len(self._decided) >= self._max_entries:
                self._decided.clear()
            self._decided[facts.uid] = (controller, resolution)
        if resolution.root.uid != facts.uid:
            if deleted:
                self.forget(facts.uid)
            return False
        if resolution.reason is not None and facts.uid not in self._announced:
            self._announced.add(facts.uid)
            log.warning("%s %s/%s: %s", facts.kind, facts.namespace, facts.name, resolution.message)
            await self._post_event(
                {"kind": facts.kind, "apiVersion": facts.api_version, "name": facts.name,
                 "namespace": facts.namespace, "uid": facts.uid},
                EVENT_REASONS.get(resolution.reason, "CarbonOwnerInvalid"),
                f"{resolution.message}; CarbonTrack accounts this {facts.kind} by itself (its pods' "
                f"energy series carry it as their owner)", True, self._clock())
        return True

    async def _read_or_none(self, namespace: str, ref: OwnerRef) -> Mapping[str, Any] | None:
        try:
            return await self._read(namespace, ref)
        except TemporaryError:
            raise
        except Exception as err:  # e.g. 403: not allowed to read the kind; treated as absent
            log.warning("cannot read %s in %s: %s", ref.describe(), namespace, err)
            return None
