"""A real HTTP server on 127.0.0.1 for the provider tests (no mocked clients)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Reply:
    """One canned answer. ``body`` may be bytes, str, a JSON-able object, or a function of
    the request's path and query parameters returning one of those (answers that follow
    the request)."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering: drives client timeouts


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class FakeApi:
    """Serves canned replies per path on 127.0.0.1 in a thread; records each request.

    ``add(path, r1, r2, ...)`` queues replies for a path; the last one repeats.
    A path ending in ``*`` matches every path it prefixes. Unknown paths get a 404 in the
    Electricity Maps error shape.
    """

    def __init__(self, port: int = 0) -> None:
        """``port`` 0 picks a free one; a stopped server's port restarts it there."""
        self.routes: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                api.seen.append(Seen(parts.path, dict(parse_qsl(parts.query)),
                                     {k.lower(): v for k, v in self.headers.items()}))
                queue = api.routes.get(parts.path) or next(
                    (q for k, q in api.routes.items()
                     if k.endswith("*") and parts.path.startswith(k[:-1])), None)
                reply = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else Reply(
                    404, {"error": f"no route {parts.path}"})
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                body = reply.body
                if callable(body):
                    body = body(parts.path, dict(parse_qsl(parts.query)))
                if not isinstance(body, (bytes, str)):
                    body = json.dumps(body)
                data = body.encode() if isinstance(body, str) else body
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test); nothing to report

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, path: str, *replies: Reply) -> None:
        self.routes.setdefault(path, []).extend(replies)

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
