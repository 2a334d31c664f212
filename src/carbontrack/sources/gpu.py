"""What every GPU vendor's source gives besides energy: its devices and their processes.

A vendor module (``nvml.py``, ``amdgpu.py``) implements :class:`GpuSource`: the
``EnergySource`` methods plus :meth:`GpuSource.devices` and :meth:`GpuSource.processes`.
Device ids are what the vendor's Kubernetes device plugin allocates, so the kubelet's
pod-resources answer maps straight onto them: NVML UUIDs (``GPU-…``/``MIG-…``) for NVIDIA,
PCI addresses (``0000:c1:00.0``) for AMD. A sub-device (a MIG instance, an AMD compute
partition) names its physical GPU in ``parent_uuid``; its energy is an estimated share of
the parent's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from carbontrack.core.types import EnergyReading, Method, SourceHealth


@dataclass(frozen=True)
class GpuDevice:
    """A physical GPU, or a sub-device of one (then ``parent_uuid`` is set)."""

    index: int  # the vendor library's index of the physical GPU (a sub-device: its parent's)
    uuid: str  # the device id the vendor's device plugin allocates (see the module doc)
    name: str
    memory_total_bytes: int
    parent_uuid: str | None = None
    method: Method = Method.MEASURED  # how this device's energy is obtained
    mig_index: int | None = None  # position among the parent's sub-devices


@dataclass(frozen=True)
class GpuProcess:
    """A compute process on a GPU (or sub-device) and its utilisation, if known.

    ``sm_util_percent``: the share of the device's compute engine the process used (NVML's
    SM %; for AMD the process's graphics-engine time over the interval)."""

    device_uuid: str
    pid: int
    used_memory_bytes: int | None
    sm_util_percent: float | None


class GpuSource(Protocol):
    """An EnergySource over GPUs that also lists devices and processes."""

    name: str

    def read(self) -> Sequence[EnergyReading]: ...

    def health(self) -> SourceHealth: ...

    def close(self) -> None: ...

    def devices(self) -> list[GpuDevice]: ...

    def processes(self) -> list[GpuProcess]: ...
