"""HTTP serving and the collection loop.

The collection loop runs the engine every ``interval_s`` on its own thread. The HTTP server
renders the exposition once per snapshot (cached by snapshot sequence number), so any number
of scrapes between two cycles cost one render.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.registry import CollectorRegistry

from .collector import ExporterCollector, TextRenderer
from .engine import Engine, Snapshot

log = logging.getLogger("carbontrack.exporter")


class ExpositionCache:
    """Renders the exposition text of a snapshot once; later scrapes reuse the bytes."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot
        self._renderer = TextRenderer()
        self._lock = threading.Lock()
        self._seq = -1
        self._body = b""

    def render(self) -> bytes:
        snap = self._snapshot()
        with self._lock:
            if snap.seq != self._seq:
                self._body = self._renderer.render(snap)
                self._seq = snap.seq
            return self._body


def registry_for(snapshot: Callable[[], Snapshot]) -> CollectorRegistry:
    """A fresh registry holding the exporter's Collector (for client_python integrations and
    for checking TextRenderer against ``generate_latest``)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ExporterCollector(snapshot))
    return reg


class CollectionLoop:
    """Calls ``engine.collect()`` every ``interval_s`` seconds until stopped."""

    def __init__(self, engine: Engine, interval_s: float) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collect", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=max(5.0, self.interval_s * 2))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.engine.collect()
            except Exception:  # never let one bad cycle stop accounting; say what broke
                log.exception("collection cycle failed")
            self._stop.wait(self.interval_s)


def make_server(host: str, port: int, cache: ExpositionCache) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, ctype = cache.render(), CONTENT_TYPE_LATEST
            elif path in ("/", "/healthz"):
                body, ctype = b"carbontrack exporter: see /metrics\n", "text/plain"
            else:
                self.send_error(404, "only /metrics and /healthz")
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per scrape would flood the node's logs

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
