"""Keep a PodCache filled with this node's pods: list, then watch from that resourceVersion.

The protocol is the API server's (what client-go's reflector does, on the standard library):

- list ``/api/v1/pods?fieldSelector=spec.nodeName=<node>`` (paged with ``limit``/``continue``)
  and remember the list's ``resourceVersion``;
- watch from it with ``allowWatchBookmarks=true`` and ``timeoutSeconds``; every event (and
  every BOOKMARK, which carries nothing but a newer resourceVersion) moves it on, so a watch
  that ends (its timeout, a dropped connection, an API server restart) resumes where it
  stopped, without a new list;
- ``410 Gone`` (as the answer or as an ERROR event: the version is older than the server
  keeps) means events were lost: list again. A pod that vanished meanwhile is treated as
  deleted then.
- any other error: log, mark the ``pod-watch`` source down, back off (exponential, capped,
  jittered), resume. A watch that ends without delivering anything also waits a backoff
  step before the next (a proxy closing watches at once must not make a busy loop).

A deleted pod stays in the cache, released, for ``keep_deleted_s`` (its lingering cgroup and
finished containers keep their labels), then is forgotten: the cache holds live pods plus
recently deleted ones, however long the watch runs.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .kubeapi import ApiClient, ApiError, WatchStream
from .owners import RootOwners
from .pods import PodCache, PodMeta, meta_from_event, pod_meta

log = logging.getLogger("carbontrack.exporter.podwatch")

PODS_PATH = "/api/v1/pods"
HEALTH_SOURCE = "pod-watch"  # carbontrack_source_up{source="pod-watch"}


class Backoff:
    """Delays after consecutive failures: ``initial_s`` doubling up to ``max_s``, each
    multiplied by a random factor in [0.5, 1] so that a node pool restarted together does not
    retry in step. ``reset()`` after a success."""

    def __init__(self, initial_s: float = 1.0, max_s: float = 60.0,
                 rand: Callable[[], float] = random.random) -> None:
        self.initial_s, self.max_s, self.rand = initial_s, max_s, rand
        self.failures = 0

    def next_s(self) -> float:
        delay = min(self.max_s, self.initial_s * 2.0 ** self.failures)
        self.failures += 1
        return delay * (0.5 + 0.5 * self.rand())

    def reset(self) -> None:
        self.failures = 0


def _ignore_health(up: bool, message: str) -> None:
    return None


class PodWatcher:
    """List-then-watch this node's pods into ``cache`` on a thread of its own.

    ``health(up, message)`` is told when the watch goes up or down (the CLI passes the
    engine's ``mark_source``). Counters for tests and logs: ``lists`` (full lists done),
    ``watches`` (watch requests answered 200), ``events`` (pod events applied)."""

    def __init__(
        self,
        api: ApiClient,
        node_name: str,
        cache: PodCache,
        *,
        health: Callable[[bool, str], None] = _ignore_health,
        backoff: Backoff | None = None,
        watch_timeout_s: float = 300.0,
        keep_deleted_s: float = 600.0,
        page_size: int = 500,
        clock: Callable[[], float] = time.monotonic,
        owners: RootOwners | None = None,
    ) -> None:
        self.api = api
        # pods' owner labels name their root owner (exporter/owners.py); None: direct controller
        self.owners = owners
        self.selector = f"spec.nodeName={node_name}"
        self.cache = cache
        self.health = health
        self.backoff = backoff or Backoff()
        self.watch_timeout_s = watch_timeout_s
        self.keep_deleted_s = keep_deleted_s
        self.page_size = page_size
        self.clock = clock
        self.resource_version: str | None = None  # None: list before the next watch
        self.lists = self.watches = self.events = 0
        self._healthy: bool | None = None
        self._deleted: dict[str, float] = {}  # uid -> when it was seen deleted (clock)
        self._stop = threading.Event()
        self._stream: WatchStream | None = None
        self._thread: threading.Thread | None = None

    @property
    def healthy(self) -> bool:
        return bool(self._healthy)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- the loop -------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self._list()
                if not self._watch() and not self._stop.is_set():
                    # a watch that ended without one event or bookmark: wait before the
                    # next, so a server or proxy that closes watches at once is not hammered
                    self._stop.wait(self.backoff.next_s())
            except ApiError as err:
                if err.gone:  # too old a version: events were lost; list again at once
                    log.info("pod watch: %s; listing again", err.message)
                    self.resource_version = None
                    continue
                self._failed(err)
            except Exception as err:  # API down, network, TLS, RBAC: retry, never exit
                self._failed(err)

    def _failed(self, err: Exception) -> None:
        if self._stop.is_set():
            return  # stop() closed the stream under the reader
        delay = self.backoff.next_s()
        msg = f"{type(err).__name__}: {err}"
        self._set_health(False, msg)
        log.warning("pod watch (%s) failed: %s; retrying in %.1f s", self.selector, msg, delay)
        self._stop.wait(delay)

    def _set_health(self, up: bool, message: str) -> None:
        if self._healthy is not up:
            self._healthy = up
            self.health(up, message)

    def _list(self) -> None:
        metas: list[PodMeta] = []
        query = {"fieldSelector": self.selector, "limit": str(self.page_size)}
        while True:
            page = self.api.get_json(PODS_PATH, query)
            metas += [self._meta(pod_meta(p), p) for p in page.get("items") or [] if isinstance(p, dict)]
            md = page.get("metadata") or {}
            if not md.get("continue"):
                break
            query = {**query, "continue": str(md["continue"])}
        now = self.clock()
        listed = {m.uid for m in metas}
        for old in self.cache.metas():
            if old.uid in listed:
                self._deleted.pop(old.uid, None)
            elif old.uid in self._deleted:
                metas.append(old)  # deleted earlier, still within keep_deleted_s
            else:  # deleted while no watch was open: released from now on
                self._deleted[old.uid] = now
                metas.append(old if old.released else replace(old, released=True))
        self.cache.replace_all(metas)
        self._forget_deleted(now)
        self.resource_version = str(md.get("resourceVersion") or "")
        self.lists += 1
        self.backoff.reset()
        self._set_health(True, "")

    def _watch(self) -> bool:
        """One watch request, to its end; True if it delivered an event or bookmark."""
        query = {"fieldSelector": self.selector, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(int(self.watch_timeout_s)),
                 "resourceVersion": self.resource_version or ""}
        self._forget_deleted(self.clock())  # also on a quiet node, once per watch
        # reads wait for events or bookmarks; a silent connection longer than the watch's own
        # timeout is dead
        stream = self.api.watch(PODS_PATH, query, read_timeout_s=self.watch_timeout_s + 30.0)
        self._stream = stream
        delivered = False
        try:
            if self._stop.is_set():
                return delivered
            self.watches += 1
            self._set_health(True, "")
            for event in stream:
                self._apply(event)
                if not delivered:
                    delivered = True
                    self.backoff.reset()
                if self._stop.is_set():
                    break
            return delivered
        finally:
            self._stream = None
            stream.close()

    def _apply(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type", ""))
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        if kind == "ERROR":  # obj is a Status: 410 Gone is the usual one
            raise ApiError(int(obj.get("code") or 500), str(obj.get("message") or "watch error"))
        meta = meta_from_event(kind, obj)
        if meta is not None:
            meta = self._meta(meta, obj)
        now = self.clock()
        if meta is not None:
            self.cache.put(meta)
            self.events += 1
            if kind == "DELETED":
                self._deleted[meta.uid] = now
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.resource_version = str(rv)
        self._forget_deleted(now)

    def _meta(self, meta: PodMeta, pod: dict[str, Any]) -> PodMeta:
        # RootOwners remembers each controller's root, so every event of the pod gets the
        # same owner labels (its first answer) at no API cost
        return meta if self.owners is None else self.owners.rooted(meta, pod)

    def _forget_deleted(self, now: float) -> None:
        expired = [uid for uid, t in self._deleted.items() if now - t >= self.keep_deleted_s]
        for uid in expired:
            del self._deleted[uid]
            self.cache.delete(uid)
