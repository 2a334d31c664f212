"""The operator's one HTTP client for the Kubernetes API: aiohttp (already kopf's), JSON in
and out, on the event loop.

It replaces the official ``kubernetes`` client, whose import alone cost the operator ~28 MiB
of RSS (docs/performance/operator-memory.md), and the three thread pools (32, 4 and 4
threads) that ran its blocking calls. ``KubeApi``, ``WorkloadApi`` and ``KueueApi`` share one
``ApiTransport``: one connection pool, one session.

A non-2xx answer becomes the exception its callers act on (``Gone``, ``Conflict``,
``TemporaryError``; any other status an ``ApiError`` naming the call), as the official
client's ``ApiException`` was translated before.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from carbontrack.core.apiconfig import ApiEndpoint
from carbontrack.core.errors import TemporaryError
from carbontrack.core.redact import header_secrets, redact

log = logging.getLogger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # JSON is YAML: the body is sent as JSON
USER_AGENT = "carbontrack-operator"
RETRYABLE = frozenset({429, 500, 502, 503, 504})
_MAX_ERROR_TEXT = 512  # of the server's Status message in an exception


class Gone(Exception):
    """The object no longer exists (or was replaced by one with another UID)."""


class Conflict(Exception):
    """Optimistic concurrency: the object changed since it was read; re-read and retry."""


class ApiError(Exception):
    """The API server refused a call for a reason that retrying does not fix (400, 403, 422...)."""

    def __init__(self, what: str, status: int, reason: str, message: str) -> None:
        super().__init__(f"{what}: the API server answered {status} {reason}: {message}")
        self.status = status
        self.reason = reason


def resource_path(group: str, version: str, plural: str, namespace: str | None = None,
                  name: str | None = None, subresource: str | None = None) -> str:
    """``/apis/<group>/<version>[/namespaces/<ns>]/<plural>[/<name>[/<sub>]]`` (``/api/v1``
    for the core group)."""
    parts = [f"/api/{version}" if not group else f"/apis/{group}/{version}"]
    if namespace is not None:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(plural)
    if name is not None:
        parts.append(quote(name, safe=""))
        if subresource is not None:
            parts.append(subresource)
    return "/".join(parts)


def translate(status: int, reason: str, body: str, what: str) -> Exception:
    """The exception for a non-2xx answer to the call ``what``."""
    if status == 404:
        return Gone(f"{what} not found")
    if status == 409 and "UID in precondition" in body:
        # the name now belongs to a re-created object with another UID
        return Gone(f"{what} was replaced by a new object with the same name")
    if status == 409:
        return Conflict(f"{what} changed concurrently: {reason}")
    if status in RETRYABLE:
        return TemporaryError(f"API server error on {what}: {status} {reason}")
    return ApiError(what, status, reason, _status_message(body))


def _status_message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:_MAX_ERROR_TEXT]
    message = data.get("message") if isinstance(data, dict) else None
    return str(message)[:_MAX_ERROR_TEXT] if message else body[:_MAX_ERROR_TEXT]


class ApiTransport:
    """JSON requests to one API server over a pooled aiohttp session (made on first use, in
    the running event loop). At most ``pool_size`` requests are in flight; more wait for a
    slot without a time limit (as calls queued for the client's thread pool did): ``timeout_s``
    bounds each request from when it is sent, answer included, so that a burst of queued calls
    at start-up does not time out in the queue."""

    def __init__(self, endpoint: ApiEndpoint, timeout_s: float = 30.0, pool_size: int = 32) -> None:
        self.endpoint = endpoint
        self.pool_size = pool_size
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None  # of the session's loop
        self._closing: asyncio.Task[None] | None = None

    def _open(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        if self._session is None or self._session.closed or self._slots is None:
            ssl: Any = self.endpoint.ssl_context if self.endpoint.ssl_context is not None else True
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.pool_size, limit_per_host=self.pool_size, ssl=ssl),
                timeout=self._timeout, headers={"User-Agent": USER_AGENT, "Accept": JSON})
            self._slots = asyncio.Semaphore(self.pool_size)
        return self._session, self._slots

    async def request(self, method: str, path: str, what: str, *, query: Mapping[str, str] | None = None,
                      body: Any = None, content_type: str = JSON, answer: bool = True) -> Any:
        """The parsed JSON answer (``answer=False``: read, not parsed, None). ``what`` names
        the call in errors ("Job ns/name")."""
        try:
            headers = dict(self.endpoint.credentials())  # per request: a token file may rotate
        except OSError as err:
            raise TemporaryError(f"no API credentials for {what}: {err}") from err
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        session, slots = self._open()
        try:
            async with slots, session.request(method, self.endpoint.url + path, params=query,
                                              data=data, headers=headers) as response:
                raw = await response.read()  # read whole: the connection goes back to the pool
                status, reason = response.status, response.reason or ""
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
            raise TemporaryError(f"API server unreachable on {what}: {type(err).__name__} {err}") from err
        if not 200 <= status < 300:
            text = redact(raw.decode("utf-8", "replace"), header_secrets(headers))
            raise translate(status, reason, text, what)
        if not answer:
            return None
        try:
            return json.loads(raw)
        except ValueError as err:
            raise TemporaryError(f"API server answered {what} with non-JSON: {raw[:80]!r}") from err

    async def get(self, path: str, what: str, query: Mapping[str, str] | None = None) -> Any:
        return await self.request("GET", path, what, query=query)

    async def aclose(self) -> None:
        self.close()
        if self._closing is not None:
            await self._closing

    def close(self) -> None:
        """Close from synchronous code in the loop (kopf's clean-up calls ``KubeApi.close``):
        the session closes in a task; ``aclose`` waits for it."""
        session, self._session, self._slots = self._session, None, None
        if session is None or session.closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no running loop: its loop has ended and its sockets with it
            return
        self._closing = loop.create_task(session.close())
