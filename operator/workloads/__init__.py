"""The workload seam (docs/architecture.md "Workload kinds"): one adapter per kind, a
registry, and root-owner resolution. Public names (other modules build on them):

- ``WorkloadAdapter`` (protocol), ``CrdAdapter``, ``FINISHED_WORKLOAD_VERBS``;
- ``Registry``, ``default_registry()``;
- ``resolve_root(body, read)``, ``needs_walk(body)``, and from ``carbontrack.core.owners``
  ``OwnerRef``, ``Resolution``, ``RootWalk``, ``controller_ref``, ``KINDS``, ``Role``.
"""

from carbontrack.core.owners import KINDS, OwnerRef, Resolution, Role, RootWalk, controller_ref

from .base import FINISHED_WORKLOAD_VERBS, CrdAdapter, WorkloadAdapter
from .job import JOB
from .registry import Registry, default_registry
from .roots import OwnerReader, needs_walk, resolve_root

__all__ = [
    "FINISHED_WORKLOAD_VERBS", "JOB", "KINDS", "CrdAdapter", "OwnerReader", "OwnerRef", "Registry",
    "Resolution", "Role", "RootWalk", "WorkloadAdapter", "controller_ref", "default_registry",
    "needs_walk", "resolve_root",
]
