"""GET and watch requests to the Kubernetes API on the standard library (http.client + json).

Just what the pod watch needs: a JSON ``GET`` (the list) and a streamed watch whose body is
one JSON event per line (``{"type": ..., "object": ...}``, chunked). Each request opens its
own connection: a list happens at start-up and after a broken watch, a watch lasts minutes,
so there is nothing worth pooling. Non-2xx answers raise ``ApiError`` with the server's
``Status`` message.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

from carbontrack.core.apiconfig import ApiEndpoint
from carbontrack.core.redact import header_secrets, redact

USER_AGENT = "carbontrack-exporter"
_MAX_ERROR_BODY = 64 << 10


class ApiError(Exception):
    """A non-2xx answer (or a watch ERROR event): HTTP status and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message

    @property
    def gone(self) -> bool:
        """410 Gone: the resourceVersion is older than the server keeps; relist."""
        return self.status == 410


class WatchStream:
    """An open watch: iterate for events (dicts); ``close()`` may be called from another
    thread and makes the iteration end (the reader sees the socket shut)."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._conn = conn
        self._resp = resp

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            line = self._resp.readline()
            if not line:
                return  # the server ended the watch (timeoutSeconds) or the socket closed
            if line.strip():
                event = json.loads(line)
                if isinstance(event, dict):
                    yield event

    def close(self) -> None:
        sock = self._conn.sock
        if sock is not None:
            # the plain socket's shutdown, also for TLS: SSLSocket.shutdown would drop its
            # SSL object under the reading thread; this only wakes the reader with EOF
            with contextlib.suppress(OSError):  # already closed
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        self._conn.close()


class ApiClient:
    """Requests to one API server (``endpoint``); ``timeout_s`` bounds connect and reads of
    ordinary requests (a watch's reads get their own, longer, bound)."""

    def __init__(self, endpoint: ApiEndpoint, timeout_s: float = 30.0) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s

    def get_json(self, path: str, query: Mapping[str, str]) -> dict[str, Any]:
        conn, resp = self._request(path, query, self.timeout_s)
        try:
            data = json.loads(resp.read())
        finally:
            conn.close()
        if not isinstance(data, dict):
            raise ApiError(resp.status, "the answer is not a JSON object")
        return data

    def watch(self, path: str, query: Mapping[str, str], read_timeout_s: float) -> WatchStream:
        conn, resp = self._request(path, {**query, "watch": "1"}, read_timeout_s)
        return WatchStream(conn, resp)

    def _request(self, path: str, query: Mapping[str, str], timeout_s: float
                 ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        ep = self.endpoint
        conn: http.client.HTTPConnection
        if ep.scheme == "https":
            conn = http.client.HTTPSConnection(ep.host, ep.port, timeout=timeout_s,
                                               context=ep.ssl_context)
        else:
            conn = http.client.HTTPConnection(ep.host, ep.port, timeout=timeout_s)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT,
                   **ep.credentials()}
        url = f"{ep.path_prefix}{path}?{urlencode(query)}" if query else f"{ep.path_prefix}{path}"
        try:
            conn.request("GET", url, headers=headers)
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        if not 200 <= resp.status < 300:
            try:
                body = resp.read(_MAX_ERROR_BODY)
            finally:
                conn.close()
            # a server (or proxy) quoting our request back must not put the token in our logs
            raise ApiError(resp.status, redact(status_message(body, resp.reason), header_secrets(headers)))
        return conn, resp


def status_message(body: bytes, default: str) -> str:
    """The ``message`` of a ``Status`` body, else the body's first line, else ``default``."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip().splitlines()
        return text[0][:300] if text else default
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    return default
