"""Fake Node manifests for kwok (pure builders, tested by equality).

kwok manages Nodes that carry the annotation ``kwok.x-k8s.io/node: fake``. They
get cloud-like labels and a ``providerID`` so zone resolution (region label +
provider) works as on a real cluster, and GPU capacity under the resource name their
vendor's device plugin would advertise (``nvidia.com/gpu``, ``amd.com/gpu``:
carbontrack.core.accelerators). The AMD pool is tainted as AMD GPU pools usually are, so
only pods that tolerate it (and ask for ``amd.com/gpu``) land there; the other nodes have
no taint: this cluster has no real nodes, so every pod may land on a fake one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core import contract
from ..core.accelerators import vendor_named

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
SIM_LABEL = contract.SIM_NODE  # marks nodes whose hardware is simulated


@dataclass(frozen=True)
class FakeNode:
    """One simulated node. Power figures are the simulator's, in watts."""

    name: str
    region: str
    zone: str
    instance_type: str
    provider_id: str
    cpu_cores: int = 16
    memory: str = "64Gi"
    gpus: int = 0
    gpu_model: str = "NVIDIA A100-SXM4-40GB"
    idle_cpu_watts: float = 40.0  # package idle, all sockets together
    watts_per_busy_core: float = 8.0
    idle_gpu_watts: float = 55.0  # per GPU
    max_pods: int = 110
    gpu_vendor: str = "nvidia"  # carbontrack.core.accelerators: nvidia | amd
    taints: tuple[tuple[str, str, str], ...] = ()  # (key, value, effect)


# how AMD GPU pools are commonly kept to GPU workloads; pods tolerate it to land there
AMD_GPU_TAINT = ("amd.com/gpu", "present", "NoSchedule")


def toleration(taint: tuple[str, str, str]) -> dict[str, str]:
    """The pod toleration that lets it onto a node with ``taint``."""
    key, value, effect = taint
    return {"key": key, "operator": "Equal", "value": value, "effect": effect}


DEFAULT_NODES: tuple[FakeNode, ...] = (
    FakeNode(
        name="sim-gpu-0",
        region="eu-west-1",
        zone="eu-west-1a",
        instance_type="p4d.24xlarge",
        provider_id="aws:///eu-west-1a/i-0c0ffee000000001",
        cpu_cores=96,
        memory="1152Gi",
        gpus=8,
    ),
    # A node with no idle power: a pod that keeps all its cores busy receives exactly
    # the energy it causes, which is what the e2e smoke test compares against.
    FakeNode(
        name="sim-small-0",
        region="eu-west-1",
        zone="eu-west-1c",
        instance_type="c5.large",
        provider_id="aws:///eu-west-1c/i-0c0ffee000000003",
        cpu_cores=2,
        memory="4Gi",
        idle_cpu_watts=0.0,
        watts_per_busy_core=10.0,
    ),
    FakeNode(
        name="sim-cpu-0",
        region="eu-west-1",
        zone="eu-west-1b",
        instance_type="m5.4xlarge",
        provider_id="aws:///eu-west-1b/i-0c0ffee000000002",
        cpu_cores=16,
        memory="64Gi",
        gpus=0,
    ),
    # An AMD Instinct pool: GPUs read through the real amdsmi bindings on the fake
    # libamd_smi.so, allocated as amd.com/gpu and named by PCI address.
    FakeNode(
        name="sim-amd-0",
        region="eu-west-1",
        zone="eu-west-1b",
        instance_type="mi300x.8gpu",
        provider_id="aws:///eu-west-1b/i-0c0ffee000000004",
        cpu_cores=64,
        memory="1024Gi",
        gpus=4,
        gpu_model="AMD Instinct MI300X",
        gpu_vendor="amd",
        idle_gpu_watts=90.0,
        taints=(AMD_GPU_TAINT,),
    ),
)


def node_manifest(node: FakeNode) -> dict[str, Any]:
    """The Node object to create (nodes may carry status on create; kwok keeps it)."""
    resources: dict[str, str] = {
        "cpu": str(node.cpu_cores),
        "memory": node.memory,
        "pods": str(node.max_pods),
        "ephemeral-storage": "500Gi",
    }
    labels = {
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        SIM_LABEL: "true",
        "topology.kubernetes.io/region": node.region,
        "topology.kubernetes.io/zone": node.zone,
        "node.kubernetes.io/instance-type": node.instance_type,
    }
    if node.gpus:
        vendor = vendor_named(node.gpu_vendor)
        resources[vendor.gpu_resources[0]] = str(node.gpus)
        for label in vendor.product_labels:
            labels[label] = node.gpu_model.replace(" ", "-")
        if vendor.name == "nvidia":
            labels["nvidia.com/gpu.count"] = str(node.gpus)  # GPU feature discovery's
    spec: dict[str, Any] = {"providerID": node.provider_id}
    if node.taints:
        spec["taints"] = [{"key": k, "value": v, "effect": e} for k, v, e in node.taints]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": labels,
        },
        "spec": spec,
        "status": {
            "allocatable": dict(resources),
            "capacity": dict(resources),
        },
    }
