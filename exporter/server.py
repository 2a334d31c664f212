"""HTTP serving and the collection loop.

The collection loop runs the engine every ``interval_s`` on its own thread. The HTTP server
renders the exposition once per snapshot (cached by snapshot sequence number), so any number
of scrapes between two cycles cost one render.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.registry import CollectorRegistry

from carbontrack.core.scrapeauth import REALM, ScrapeGuard

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


class MetricsServer:
    """A small HTTP/1.1 server for /metrics on one asyncio thread.

    Why not http.server: its threading server spends a thread per connection and its
    handler has no timeout, so idle or slow clients pin threads without bound. Here a
    connection is a coroutine: idle keep-alive connections cost a few KiB, requests must
    arrive within ``request_timeout_s``, idle connections close after ``idle_timeout_s``,
    and beyond ``max_connections`` new connections are closed at once. Responses come
    from ExpositionCache (rendered at most once per collection cycle), so serving inline
    on the event loop is cheap. With ``tls`` it serves HTTPS (the handshake must also finish
    within ``request_timeout_s``); ``guard`` decides who may read /metrics
    (carbontrack.core.scrapeauth).
    """

    def __init__(self, host: str, port: int, cache: ExpositionCache, *,
                 max_connections: int = 64, request_timeout_s: float = 10.0,
                 idle_timeout_s: float = 90.0, max_header_bytes: int = 16384,
                 tls: ssl.SSLContext | None = None, guard: ScrapeGuard | None = None) -> None:
        self.cache = cache
        self.guard = guard
        self.scheme = "https" if tls is not None else "http"
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_header_bytes = max_header_bytes
        self._open = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, host, port, limit=max_header_bytes, ssl=tls,
                                 ssl_handshake_timeout=request_timeout_s if tls else None))
        self.server_address: tuple[str, int] = self._server.sockets[0].getsockname()[:2]
        self._thread = threading.Thread(target=self._loop.run_forever, name="http",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        async def close() -> None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= self.max_connections:
            writer.close()  # over the cap: refuse rather than queue without bound
            return
        self._open += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            first = True
            while True:
                keep = await self._one_request(reader, writer, first)
                first = False
                if not keep:
                    break
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # client went away or sent garbage: just close
        except asyncio.CancelledError:
            pass  # shutdown
        finally:
            self._open -= 1
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           first: bool) -> bool:
        try:
            line = await asyncio.wait_for(
                reader.readline(), self.request_timeout_s if first else self.idle_timeout_s)
            if not line:
                return False
            headers: dict[str, str] = {}
            size = len(line)
            while True:
                h = await asyncio.wait_for(reader.readline(), self.request_timeout_s)
                size += len(h)
                if size > self.max_header_bytes:
                    return False
                if h in (b"\r\n", b"\n", b""):
                    break
                name, _, value = h.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
        except asyncio.TimeoutError:
            return False
        parts = line.decode("latin-1").split()
        if len(parts) != 3:
            await self._respond(writer, 400, b"bad request line\n", "text/plain", False)
            return False
        method, target, version = parts
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            # its body (if any) is not read, so the connection cannot be reused
            await self._respond(writer, 405, b"only GET and HEAD\n", "text/plain", False)
            return False
        elif path == "/metrics" and self.guard is not None and not self.guard.allows(
                headers.get("authorization"), writer.get_extra_info("peercert")):
            await self._respond(writer, 401, b"credentials required for /metrics\n", "text/plain",
                                keep, method == "HEAD", (("WWW-Authenticate", REALM),))
        elif path == "/metrics":
            body = self.cache.render()
            await self._respond(writer, 200, body, CONTENT_TYPE_LATEST, keep, method == "HEAD")
        elif path in ("/", "/healthz"):
            await self._respond(writer, 200, b"carbontrack exporter: see /metrics\n",
                                "text/plain", keep, method == "HEAD")
        else:
            await self._respond(writer, 404, b"only /metrics and /healthz\n", "text/plain", keep)
        return keep

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str,
                       keep: bool, head: bool = False,
                       extra: tuple[tuple[str, str], ...] = ()) -> None:
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                  405: "Method Not Allowed"}[status]
        head_lines = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                      f"Content-Length: {len(body)}\r\n"
                      + "".join(f"{k}: {v}\r\n" for k, v in extra)
                      + f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n")
        writer.write(head_lines.encode("latin-1"))
        if not head:
            writer.write(body)
        await writer.drain()


def make_server(host: str, port: int, cache: ExpositionCache, *,
                tls: ssl.SSLContext | None = None, guard: ScrapeGuard | None = None) -> MetricsServer:
    return MetricsServer(host, port, cache, tls=tls, guard=guard)
