"""Saying once what is malformed in objects only the operator should write (budget ledgers,
records): retrying cannot fix a hand-edited entry, so it is named in a Warning Event, the log
and a metric, once until the set of bad entries changes, and never counted."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from carbontrack.core.errors import ConfigError

from .kube import KubeApi
from .metrics import OperatorMetrics

log = logging.getLogger(__name__)


class MalformedReporter:
    def __init__(self, kube: KubeApi, metrics: OperatorMetrics, clock: Callable[[], datetime]) -> None:
        self._kube = kube
        self._metrics = metrics
        self._clock = clock
        self._reported: dict[str, tuple[str, ...]] = {}  # object key -> messages said

    async def report(self, involved: Mapping[str, str], metric_reason: str, event_reason: str,
                     errors: list[ConfigError], consequence: str) -> None:
        key = f"{involved['kind']}:{involved['namespace']}/{involved['name']}"
        messages = tuple(sorted(str(e) for e in errors))
        if self._reported.get(key, ()) == messages:
            return
        self._reported[key] = messages
        for message in messages:
            self._metrics.accounting_failures.labels(reason=metric_reason).inc()
            log.error("%s %s/%s: %s", involved["kind"], involved["namespace"], involved["name"], message)
            await self._kube.post_event(involved, event_reason, f"{message}; {consequence}", True,
                                        self._clock())
