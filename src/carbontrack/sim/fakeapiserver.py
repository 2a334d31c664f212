"""A small Kubernetes API server for pods: list and watch over real HTTP, for tests and benches.

It speaks the part of the protocol a pod watch uses, as kube-apiserver does:

- ``GET /api/v1/pods?fieldSelector=spec.nodeName=N[&limit=L&continue=T]``: a ``PodList``
  whose ``metadata.resourceVersion`` is the current one (paged when ``limit`` is given);
- ``...&watch=1&resourceVersion=R[&allowWatchBookmarks=true][&timeoutSeconds=S]``: chunked
  JSON lines, one event per line, every change after ``R`` matching the selector, then new
  ones as they happen, until ``timeoutSeconds`` or ``close_watches()``. A version older than
  the kept history gets an ``ERROR`` event with a ``410`` Status (what the API server's watch
  cache sends), or an HTTP 410 answer with ``gone_as_http=True``.

Test controls: ``add``/``modify``/``delete`` pods, ``bookmark()``, ``compact()`` (forget the
history: older versions become 410), ``fail_next(n, status)``, ``close_watches()``,
``token`` (required bearer token; None: no auth), ``requests`` (path and query of each).
``tls``: serve HTTPS with that server-side context.
"""

from __future__ import annotations

import copy
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class _State:
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> pod
    rv: int = 1
    history: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    oldest: int = 1  # events after this version are in history
    watch_generation: int = 0  # bumped by close_watches()
    failures: list[int] = field(default_factory=list)  # statuses for the next requests


