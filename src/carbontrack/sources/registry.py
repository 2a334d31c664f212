"""The energy sources and GPU vendors CarbonTrack knows, in one table (node_exporter style).

Each source is one module exposing ``open_source(ctx: SourceContext) -> EnergySource``
(GPU vendors: a ``GpuSource``, and ``present(env) -> bool``, a cheap check that the vendor's
driver or library is on this machine). Registering it is one ``SourceSpec`` line in
``SOURCES``; its command-line flag (``--<flag>``/``--no-<flag>``), its default, and its health
and duration series (``carbontrack_source_up{source=<name>}``) follow from that line. The
exporter (exporter/cli.py) and the tracker (tracker/wiring.py) both build their sources
with :func:`build`.

A GPU vendor's spec also carries its :class:`GpuVendor` (carbontrack.core.accelerators):
the Kubernetes extended-resource names its device plugin allocates, so pod-resources
answers, reports and the node simulator find every vendor's GPUs in one place. Modules are imported only when enabled:
``carbontrack run`` must not pay for pynvml or amdsmi on a laptop.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, cast

from carbontrack.core.accelerators import (
    AMD,
    NVIDIA,
    UNSUPPORTED_ACCELERATOR_PREFIXES,
    GpuVendor,
    gpu_count,
    is_unsupported_accelerator,
    vendor_for_resource,
)
from carbontrack.core.errors import CarbonTrackError, ConfigError, SourceUnavailable
from carbontrack.core.types import EnergySource

if TYPE_CHECKING:
    from .gpu import GpuSource


class Kind(str, Enum):
    CPU_COUNTER = "cpu-counter"  # measured CPU/DRAM energy: estimates stand aside for it
    CPU_ESTIMATE = "cpu-estimate"  # opened only where no CPU counter opened (no double count)
    GPU = "gpu"


@dataclass(frozen=True)
class SourceContext:
    """What a source may need to open: roots, the environment, the caller's choices."""

    sysfs: Path = Path("/sys")
    procfs: Path = Path("/proc")
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    provider: str | None = None  # cloud provider for the CPU estimate's power table
    cpu_watts: float | None = None  # a fixed CPU power: the CPU estimate, never RAPL
    gpu_indices: tuple[int, ...] | None = None  # NVML indices (the tracker's --gpus)
    # the tracker: drop a CPU counter that opens but cannot be read (then estimate), and
    # open a GPU library only where its driver is present
    require_healthy: bool = False
    detect_gpus: bool = False


@dataclass(frozen=True)
class SourceSpec:
    name: str  # its health series' source label, and the key of build()'s ``down``
    flag: str  # --<flag> / --no-<flag>; specs may share one (the two estimates)
    default: bool
    kind: Kind
    module: str
    label: str  # for people: "RAPL", "NVML"
    help: str
    factory: str = "open_source"
    gpu: GpuVendor | None = None


SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec("rapl", "rapl", True, Kind.CPU_COUNTER, "carbontrack.sources.rapl", "RAPL",
               "CPU package and DRAM energy from the powercap (RAPL) counters"),
    SourceSpec("nvml", "nvml", True, Kind.GPU, "carbontrack.sources.nvml", "NVML",
               "NVIDIA GPU energy through NVML", gpu=NVIDIA),
    SourceSpec("amdsmi", "amdsmi", False, Kind.GPU, "carbontrack.sources.amdgpu", "AMD SMI",
               "AMD Instinct GPU energy through amdsmi (pip install 'carbontrack[amd]')",
               gpu=AMD),
    SourceSpec("cpu-estimate", "estimate", True, Kind.CPU_ESTIMATE,
               "carbontrack.sources.estimate", "CPU estimate",
               "model-based CPU and memory energy where no CPU counter exists",
               factory="open_cpu_source"),
    SourceSpec("memory-estimate", "estimate", True, Kind.CPU_ESTIMATE,
               "carbontrack.sources.estimate", "memory estimate",
               "model-based CPU and memory energy where no CPU counter exists",
               factory="open_memory_source"),
)


def spec(name: str) -> SourceSpec:
    for s in SOURCES:
        if s.name == name:
            return s
    raise KeyError(name)


def gpu_vendors() -> tuple[GpuVendor, ...]:
    """The vendors of registered GPU sources (carbontrack.core.accelerators.VENDORS)."""
    return tuple(s.gpu for s in SOURCES if s.gpu is not None)


__all__ = ["AMD", "NVIDIA", "SOURCES", "UNSUPPORTED_ACCELERATOR_PREFIXES", "Built", "GpuVendor",
           "Kind", "SourceContext", "SourceSpec", "build", "enabled_by_flags", "flags",
           "gpu_count", "gpu_vendors", "is_unsupported_accelerator", "spec",
           "vendor_for_resource"]


def flags() -> dict[str, tuple[bool, str]]:
    """flag -> (default, help), in registry order (specs sharing a flag give one)."""
    out: dict[str, tuple[bool, str]] = {}
    for s in SOURCES:
        out.setdefault(s.flag, (s.default, s.help))
    return out


def enabled_by_flags(values: Mapping[str, bool]) -> frozenset[str]:
    """Source names whose flag is on; a flag missing from ``values`` keeps its default."""
    return frozenset(s.name for s in SOURCES if values.get(s.flag, s.default))


DEFAULT_ENABLED = enabled_by_flags({})


@dataclass
class Built:
    """What :func:`build` opened: energy sources in registry order, the GPU ones again with
    their vendor, and the reason each enabled source did not open (name -> reason)."""

    sources: list[EnergySource] = field(default_factory=list)
    gpus: list[tuple[GpuVendor, GpuSource]] = field(default_factory=list)
    down: dict[str, str] = field(default_factory=dict)


def build(ctx: SourceContext, enabled: Collection[str] = DEFAULT_ENABLED,
          specs: Iterable[SourceSpec] = SOURCES) -> Built:
    """Open every enabled source. A source that cannot open is a reason in ``down``, never
    an exception, except a ConfigError (a GPU the user named that is not there)."""
    out = Built()
    cpu_counter = False
    for s in specs:
        if s.name not in enabled:
            continue
        if s.kind is Kind.CPU_COUNTER and ctx.cpu_watts is not None:
            continue  # a fixed CPU power was asked for
        if s.kind is Kind.CPU_ESTIMATE and cpu_counter:
            continue  # measured CPU energy exists: an estimate would count it twice
        wanted_gpus = s.name == "nvml" and ctx.gpu_indices is not None
        try:
            mod = importlib.import_module(s.module)
            if s.kind is Kind.GPU and ctx.detect_gpus and not wanted_gpus \
                    and not mod.present(ctx.env):
                continue
            src = cast(EnergySource, getattr(mod, s.factory)(ctx))
        except ConfigError:
            raise
        except ImportError as err:
            out.down[s.name] = f"{s.label} support unavailable: {err}"
            continue
        except (SourceUnavailable, CarbonTrackError) as err:
            if wanted_gpus and ctx.gpu_indices and isinstance(err, SourceUnavailable):
                raise ConfigError(f"--gpus {','.join(map(str, ctx.gpu_indices or ()))}: "
                                  f"{err}") from None
            out.down[s.name] = str(err)
            continue
        if s.kind is Kind.CPU_COUNTER and ctx.require_healthy:
            health = src.health()
            if not health.up:
                out.down[s.name] = health.message
                src.close()
                continue
        out.sources.append(src)
        if s.kind is Kind.CPU_COUNTER:
            cpu_counter = True
        if s.gpu is not None:
            out.gpus.append((s.gpu, cast("GpuSource", src)))
    return out
