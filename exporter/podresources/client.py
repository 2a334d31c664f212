"""List devices per container from the kubelet's pod-resources socket (gRPC over unix).

The DaemonSet mounts the socket's *directory* (the kubelet re-creates the socket on
restart, which a file mount would not follow). A failing call raises ``PodResourcesError``;
the exporter then falls back to NVML PIDs -> /proc/<pid>/cgroup for that cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from carbontrack.core.errors import TemporaryError

from . import messages

SOCKET_NAME = "kubelet.sock"


class PodResourcesError(TemporaryError):
    """The pod-resources API did not answer (kubelet restarting, socket missing)."""


@dataclass(frozen=True)
class DeviceAllocation:
    namespace: str
    pod: str
    container: str
    resource: str  # nvidia.com/gpu, nvidia.com/mig-3g.40gb, ...
    device_id: str  # GPU-… or MIG-… for NVIDIA's device plugin


def allocations(resp: Any, resource_prefix: str) -> list[DeviceAllocation]:
    """Every device of ``resource_prefix`` in a ListPodResourcesResponse, one per device ID."""
    out = []
    for pod in resp.pod_resources:
        for c in pod.containers:
            for dev in c.devices:
                if not dev.resource_name.startswith(resource_prefix):
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

    def list(self, resource_prefix: str = "nvidia.com/") -> list[DeviceAllocation]:
        try:
            resp = self._list(messages.ListPodResourcesRequest(), timeout=self.timeout_s)
        except grpc.RpcError as err:
            raise PodResourcesError(
                f"pod-resources List on {self.socket} failed: {err.code().name}: "
                f"{err.details()}; is the kubelet's pod-resources directory mounted?"
            ) from err
        return allocations(resp, resource_prefix)

    def close(self) -> None:
        self._channel.close()