class FakeApiServer:
    """Serves on ``127.0.0.1:<free port>`` from a thread; ``url`` is its base URL."""

    def __init__(self, *, token: str | None = None, gone_as_http: bool = False,
                 tls: ssl.SSLContext | None = None) -> None:
        self.token = token
        self.gone_as_http = gone_as_http
        self.requests: list[tuple[str, dict[str, str]]] = []
        # other objects served by GET at their API path (e.g. a pod's owners), as the API
        # server answers a read: 200 with the object, 404 for any path not here
        self.objects: dict[str, dict[str, Any]] = {}
        self._s = _State()
        self._cond = threading.Condition()
        handler = type("Handler", (_Handler,), {"api": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.scheme = "http"
        if tls is not None:  # a server-side context (certificate, optional client CA)
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-apiserver",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_watches()
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- test controls --------------------------------------------------------
    def add(self, pod: dict[str, Any]) -> dict[str, Any]:
        return self._change("ADDED", pod)

    def modify(self, pod: dict[str, Any]) -> dict[str, Any]:
        return self._change("MODIFIED", pod)

    def delete(self, uid: str) -> dict[str, Any]:
        with self._cond:
            pod = self._s.pods[uid]
        return self._change("DELETED", pod)

    def bookmark(self) -> int:
        """Send watchers that asked for bookmarks a BOOKMARK at a new version."""
        with self._cond:
            self._s.rv += 1
            self._s.history.append((self._s.rv, "BOOKMARK", {}))
            self._cond.notify_all()
            return self._s.rv

    def compact(self) -> None:
        with self._cond:
            self._s.history.clear()
            self._s.oldest = self._s.rv

    def fail_next(self, n: int, status: int = 500) -> None:
        with self._cond:
            self._s.failures += [status] * n

    def clear_failures(self) -> None:
        with self._cond:
            self._s.failures.clear()

    def close_watches(self) -> None:
        with self._cond:
            self._s.watch_generation += 1
            self._cond.notify_all()

    @property
    def resource_version(self) -> str:
        with self._cond:
            return str(self._s.rv)

    def _change(self, kind: str, pod: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            self._s.rv += 1
            pod = copy.deepcopy(pod)
            pod.setdefault("metadata", {})["resourceVersion"] = str(self._s.rv)
            uid = pod["metadata"]["uid"]
            if kind == "DELETED":
                self._s.pods.pop(uid, None)
            else:
                self._s.pods[uid] = pod
            self._s.history.append((self._s.rv, kind, pod))
            self._cond.notify_all()
            return pod

    # -- protocol -------------------------------------------------------------
    def take_failure(self) -> int | None:
        with self._cond:
            return self._s.failures.pop(0) if self._s.failures else None

    def list_pods(self, node: str | None, limit: int, cont: int) -> dict[str, Any]:
        with self._cond:
            pods = [p for p in self._s.pods.values() if _on_node(p, node)]
            rv = self._s.rv
        page = pods[cont:cont + limit] if limit else pods[cont:]
        more = bool(limit) and cont + limit < len(pods)
        md: dict[str, Any] = {"resourceVersion": str(rv)}
        if more:
            md["continue"] = str(cont + limit)
        return {"kind": "PodList", "apiVersion": "v1", "metadata": md,
                "items": copy.deepcopy(page)}

    def too_old(self, since: int) -> bool:
        with self._cond:
            return since < self._s.oldest

    def events(self, node: str | None, since: int, bookmarks: bool, timeout_s: float
               ) -> Iterator[dict[str, Any]]:
        """Events after version ``since`` until the timeout or ``close_watches()``."""
        with self._cond:
            gen = self._s.watch_generation
        seen = since
        deadline = time.monotonic() + timeout_s
        while True:
            with self._cond:
                pending = [e for e in self._s.history if e[0] > seen]
                while not pending:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._s.watch_generation != gen:
                        return
                    self._cond.wait(left)
                    pending = [e for e in self._s.history if e[0] > seen]
                if self._s.watch_generation != gen:
                    return
            for rv, kind, pod in pending:
                seen = rv
                if kind == "BOOKMARK":
                    if bookmarks:
                        yield {"type": "BOOKMARK", "object": {
                            "kind": "Pod", "apiVersion": "v1",
                            "metadata": {"resourceVersion": str(rv)}}}
                elif _on_node(pod, node):
                    yield {"type": kind, "object": pod}


def _on_node(pod: dict[str, Any], node: str | None) -> bool:
    return node is None or (pod.get("spec") or {}).get("nodeName") == node


def _status(code: int, message: str) -> dict[str, Any]:
    reason = {410: "Expired", 401: "Unauthorized", 403: "Forbidden"}.get(code, "InternalError")
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class _Handler(BaseHTTPRequestHandler):
    api: FakeApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.api.requests.append((url.path, q))
        failure = self.api.take_failure()
        if failure is not None:
            return self._json(failure, _status(failure, "injected failure"))
        if self.api.token is not None and (
                self.headers.get("Authorization") != f"Bearer {self.api.token}"):
            return self._json(401, _status(401, "Unauthorized"))
        if url.path in self.api.objects:
            return self._json(200, self.api.objects[url.path])
        if url.path != "/api/v1/pods":
            return self._json(404, _status(404, f"{url.path} not found"))
        sel = q.get("fieldSelector", "")
        node = sel.split("=", 1)[1] if sel.startswith("spec.nodeName=") else None
        if q.get("watch") in ("1", "true"):
            return self._watch(node, q)
        return self._json(200, self.api.list_pods(node, int(q.get("limit") or 0),
                                                  int(q.get("continue") or 0)))

    def _watch(self, node: str | None, q: dict[str, str]) -> None:
        since = int(q.get("resourceVersion") or 0) or int(self.api.resource_version)
        gone = self.api.too_old(since)
        if gone and self.api.gone_as_http:
            return self._json(410, _status(410, f"too old resource version: {since}"))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if gone:
                self._chunk({"type": "ERROR",
                             "object": _status(410, f"too old resource version: {since}")})
            else:
                for event in self.api.events(node, since, q.get("allowWatchBookmarks") == "true",
                                             float(q.get("timeoutSeconds") or 1800)):
                    self._chunk(event)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client went away
        self.close_connection = True

    def _chunk(self, event: dict[str, Any]) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
