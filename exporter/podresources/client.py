"""List devices per container from the kubelet's pod-resources socket (gRPC over unix).

The DaemonSet mounts the socket's *directory* (the kubelet re-creates the socket on
restart, which a file mount would not follow). A failing call raises ``PodResourcesError``;
the exporter then falls back to the GPU libraries' process PIDs -> /proc/<pid>/cgroup for
that cycle. Which resources are GPUs, and whose, comes from carbontrack.sources.registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from carbontrack.core.errors import TemporaryError
from carbontrack.sources.registry import is_unsupported_accelerator, vendor_for_resource

from . import messages

SOCKET_NAME = "kubelet.sock"


class PodResourcesError(TemporaryError):
    """The pod-resources API did not answer (kubelet restarting, socket missing)."""


@dataclass(frozen=True)
class DeviceAllocation:
    namespace: str
    pod: str
    container: str
    resource: str  # nvidia.com/gpu, nvidia.com/mig-3g.40gb, amd.com/gpu, ...
    device_id: str  # GPU-…/MIG-… (NVIDIA's device plugin), a PCI address (AMD's)


def is_accelerator(resource: str) -> bool:
    """A registered GPU vendor's resource, or an accelerator none of them measures (kept so
    the exporter can name what it cannot measure)."""
    return vendor_for_resource(resource) is not None or is_unsupported_accelerator(resource)


def allocations(resp: Any, wanted: Callable[[str], bool] = is_accelerator
                ) -> list[DeviceAllocation]:
    """Every device whose resource name is ``wanted`` in a ListPodResourcesResponse, one per
    device ID."""
    out = []
    for pod in resp.pod_resources:
        for c in pod.containers:
            for dev in c.devices:
                if not wanted(dev.resource_name):
                    continue
                for did in dev.device_ids:
                    out.append(DeviceAllocation(pod.namespace, pod.name, c.name, dev.resource_name, did))
    return out


class PodResourcesClient:
    """A channel to ``<directory>/kubelet.sock``; ``list()`` returns every device allocation."""

    def __init__(self, directory: Path, timeout_s: float = 2.0) -> None:
        self.socket = Path(directory) / SOCKET_NAME
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(f"unix://{self.socket}")
        self._list = self._channel.unary_unary(
            messages.LIST_METHOD,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=messages.ListPodResourcesResponse.FromString,
        )

    def list(self, wanted: Callable[[str], bool] = is_accelerator) -> list[DeviceAllocation]:
        try:
            resp = self._list(messages.ListPodResourcesRequest(), timeout=self.timeout_s)
        except grpc.RpcError as err:
            raise PodResourcesError(
                f"pod-resources List on {self.socket} failed: {err.code().name}: "
                f"{err.details()}; is the kubelet's pod-resources directory mounted?"
            ) from err
        return allocations(resp, wanted)

    def close(self) -> None:
        self._channel.close()
