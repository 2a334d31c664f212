"""carbontrack.devcluster: a real local Kubernetes control plane for tests and the demo.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as plain
processes on loopback (binaries built from pinned Go modules, see
scripts/build-control-plane.sh); kwok's fake nodes get simulated hardware from
:mod:`.simulator`, one real exporter each, and a Prometheus scrapes them. Entry points:
:func:`.stack.start_stack` (tests), ``python -m carbontrack.devcluster demo|down|up``.
See docs/e2e.md.
"""

from __future__ import annotations

from .binaries import Binaries, ensure_all
from .nodes import DEFAULT_NODES, FakeNode

__all__ = ["DEFAULT_NODES", "Binaries", "FakeNode", "ensure_all"]
