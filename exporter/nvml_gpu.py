"""GPU topology for the engine from NVML (devices, processes) and the kubelet's pod-resources.

Per cycle: MIG instances per physical GPU (weighted by their share of the parent's memory,
the same proxy ``NvmlSource.read_mig`` uses for slice size), compute processes with SM
utilisation (none on MIG instances: NVML does not offer it there) and used memory, and —
when the pod-resources socket directory is given and the Kubernetes API names the pods —
which container holds which GPU or MIG device. Without pod-resources (or
when it fails) the engine maps process PIDs to containers through /proc/<pid>/cgroup.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .engine import GpuTopology
from .pods import PodCache
from .state import ContainerKey

if TYPE_CHECKING:
    from carbontrack.sources.nvml import NvmlSource

    from .podresources.client import PodResourcesClient
    from .settings import Settings

log = logging.getLogger("carbontrack.exporter")


class NvmlTopology:
    """``GpuTopologyProvider`` over an open NvmlSource (shared with the engine's sources)."""

    def __init__(self, source: NvmlSource, pods: PodCache,
                 pod_resources: PodResourcesClient | None = None) -> None:
        self.source = source
        self.pods = pods
        self.pod_resources = pod_resources
        self._pr_failed = False

    def topology(self) -> GpuTopology:
        devices = self.source.devices()
        memory = {d.uuid: d.memory_total_bytes for d in devices if d.parent_uuid is None}
        mig: dict[str, list[tuple[str, float]]] = {}
        for d in devices:
            if d.parent_uuid is not None:
                mig.setdefault(d.parent_uuid, []).append((d.uuid, float(d.memory_total_bytes)))
        total = {p: float(memory.get(p, 0)) for p in mig}
        procs = [(p.device_uuid, p.pid, p.sm_util_percent, p.used_memory_bytes)
                 for p in self.source.processes()]
        return GpuTopology(mig=mig, total_slices=total, processes=procs,
                           allocations=self._allocations())

    def _allocations(self) -> dict[str, list[ContainerKey]]:
        if self.pod_resources is None:
            return {}
        from .podresources.client import PodResourcesError

        try:
            allocs = self.pod_resources.list()
        except PodResourcesError as err:
            if not self._pr_failed:
                log.warning("%s; using NVML process PIDs until it answers", err)
            self._pr_failed = True
            return {}
        self._pr_failed = False
        out: dict[str, list[ContainerKey]] = {}
        for a in allocs:
            uid = self.pods.uid_for(a.namespace, a.pod)
            if uid is None:
                continue  # pod not in the watch cache yet: PIDs still cover it
            out.setdefault(a.device_id, []).append((uid, a.container))
        return out


def open_gpu(s: Settings, pods: PodCache) -> tuple[NvmlSource, NvmlTopology]:
    """Open NVML (raises SourceUnavailable without a driver) and its topology provider."""
    from carbontrack.sources.nvml import NvmlSource

    src = NvmlSource.open()
    pr = None
    if s.pod_resources_dir is not None:
        if s.kube:
            # grpc is imported only here: it costs ~10 MiB of RSS that nodes without the
            # pod-resources mount should not pay
            from .podresources.client import PodResourcesClient

            pr = PodResourcesClient(Path(s.pod_resources_dir))
        else:
            log.warning("--pod-resources-dir needs the Kubernetes API to name pods by UID; "
                        "ignored with --no-kube (NVML PIDs are used)")
    return src, NvmlTopology(src, pods, pr)
