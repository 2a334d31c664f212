"""Prometheus HTTP API client for instant queries.

Anything that is not a well-formed, finite answer is a TemporaryError: the caller retries
later and never turns a failure into a number. Quick retries with exponential backoff
happen here; longer waits are the accounting queue's job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from carbontrack.core.errors import TemporaryError

from .metrics import OperatorMetrics

log = logging.getLogger(__name__)


class QueryError(Exception):
    """Prometheus rejected the query itself (HTTP 400 bad_data): a bug here, not retryable."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class PrometheusClient:
    def __init__(
        self,
        base_url: str,
        metrics: OperatorMetrics,
        timeout_s: float = 10.0,
        attempts: int = 3,
        backoff_initial_s: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._url = base_url.rstrip("/") + "/api/v1/query"
        self._metrics = metrics
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._attempts = attempts
        self._backoff = backoff_initial_s
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def query(self, promql: str, at: datetime) -> list[Sample]:
        """Instant vector at ``at``; raises TemporaryError after ``attempts`` failures."""
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                samples = await self._query_once(promql, at)
            except TemporaryError as err:
                self._metrics.prometheus_queries.labels(outcome="error").inc()
                if attempt == self._attempts:
                    raise
                log.warning("Prometheus query failed (try %d/%d): %s", attempt, self._attempts, err)
                await self._sleep(delay)
                delay *= 2
            else:
                self._metrics.prometheus_queries.labels(outcome="ok").inc()
                return samples
        raise AssertionError("unreachable")

    async def _query_once(self, promql: str, at: datetime) -> list[Sample]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        params = {"query": promql, "time": f"{at.timestamp():.3f}"}
        try:
            async with self._session.post(self._url, data=params) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
            raise TemporaryError(
                f"Prometheus at {self._url} unreachable or slow: {type(err).__name__}: {err}"
            ) from err
        return parse_response(status, body)


def parse_response(status: int, body: bytes) -> list[Sample]:
    """Samples of an instant-vector answer; every other shape is an error (pure, tested)."""
    try:
        doc: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise TemporaryError(f"Prometheus answered HTTP {status} with non-JSON: {body[:80]!r}") from err
    if not isinstance(doc, dict):
        raise TemporaryError(f"Prometheus answered HTTP {status} with unexpected JSON")
    if doc.get("status") != "success":
        message = f"Prometheus error {doc.get('errorType')}: {doc.get('error')}"
        if status == 400 and doc.get("errorType") == "bad_data":
            raise QueryError(message)
        raise TemporaryError(message)
    if status != 200:
        raise TemporaryError(f"Prometheus answered HTTP {status}")
    data = doc.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise TemporaryError("Prometheus answer is not an instant vector")
    result = data.get("result")
    if not isinstance(result, list):
        raise TemporaryError("Prometheus answer has no result list")
    samples = []
    for item in result:
        try:
            labels = item["metric"]
            _, raw = item["value"]
            value = float(raw)
        except (KeyError, TypeError, ValueError) as err:
            raise TemporaryError(f"Prometheus answer has a malformed sample: {item!r:.120}") from err
        if not isinstance(labels, dict) or not math.isfinite(value):
            raise TemporaryError(f"Prometheus answer has a non-finite or unlabelled sample: {item!r:.120}")
        samples.append(Sample({str(k): str(v) for k, v in labels.items()}, value))
    return samples
