"""GPU vendors where they meet Kubernetes: the extended-resource names their device plugins
advertise, the device ids those plugins allocate, the node labels naming the GPU model.

One entry per vendor; the energy side of each vendor is its module in carbontrack.sources
(registered in carbontrack.sources.registry with this entry). Everything that reads
resource names — the exporter's pod-resources mapping, the reports' GPU counts, the node
simulator, the operator — asks here instead of spelling ``nvidia.com/gpu``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuVendor:
    """Where a GPU vendor meets Kubernetes.

    ``resource_prefix``: every extended resource its device plugin advertises starts with it
    (whole GPUs and their slices: ``nvidia.com/gpu``, ``nvidia.com/mig-3g.40gb``;
    ``amd.com/gpu``, ``amd.com/cpx_nps4``); ``gpu_resources``: the whole-GPU names a Job's
    GPU count adds up; ``product_labels``: node labels naming the GPU model."""

    name: str
    resource_prefix: str
    gpu_resources: tuple[str, ...]
    product_labels: tuple[str, ...] = ()
    device_ids: str = ""  # what the device plugin's device IDs are (docs only)


NVIDIA = GpuVendor("nvidia", "nvidia.com/", ("nvidia.com/gpu",), ("nvidia.com/gpu.product",),
                   "NVML UUIDs (GPU-…, MIG-…)")
# AMD's device plugin: ROCm/k8s-device-plugin internal/pkg/plugin/plugin.go (resource
# namespace "amd.com", device IDs are PCI bus IDs, partition resources
# "<compute>_<memory>" partition names); its node labeller sets amd.com/gpu.product-name
AMD = GpuVendor("amd", "amd.com/", ("amd.com/gpu",), ("amd.com/gpu.product-name",),
                "PCI addresses (0000:c1:00.0)")

# Accelerators some device plugin advertises that no module here measures: a pod holding one
# is reported (never silently left at zero). Intel's GPU plugin (gpu.intel.com/i915, xe),
# Habana Gaudi, AWS Neuron, Google TPUs.
UNSUPPORTED_ACCELERATOR_PREFIXES = ("gpu.intel.com/", "habana.ai/", "aws.amazon.com/neuron",
                                    "google.com/tpu")


VENDORS: tuple[GpuVendor, ...] = (NVIDIA, AMD)


def vendor_named(name: str) -> GpuVendor:
    for v in VENDORS:
        if v.name == name:
            return v
    raise KeyError(f"unknown GPU vendor {name!r}: one of {', '.join(v.name for v in VENDORS)}")


def vendor_for_resource(resource: str) -> GpuVendor | None:
    """The vendor whose device plugin advertises ``resource``, if any."""
    for v in VENDORS:
        if resource.startswith(v.resource_prefix):
            return v
    return None


def is_unsupported_accelerator(resource: str) -> bool:
    """A GPU or accelerator resource no vendor here covers (``gpu.intel.com/i915``,
    ``habana.ai/gaudi``, any ``…/gpu``): its holder's energy would be missed."""
    if vendor_for_resource(resource) is not None:
        return False
    return (resource.startswith(UNSUPPORTED_ACCELERATOR_PREFIXES)
            or "gpu" in resource.rpartition("/")[2].lower())


def gpu_count(resources: Mapping[str, object],
              quantity: Callable[[object], float] = lambda q: float(str(q))) -> float:
    """Whole GPUs of every vendor in a container's limits/requests map (``quantity`` parses
    a Kubernetes quantity)."""
    total = 0.0
    for v in VENDORS:
        for name in v.gpu_resources:
            if name in resources:
                total += quantity(resources[name])
    return total
