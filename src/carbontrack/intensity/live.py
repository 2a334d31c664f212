"""A live provider made safe to ask every collection interval.

:class:`GuardedProvider` wraps a :class:`~.providers.base.LiveProvider` (which already falls
back to the static catalogue, visibly, on any failure) and adds what a long-running caller
needs so that a cluster of exporters does not hammer the provider:

- **backoff**: after a failure the provider is not asked again until a delay has passed
  (``first_s`` doubling per consecutive failure up to ``max_s``, stretched by up to 10 %
  jitter so nodes that failed together do not retry together); meanwhile every interval
  gets the static factor with the failure's reason;
- **Retry-After**: a 429 whose ``Retry-After`` asks for longer than the backoff delays the
  next try to then (the HTTP client, built with ``retry_after_max_s=0``, reports the
  requested wait instead of sleeping inside a collection cycle);
- **few log lines**: the provider logs one warning per failed attempt (so at most one per
  backoff step, the first when live data is lost) and this class one info line when live
  data is back.

The response cache lives in the provider's HTTP client (TTL per provider, see
``selection.CACHE_TTL_S``), so within a TTL the provider is asked once per distinct query.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from ..core.types import IntensityFactor
from .providers.base import LiveProvider

log = logging.getLogger("carbontrack.intensity")

# http.py's message when a 429's Retry-After exceeds retry_after_max_s (0 for us: always)
_RETRY_AFTER = re.compile(r"rate-limited us for (\d+) s \(Retry-After\)")


@dataclass(frozen=True)
class Backoff:
    first_s: float = 30.0  # wait after the first failure
    max_s: float = 1800.0  # cap: a provider down for hours is retried twice an hour
    jitter: float = 0.1  # up to +10 % so a cluster's retries spread out

    def delay(self, failures: int, draw: float) -> float:
        base = min(self.max_s, self.first_s * 2.0 ** max(0, failures - 1))
        return base * (1.0 + self.jitter * draw)


def retry_after_s(reason: str) -> float | None:
    """The wait a 429 asked for, from the HTTP client's message (None if not a 429 with one)."""
    m = _RETRY_AFTER.search(reason)
    return float(m.group(1)) if m else None


class GuardedProvider:
    """``IntensityLookup``: the provider's factor when it answers, else the static factor
    with ``fallback_reason`` set, asking the provider only when the backoff allows."""

    def __init__(
        self,
        provider: LiveProvider,
        *,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.provider = provider
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._draw = draw
        self._failures = 0
        self._retry_at: float | None = None
        self.reason: str | None = None  # why the last answer was static (None: live)
        self.attempts = 0  # how often the provider was asked (tests, debugging)

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def live(self) -> bool:
        return self.reason is None

    def intensity(self, zone: str, start: datetime, end: datetime) -> IntensityFactor:
        now = self._clock()
        if self._retry_at is not None and now < self._retry_at:
            assert self.reason is not None  # set whenever _retry_at is
            static = self.provider.catalogue.intensity(zone, start, end)
            return replace(static, fallback_reason=self.reason)
        self.attempts += 1
        factor = self.provider.intensity(zone, start, end)
        if factor.fallback_reason is None:
            if self.reason is not None:
                log.info("grid intensity for %s from %s again (live)", zone, self.name)
            self._failures, self._retry_at, self.reason = 0, None, None
            return factor
        self._failures += 1
        delay = self.backoff.delay(self._failures, self._draw())
        asked = retry_after_s(factor.fallback_reason)
        if asked is not None and asked > delay:
            delay = asked
        self._retry_at = now + delay
        log.debug("%s: next try in %.0f s (failure %d)", self.name, delay, self._failures)
        self.reason = factor.fallback_reason
        return factor
