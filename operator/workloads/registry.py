"""The workload kinds the operator accounts, by kind name and by (group, kind).

``default_registry()`` is what the operator runs with. Adding a kind: write its adapter
module next to job.py, add it to ``_ADAPTERS`` below and its owner role to
``carbontrack.core.owners.KINDS`` (the exporter's root-owner walk reads that table).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from carbontrack.core.owners import KINDS

from .base import WorkloadAdapter
from .job import JOB
from .jobset import JOBSET
from .pytorchjob import PYTORCHJOB
from .rayjob import RAYJOB
from .trainjob import TRAINJOB


class Registry:
    def __init__(self, adapters: Iterable[WorkloadAdapter]) -> None:
        self._by_kind: dict[str, WorkloadAdapter] = {}
        self._by_group_kind: dict[tuple[str, str], WorkloadAdapter] = {}
        for adapter in adapters:
            self.register(adapter)

    def register(self, adapter: WorkloadAdapter) -> None:
        """Add a kind. Kind names must be unique (records and PromQL name the kind alone) and
        known to the owner walk (core.owners.KINDS), or pods would never lead to it."""
        if adapter.kind in self._by_kind:
            raise ValueError(f"workload kind {adapter.kind} is registered twice")
        if (adapter.group, adapter.kind) not in KINDS:
            raise ValueError(f"{adapter.kind} ({adapter.api_version}) is missing from "
                             "carbontrack.core.owners.KINDS: the exporter could not lead pods to it")
        self._by_kind[adapter.kind] = adapter
        self._by_group_kind[(adapter.group, adapter.kind)] = adapter

    def by_kind(self, kind: str) -> WorkloadAdapter:
        """The adapter of a kind (KeyError names the kinds there are)."""
        try:
            return self._by_kind[kind]
        except KeyError:
            raise KeyError(f"no workload adapter for kind {kind!r} (known: "
                           f"{', '.join(sorted(self._by_kind))})") from None

    def get(self, group: str, kind: str) -> WorkloadAdapter | None:
        return self._by_group_kind.get((group, kind))

    def hold_patch(self, kind: str, hold: bool) -> dict[str, Any] | None:
        """The merge patch that holds (True) or releases (False) a workload of ``kind``."""
        adapter = self.by_kind(kind)
        return adapter.hold_patch() if hold else adapter.release_patch()

    def __iter__(self) -> Iterator[WorkloadAdapter]:
        return iter(list(self._by_kind.values()))

    def __len__(self) -> int:
        return len(self._by_kind)


def _adapters() -> list[WorkloadAdapter]:
    return [JOB, JOBSET, PYTORCHJOB, TRAINJOB, RAYJOB]


def default_registry() -> Registry:
    """A fresh registry of every finished-workload kind CarbonTrack accounts."""
    return Registry(_adapters())
