"""Lead a pod's series to its root owner (the workload that is the unit of accounting), so
that PromQL by workload is direct: a PyTorchJob's pods carry ``owner_kind="PyTorchJob"``, a
JobSet's pods (Pod -> Job -> JobSet) ``owner_kind="JobSet"``, a TrainJob's (Pod -> Job ->
JobSet -> TrainJob) ``owner_kind="TrainJob"``, a RayJob's (Pod -> RayCluster -> RayJob)
``owner_kind="RayJob"``; a plain Job's pods stay ``owner_kind="Job"``.

Cheapest correct way: the pod names only its direct controller, and the labels a controller
copies onto pods (``jobset.sigs.k8s.io/jobset-name``, ``ray.io/cluster``...) can be changed by
anyone who may patch pods, so they cannot decide what is counted. The walk
(carbontrack.core.owners, the same the operator runs) reads each owner above the pod with one
GET, and the answer is cached per owner UID: one read per workload level per node, not per
pod or per scrape. The first answer for an owner sticks (a series' labels never change while
its container runs); entries unused for ``ttl_s`` are dropped. A read that fails for another
reason than 404 (API server restarting, throttled) is retried, half a second apart, on the pod
watch's own thread; if it still fails the pod keeps its direct controller as owner and is not
cached (a later pod event asks again), but series the engine already created keep their first
labels, so that pod's energy then stays with its direct controller (logged as a warning).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from carbontrack.core.owners import KINDS, OwnerRef, Resolution, RootWalk, controller_ref

from .kubeapi import ApiClient, ApiError
from .pods import PodMeta

log = logging.getLogger("carbontrack.exporter.owners")


def owner_path(namespace: str, ref: OwnerRef) -> str | None:
    """The API path of an owner, None for a kind CarbonTrack does not know."""
    info = KINDS.get((ref.group, ref.kind))
    if info is None:
        return None
    base = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    return f"{base}/namespaces/{namespace}/{info.plural}/{ref.name}"


class RootOwners:
    """Pod -> root owner, cached by the pod's controller UID (thread-safe: the pod watch's
    thread writes, nothing else reads)."""

    def __init__(self, api: ApiClient, ttl_s: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic, tries: int = 3, retry_s: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._api = api
        self._tries = max(tries, 1)
        self._retry_s = retry_s
        self._sleep = sleep
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[Resolution, float]] = {}
        self._lock = threading.Lock()
        self.reads = 0  # API reads done (tests and logs)

    def rooted(self, meta: PodMeta, pod: Mapping[str, Any]) -> PodMeta:
        """``meta`` with its owner labels naming the root owner."""
        md = pod.get("metadata") or {}
        ref = controller_ref(md)
        if ref is None:
            return meta
        resolution = self.resolve(str(md.get("namespace", "")), ref)
        if resolution is None:
            return meta
        root = resolution.root
        return replace(meta, owner=replace(meta.owner, owner_kind=root.kind, owner_name=root.name,
                                           owner_uid=root.uid))

    def resolve(self, namespace: str, ref: OwnerRef) -> Resolution | None:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(ref.uid)
            if hit is not None:
                self._cache[ref.uid] = (hit[0], now)
                return hit[0]
        for attempt in range(self._tries):
            walk = RootWalk(ref)
            reading = ref  # the owner being read when a read fails
            try:
                while (pending := walk.pending) is not None:
                    reading = pending
                    walk.feed(self._read(namespace, pending))
                break
            except (ApiError, OSError) as err:
                if attempt + 1 == self._tries:
                    log.warning("owner %s of a pod in %s not readable (%s); the pod keeps its direct "
                                "controller as owner", reading.describe(), namespace, err)
                    return None
                self._sleep(self._retry_s)
        result = walk.result
        assert result is not None
        if result.reason is not None:
            log.warning("pods in %s owned by %s: %s", namespace, ref.describe(), result.message)
        with self._lock:
            self._cache[ref.uid] = (result, now)
            if len(self._cache) > 1024:
                for uid in [u for u, (_, used) in self._cache.items() if now - used > self._ttl_s]:
                    del self._cache[uid]
        return result

    def _read(self, namespace: str, ref: OwnerRef) -> dict[str, Any] | None:
        path = owner_path(namespace, ref)
        if path is None:
            return None
        self.reads += 1
        try:
            return self._api.get_json(path, {})
        except ApiError as err:
            if err.status == 404:
                return None
            raise
