"""The workload seam: what the operator needs to know about one kind of workload.

A ``WorkloadAdapter`` says, for one kind: where it is served (group/version/plural/kind),
how to read its phase from a manifest (``facts``: finished or not, outcome including
failure and deletion, suspension, start and finish times, pod counts), how to hold and
release it (a merge patch, None when the kind cannot be held), the RBAC verbs the operator
needs on it and what reports call it. Everything else (the queue, the record, budgets,
annotations, the finalizer, enforcement, projection) is the same for every kind.

``facts`` is pure and returns ``JobFacts`` (operator/jobs.py: the same fields for every kind,
``kind``/``api_version`` naming it); a body the API server would not serve raises
ConfigError naming the object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from carbontrack.core.errors import ConfigError

from ..jobs import JobFacts

# What the operator does with every finished-workload kind: watch it (get, list, watch), write
# its annotations, finalizer and hold/release (patch). Kept here so the chart's ClusterRole and
# the registry agree (tests/unit/operator/test_workloads.py checks the chart).
FINISHED_WORKLOAD_VERBS: tuple[str, ...] = ("get", "list", "watch", "patch")


class WorkloadAdapter(Protocol):
    """One workload kind. Implementations: ``CrdAdapter`` (below) covers every kind so far."""

    @property
    def group(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def plural(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def report_name(self) -> str: ...
    @property
    def rbac_verbs(self) -> tuple[str, ...]: ...
    @property
    def api_version(self) -> str: ...

    def facts(self, body: Mapping[str, Any]) -> JobFacts: ...
    def hold_patch(self) -> dict[str, Any] | None: ...
    def release_patch(self) -> dict[str, Any] | None: ...


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {path[-1]: value}
    for key in reversed(path[:-1]):
        out = {key: out}
    return out


@dataclass(frozen=True)
class CrdAdapter:
    """An adapter from its parts: ``read`` builds the facts (pure), ``suspend_path`` is the
    boolean spec field that holds the workload (None: cannot be held)."""

    group: str
    version: str
    plural: str
    kind: str
    report_name: str
    read: Callable[[Mapping[str, Any]], JobFacts]
    suspend_path: tuple[str, ...] | None = ("spec", "suspend")
    rbac_verbs: tuple[str, ...] = FINISHED_WORKLOAD_VERBS

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def facts(self, body: Mapping[str, Any]) -> JobFacts:
        try:
            return self.read(body)
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            meta = body.get("metadata") if isinstance(body, Mapping) else None
            name = f"{meta.get('namespace')}/{meta.get('name')}" if isinstance(meta, Mapping) else "?"
            raise ConfigError(f"{self.kind} {name} is malformed ({type(err).__name__}: {str(err)[:120]})") from None

    def hold_patch(self) -> dict[str, Any] | None:
        return _nested(self.suspend_path, True) if self.suspend_path else None

    def release_patch(self) -> dict[str, Any] | None:
        return _nested(self.suspend_path, False) if self.suspend_path else None
