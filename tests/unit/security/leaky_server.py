"""A real HTTP server on 127.0.0.1 that answers with chosen statuses and echoes every request
header it got in the body: the worst a provider, proxy or API server could do with our
credentials. Tests then search what our code made of the answers for the secrets."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LeakyServer:
    """``answers``: path prefix -> list of (status, extra JSON fields); the last one repeats.
    Every body is JSON with ``message`` and ``error`` quoting the request's headers."""

    def __init__(self, answers: dict[str, list[tuple[int, dict[str, Any]]]]) -> None:
        self.answers = {k: list(v) for k, v in answers.items()}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append((self.path, headers))
                status, extra = server._answer(self.path)
                # credentials first, so a message cut short still quotes them
                shown = sorted(headers.items(), key=lambda kv: kv[0] not in ("authorization", "auth-token"))
                echo = f"refused {self.path} with headers {dict(shown)}"
                body = json.dumps({"kind": "Status", "message": echo, "error": echo, "code": status, **extra})
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def _answer(self, path: str) -> tuple[int, dict[str, Any]]:
        for prefix in sorted(self.answers, key=len, reverse=True):
            if path.startswith(prefix):
                queue = self.answers[prefix]
                return queue.pop(0) if len(queue) > 1 else queue[0]
        return 404, {}

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"


@contextmanager
def leaky_server(answers: dict[str, list[tuple[int, dict[str, Any]]]]) -> Iterator[LeakyServer]:
    s = LeakyServer(answers)
    s.thread.start()
    try:
        yield s
    finally:
        s.httpd.shutdown()
        s.httpd.server_close()
