"""NVIDIA's GPU topology: the vendor-neutral ``GpuTopologies`` over one NVML source.

Kept for callers that build an NVIDIA-only topology; the exporter builds every vendor's
through exporter/gpu_topology.py from the source registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carbontrack.sources.registry import NVIDIA

from .gpu_topology import GpuTopologies
from .pods import PodCache

if TYPE_CHECKING:
    from carbontrack.sources.nvml import NvmlSource

    from .podresources.client import PodResourcesClient


class NvmlTopology(GpuTopologies):
    """``GpuTopologyProvider`` over an open NvmlSource (shared with the engine's sources)."""

    def __init__(self, source: NvmlSource, pods: PodCache,
                 pod_resources: PodResourcesClient | None = None) -> None:
        super().__init__([(NVIDIA, source)], pods, pod_resources)
        self.source = source
