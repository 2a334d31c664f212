"""The stdlib pod watch against a real HTTP server speaking the list/watch protocol.

``carbontrack.sim.fakeapiserver`` is a threaded http.server: chunked watch streams, 410 for
compacted versions, bookmarks, injected failures. Waiting for the watch thread uses
``wait_until`` (a deadline for a hung test, never an assertion on time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from carbontrack.exporter.kubeapi import ApiClient
from carbontrack.exporter.pods import PodCache
from carbontrack.exporter.podwatch import Backoff, PodWatcher
from carbontrack.exporter.state import Owner

from carbontrack.core.apiconfig import ApiEndpoint, no_credentials
from carbontrack.sim.fakeapiserver import FakeApiServer

NODE = "node-1"


def wait_until(what: str, cond: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def pod(uid: str, name: str, node: str = NODE, phase: str = "Running", **md: Any) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "namespace": "ml", "name": name, **md},
            "spec": {"nodeName": node, "containers": [
                {"name": "main", "resources": {"requests": {"cpu": "500m"}}}]},
            "status": {"phase": phase, "containerStatuses": [
                {"name": "main", "containerID": "containerd://" + uid[0] * 64}]}}


def endpoint(server: FakeApiServer) -> ApiEndpoint:
    port = int(server.url.rsplit(":", 1)[1])
    return ApiEndpoint("http", "127.0.0.1", port, "", None, no_credentials)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as s:
        yield s


def start(server: FakeApiServer, cache: PodCache, **kw: Any) -> PodWatcher:
    kw.setdefault("backoff", Backoff(initial_s=0.01, max_s=0.05))
    w = PodWatcher(ApiClient(endpoint(server), timeout_s=10), NODE, cache, **kw)
    w.start()
    return w


def test_lists_this_nodes_pods_then_watches_from_the_lists_version(server: FakeApiServer) -> None:
    server.add(pod("a" * 8, "a"))
    server.add(pod("b" * 8, "b", node="node-2"))
    list_rv = server.resource_version
    cache = PodCache()
    w = start(server, cache)
    try:
        wait_until("the first watch", lambda: w.watches == 1)
        assert cache.get("a" * 8) is not None and cache.get("b" * 8) is None
        assert cache.get("a" * 8).owner == Owner("ml", "a")  # type: ignore[union-attr]
        (lpath, lq), (wpath, wq) = server.requests[:2]
        assert (lpath, lq) == ("/api/v1/pods", {"fieldSelector": "spec.nodeName=node-1",
                                                "limit": "500"})
        assert wpath == "/api/v1/pods"
        assert wq == {"fieldSelector": "spec.nodeName=node-1", "allowWatchBookmarks": "true",
                      "timeoutSeconds": "300", "resourceVersion": list_rv, "watch": "1"}
        server.add(pod("c" * 8, "c"))
        server.add(pod("d" * 8, "d", node="node-2"))
        meta = wait_until("the added pod", lambda: cache.get("c" * 8))
        assert meta.requests == {"main": (0.5, 0)} and meta.container_ids == {"c" * 64: "main"}
        server.modify(pod("c" * 8, "c", phase="Succeeded"))
        wait_until("the modified pod", lambda: cache.get("c" * 8).released)  # type: ignore[union-attr]
        server.delete("a" * 8)
        wait_until("the deleted pod", lambda: cache.get("a" * 8).released)  # type: ignore[union-attr]
        assert cache.get("d" * 8) is None  # another node's
        assert (w.lists, w.events, w.healthy) == (1, 3, True)
    finally:
        w.stop()
    assert w._thread is not None and not w._thread.is_alive()


def test_a_watch_that_ends_resumes_from_the_last_bookmark_without_listing(
        server: FakeApiServer) -> None:
    cache = PodCache()
    w = start(server, cache)
    try:
        wait_until("the first watch", lambda: w.watches == 1)
        rv = server.bookmark()
        wait_until("the bookmark", lambda: w.resource_version == str(rv))
        server.close_watches()  # the API server ends the watch (its timeout, a restart)
        wait_until("the second watch", lambda: w.watches == 2)
        assert server.requests[-1][1]["resourceVersion"] == str(rv)
        server.add(pod("e" * 8, "e"))
        wait_until("a pod after the resume", lambda: cache.get("e" * 8))
        assert w.lists == 1
    finally:
        w.stop()


@pytest.mark.parametrize("gone_as_http", [False, True])
def test_gone_relists_and_a_pod_deleted_meanwhile_is_released(gone_as_http: bool) -> None:
    """410 as an ERROR event (the watch cache's way) or as the HTTP answer: list again. A
    pod that vanished while no watch saw it is kept, released, like a watched deletion."""
    with FakeApiServer(gone_as_http=gone_as_http) as server:
        server.add(pod("a" * 8, "a"))
        server.add(pod("b" * 8, "b"))
        cache = PodCache()
        clock = Clock()
        w = start(server, cache, clock=clock, keep_deleted_s=60)
        try:
            wait_until("the first watch", lambda: w.watches == 1)
            server.close_watches()
            server.delete("b" * 8)  # no watch open: the event is in history...
            server.compact()  # ...until the server forgets it: the resume gets 410
            wait_until("the relist", lambda: w.lists == 2)
            b = cache.get("b" * 8)
            assert b is not None and b.released and not cache.get("a" * 8).released  # type: ignore[union-attr]
            clock.now = 60.0  # keep_deleted_s later: forgotten at the next event
            server.add(pod("c" * 8, "c"))
            wait_until("the next event", lambda: cache.get("c" * 8))
            assert cache.get("b" * 8) is None and cache.get("a" * 8) is not None
        finally:
            w.stop()


def test_errors_mark_the_watch_down_back_off_and_recover(server: FakeApiServer) -> None:
    server.add(pod("a" * 8, "a"))
    server.fail_next(3, 503)
    health: list[tuple[bool, str]] = []
    delays: list[float] = []

    class Recording(Backoff):
        def next_s(self) -> float:
            delays.append(super().next_s())
            return 0.001

    cache = PodCache()
    w = start(server, cache, health=lambda up, why: health.append((up, why)),
              backoff=Recording(initial_s=1.0, max_s=3.0, rand=lambda: 1.0))
    try:
        wait_until("the watch", lambda: w.watches == 1)
        assert health == [(False, "ApiError: HTTP 503: injected failure"), (True, "")]
        assert delays == [1.0, 2.0, 3.0]  # doubling, capped
        assert w.backoff.failures == 0  # reset by the success
        assert cache.get("a" * 8) is not None
    finally:
        w.stop()


def test_watches_that_end_empty_back_off_without_going_down(server: FakeApiServer) -> None:
    """A server (or proxy) that ends every watch at once: the next watch waits a growing
    backoff step instead of a busy loop; nothing failed, so the watch stays up."""
    delays: list[float] = []

    class Recording(Backoff):
        def next_s(self) -> float:
            delays.append(super().next_s())
            return 0.001

    health: list[tuple[bool, str]] = []
    w = start(server, PodCache(), watch_timeout_s=0, health=lambda up, why: health.append((up, why)),
              backoff=Recording(initial_s=1.0, max_s=60.0, rand=lambda: 1.0))
    try:
        wait_until("three empty watches", lambda: len(delays) >= 3)
    finally:
        w.stop()
    assert delays[:3] == [1.0, 2.0, 4.0]
    assert health == [(True, "")] and w.lists == 1


def test_lists_page_by_page(server: FakeApiServer) -> None:
    for i in range(5):
        server.add(pod(f"{i}" * 8, f"p{i}"))
    cache = PodCache()
    w = start(server, cache, page_size=2)
    try:
        wait_until("the watch", lambda: w.watches == 1)
        lists = [q for _, q in server.requests if "watch" not in q]
        assert [q.get("continue") for q in lists] == [None, "2", "4"]
        assert {m.owner.pod for m in cache.metas()} == {f"p{i}" for i in range(5)}
    finally:
        w.stop()


def test_backoff_jitters_between_half_and_all_of_the_delay() -> None:
    b = Backoff(initial_s=2.0, max_s=100.0, rand=lambda: 0.0)
    assert [b.next_s() for _ in range(3)] == [1.0, 2.0, 4.0]
    b.reset()
    assert b.next_s() == 1.0
