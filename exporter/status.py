"""Health and duration of each source, as ``carbontrack_source_up`` and
``carbontrack_collection_duration_seconds`` export them: one board, one rule for every source
(a registered energy source, ``cgroups``, ``gpu-processes``, ``intensity``, ``state``,
``pod-watch``). A change of state is logged once, not every cycle."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("carbontrack.exporter")


@dataclass(frozen=True)
class SourceStatus:
    up: bool
    message: str
    duration_s: float


class StatusBoard:
    def __init__(self) -> None:
        self._status: dict[str, SourceStatus] = {}
        self._down_logged: set[str] = set()

    def set(self, name: str, up: bool, message: str, duration_s: float) -> None:
        self._status[name] = SourceStatus(up, message, duration_s)
        if not up and name not in self._down_logged:
            log.warning("source %s down: %s", name, message or "no detail")
            self._down_logged.add(name)
        elif up and name in self._down_logged:
            log.info("source %s up again", name)
            self._down_logged.discard(name)

    def items(self) -> tuple[tuple[str, SourceStatus], ...]:
        return tuple(self._status.items())
