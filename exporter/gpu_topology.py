"""GPU topology for the engine from any number of GPU vendors and the kubelet's pod-resources.

Per cycle, for every vendor source (carbontrack.sources.registry): its sub-devices per
physical GPU (MIG instances, AMD compute partitions), weighted by their share of the
parent's memory (the proxy ``NvmlSource.read_mig`` uses for slice size), its compute
processes with their utilisation and used memory, and — when the pod-resources socket
directory is given and the Kubernetes API names the pods — which container holds which
device, from ONE pod-resources List for all vendors. Without pod-resources (or when it
fails) the engine maps process PIDs to containers through /proc/<pid>/cgroup.

A device allocated under a resource no enabled vendor measures (``intel.com/gpu``, or
``amd.com/gpu`` on a node whose amdsmi source is off) is named in ``problems``: the engine
reports it as ``carbontrack_source_up{source="gpu-processes"} 0`` with that sentence,
never as a silent zero.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from carbontrack.sources.registry import SOURCES, GpuVendor, vendor_for_resource

from .pods import PodCache
from .reading import GpuTopology
from .state import ContainerKey

if TYPE_CHECKING:
    from carbontrack.sources.gpu import GpuSource

    from .podresources.client import DeviceAllocation, PodResourcesClient
    from .settings import Settings

log = logging.getLogger("carbontrack.exporter")


class GpuTopologies:
    """``GpuTopologyProvider`` over open vendor sources (shared with the engine's sources)."""

    def __init__(self, gpus: Sequence[tuple[GpuVendor, GpuSource]], pods: PodCache,
                 pod_resources: PodResourcesClient | None = None) -> None:
        self.gpus = list(gpus)
        self.pods = pods
        self.pod_resources = pod_resources
        self._pr_failed = False

    def topology(self) -> GpuTopology:
        mig: dict[str, list[tuple[str, float]]] = {}
        memory: dict[str, int] = {}
        procs: list[tuple[str, int, float | None, int | None]] = []
        for _, source in self.gpus:
            for d in source.devices():
                if d.parent_uuid is None:
                    memory[d.uuid] = d.memory_total_bytes
                else:
                    mig.setdefault(d.parent_uuid, []).append((d.uuid, float(d.memory_total_bytes)))
            procs += [(p.device_uuid, p.pid, p.sm_util_percent, p.used_memory_bytes)
                      for p in source.processes()]
        total = {p: float(memory.get(p, 0)) for p in mig}
        allocations, problems = self._allocations()
        return GpuTopology(mig=mig, total_slices=total, processes=procs,
                           allocations=allocations, problems=tuple(problems))

    def _allocations(self) -> tuple[dict[str, list[ContainerKey]], list[str]]:
        if self.pod_resources is None:
            return {}, []
        from .podresources.client import PodResourcesError

        try:
            allocs = self.pod_resources.list()
        except PodResourcesError as err:
            if not self._pr_failed:
                log.warning("%s; using the GPU libraries' process PIDs until it answers", err)
            self._pr_failed = True
            return {}, []
        self._pr_failed = False
        measured = {v.name for v, _ in self.gpus}
        out: dict[str, list[ContainerKey]] = {}
        unmeasured: list[DeviceAllocation] = []
        for a in allocs:
            vendor = vendor_for_resource(a.resource)
            if vendor is None or vendor.name not in measured:
                unmeasured.append(a)
                continue
            uid = self.pods.uid_for(a.namespace, a.pod)
            if uid is None:
                continue  # pod not in the watch cache yet: PIDs still cover it
            out.setdefault(a.device_id, []).append((uid, a.container))
        return out, _unmeasured_problems(unmeasured, sorted(measured))


def _unmeasured_problems(allocs: Sequence[DeviceAllocation], measured: Sequence[str]) -> list[str]:
    """One sentence per resource name that is allocated here but measured by no source."""
    by_resource: dict[str, list[DeviceAllocation]] = {}
    for a in allocs:
        by_resource.setdefault(a.resource, []).append(a)
    out = []
    for resource, items in sorted(by_resource.items()):
        first = items[0]
        vendor = vendor_for_resource(resource)
        fix = (f"enable its source on this node (--{_flag_for(vendor)})" if vendor is not None
               else "no GPU vendor module measures it (carbontrack.sources.registry)")
        more = f" and {len(items) - 1} more" if len(items) > 1 else ""
        out.append(f"{resource} device {first.device_id} is allocated to "
                   f"{first.namespace}/{first.pod} container {first.container}{more}, but its "
                   f"energy is not measured here (GPU sources: "
                   f"{', '.join(measured) or 'none'}): {fix}")
    return out


def _flag_for(vendor: GpuVendor) -> str:
    flag: str = next(s.flag for s in SOURCES if s.gpu == vendor)
    return flag


def build_topology(s: Settings, pods: PodCache, gpus: Sequence[tuple[GpuVendor, GpuSource]]
                   ) -> GpuTopologies:
    """The topology provider of the opened GPU sources, with pod-resources when mounted."""
    pr = None
    if s.pod_resources_dir is not None:
        if s.kube:
            # grpc is imported only here: it costs ~10 MiB of RSS that nodes without the
            # pod-resources mount should not pay
            from .podresources.client import PodResourcesClient

            pr = PodResourcesClient(Path(s.pod_resources_dir))
        else:
            log.warning("--pod-resources-dir needs the Kubernetes API to name pods by UID; "
                        "ignored with --no-kube (the GPU libraries' PIDs are used)")
    return GpuTopologies(gpus, pods, pr)
