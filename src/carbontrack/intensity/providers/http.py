"""A small JSON-over-HTTP client for the live intensity providers.

Stdlib ``urllib`` only, so the core install stays light. What it adds:

- a per-attempt timeout (connect + read), so a hung server cannot stall a scrape;
- retries with exponential backoff for *temporary* failures (connection errors,
  timeouts, 5xx, 429); a 429's ``Retry-After`` is honoured (capped);
- a response cache keyed by URL with a TTL, so a provider asked for the same
  interval by every collection cycle calls the API once per interval;
- errors as one sentence: :class:`HttpStatusError` (permanent 4xx, with the
  status so callers can react to 401) and :class:`ProviderUnavailable` (retries
  exhausted or an unusable body). Credentials never appear in them: the values of
  the authentication headers (and a Basic password, and a password in the base
  URL) are redacted from every message, since an API may echo them in its error body.

``sleep`` and ``clock`` are injected so tests check the backoff schedule without
waiting for it.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ...core.errors import CarbonTrackError, TemporaryError
from ...core.redact import header_secrets, redact


@dataclass(frozen=True)
class HttpSettings:
    """Client behaviour. Times are seconds."""

    timeout_s: float = 10.0  # per attempt, connect and read
    retries: int = 3  # attempts after the first, for temporary failures only
    backoff_s: float = 0.5  # wait before the first retry; doubles each time
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0  # a server asking for longer is treated as down
    cache_ttl_s: float = 300.0  # 0 disables the cache
    cache_max_entries: int = 1024


class HttpStatusError(CarbonTrackError):
    """A non-retryable HTTP status (4xx other than 429). Permanent for this request."""

    def __init__(self, status: int, url: str, detail: str) -> None:
        super().__init__(f"HTTP {status} from {url}: {detail}")
        self.status = status


class ProviderUnavailable(TemporaryError):
    """The API could not give a usable answer (after retries, or a malformed body)."""


def basic_auth(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def _error_detail(body: bytes) -> str:
    """The APIs put the reason in "error" or "message" (GB nests it: error.message)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip() or "no body"
    if isinstance(parsed, dict):
        err = parsed.get("error", parsed.get("message"))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err:
            return str(err)[:200]
    return str(parsed)[:200]


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - datetime.fromtimestamp(now, timezone.utc).timestamp())


class JsonHttpClient:
    """GET JSON from ``base_url`` with timeouts, retries, backoff and a TTL cache."""

    def __init__(
        self,
        base_url: str,
        settings: HttpSettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        user_agent: str = "carbontrack",
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base URL must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        parts = urllib.parse.urlsplit(self.base_url)
        # a password in the URL (https://user:pw@host) is a credential like a header's
        self._secrets = [parts.password] if parts.password else []
        self.settings = settings or HttpSettings()
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._user_agent = user_agent
        self._cache: dict[str, tuple[float, Any]] = {}
        self.requests_sent = 0  # attempts on the wire, for tests and debugging

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        query = f"?{urllib.parse.urlencode(sorted(params.items()))}" if params else ""
        return f"{self.base_url}/{path.lstrip('/')}{query}"

    def get_json(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        cache: bool = True,
    ) -> Any:
        url = self.url(path, params)
        ttl = self.settings.cache_ttl_s
        if cache and ttl > 0:
            hit = self._cache.get(url)
            if hit is not None and self._clock() - hit[0] < ttl:
                return hit[1]
        body = self._fetch(url, headers or {})
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the stack
            secrets = [*self._secrets, *header_secrets(headers or {})]
            raise ProviderUnavailable(redact(
                f"malformed JSON from {url}: {body[:80].decode('utf-8', 'replace')!r}", secrets
            )) from None
        if cache and ttl > 0:
            if len(self._cache) >= self.settings.cache_max_entries:
                self._cache.pop(next(iter(self._cache)))  # oldest insertion first
            self._cache[url] = (self._clock(), parsed)
        return parsed

    def clear_cache(self) -> None:
        self._cache.clear()

    def _fetch(self, url: str, headers: Mapping[str, str]) -> bytes:
        s = self.settings
        request_headers = {"Accept": "application/json", "User-Agent": self._user_agent, **headers}
        secrets = [*self._secrets, *header_secrets(headers)]
        shown = redact(url, secrets)
        last = "no attempt made"
        for attempt in range(s.retries + 1):
            wait: float | None = None
            self.requests_sent += 1
            try:
                request = urllib.request.Request(url, headers=request_headers, method="GET")
                with urllib.request.urlopen(request, timeout=s.timeout_s) as response:
                    return bytes(response.read())
            except urllib.error.HTTPError as err:
                body = err.read() if err.fp is not None else b""
                detail = redact(_error_detail(body), secrets)
                if err.code == 429:
                    last = f"HTTP 429 (rate limited): {detail}"
                    wait = _retry_after(err.headers.get("Retry-After"), self._wall_clock())
                    if wait is not None and wait > s.retry_after_max_s:
                        raise ProviderUnavailable(
                            f"{shown} rate-limited us for {wait:.0f} s (Retry-After), longer "
                            f"than the {s.retry_after_max_s:.0f} s we wait"
                        ) from None
                elif err.code >= 500:
                    last = f"HTTP {err.code}: {detail}"
                else:
                    raise HttpStatusError(err.code, shown, detail) from None
            except TimeoutError:
                last = f"timed out after {s.timeout_s:g} s"
            except urllib.error.URLError as err:
                reason = err.reason
                if isinstance(reason, TimeoutError):
                    last = f"timed out after {s.timeout_s:g} s"
                else:
                    last = redact(f"cannot connect: {reason}", secrets)
            except (ConnectionError, OSError, http.client.HTTPException) as err:
                # reset mid-body, garbage status line, truncated body
                last = redact(f"connection failed: {err}", secrets)
            if attempt == s.retries:
                break
            if wait is None:
                wait = min(s.backoff_max_s, s.backoff_s * (2**attempt))
            self._sleep(wait)
        raise ProviderUnavailable(f"{shown}: {last} (after {s.retries + 1} attempts)")
