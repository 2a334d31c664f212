"""NVIDIA GPU energy through NVML (the ``pynvml`` module of nvidia-ml-py, injected).

Per physical GPU, in order of preference:

* ``measured``: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded;
  Volta and newer). Cumulative joules = counter - counter at open (a counter that goes
  backwards means a driver reload: its new value is energy since then).
* ``sampled``: where that call is NotSupported (pre-Volta, some vGPUs), a background
  thread samples ``nvmlDeviceGetPowerUsage`` (mW) every ``sample_interval_s`` and
  integrates with the trapezoid rule. Never a silent 0.

MIG instances (``MIG-…`` UUIDs) get no energy from NVML; :meth:`NvmlSource.read_mig`
splits the parent's energy by each instance's share of the parent's memory (a proxy
for its slice count) and labels it ``estimated``. Those readings are a breakdown of the
parent's and must never be added to :meth:`NvmlSource.read`.

A GPU that errors or disappears mid-run keeps its last cumulative energy, and
:meth:`NvmlSource.health` says which GPU and why; nothing raises out of ``read()``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from carbontrack.core.errors import ConfigError, SourceUnavailable
from carbontrack.core.types import Component, EnergyReading, Method, SourceHealth

from .gpu import GpuDevice, GpuProcess

if TYPE_CHECKING:
    from .registry import SourceContext

__all__ = ["GpuDevice", "GpuProcess", "NvmlSource"]

# NVIDIA documents board power readings as accurate to +/-5 % on data-centre parts.
UNCERTAINTY_MEASURED = 0.05
# Sampling a 1-second power average misses transients between samples.
UNCERTAINTY_SAMPLED = 0.15
# Memory share as a proxy for a MIG instance's slice of the board's power.
UNCERTAINTY_MIG = 0.50

# NVML return codes we branch on (nvml.h); pynvml raises NVMLError with .value = code.
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6


@dataclass
class _Gpu:
    device: GpuDevice
    handle: Any
    migs: list[tuple[GpuDevice, Any]]
    baseline_mj: int = 0
    last_mj: int = 0
    joules: float = 0.0
    # sampled path
    last_sample_t: float | None = None
    last_power_w: float = 0.0
    error: str = ""


def _code(err: Exception) -> int | None:
    value = getattr(err, "value", None)
    return value if isinstance(value, int) else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlSource:
    """Cumulative joules per selected GPU (an ``EnergySource``), plus devices and processes."""

    name = "nvml"

    def __init__(
        self,
        nvml: ModuleType,
        gpus: list[_Gpu],
        *,
        sample_interval_s: float,
        clock: Callable[[], float],
        unusable: Sequence[str] = (),
    ) -> None:
        self._nvml = nvml
        self._gpus = gpus
        self.unusable = list(unusable)  # GPUs skipped at open, one reason each
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.samples = 0  # power samples taken (sampled GPUs), for diagnostics
        self._interval = sample_interval_s
        for g in gpus:  # the first power sample: integration starts at open
            if g.device.method is Method.SAMPLED:
                self._sample(g)
        if self._interval > 0 and any(g.device.method is Method.SAMPLED for g in gpus):
            self._thread = threading.Thread(target=self._sample_loop, name="carbontrack-nvml-sampler", daemon=True)
            self._thread.start()

    # -- construction ---------------------------------------------------------
    @classmethod
    def open(
        cls,
        nvml: ModuleType | None = None,
        gpu_indices: Sequence[int | str] | None = None,
        sample_interval_s: float = 0.1,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> NvmlSource:
        """Initialise NVML and select GPUs (indices, or ``GPU-``/``MIG-`` UUIDs; None = all).

        ``sample_interval_s`` <= 0 starts no sampling thread: sampled GPUs are then sampled
        on each :meth:`read` only (deterministic tests). Raises SourceUnavailable when NVML
        or a GPU is missing, ConfigError for a selection that names no GPU here."""
        if nvml is None:
            try:
                import pynvml as nvml_mod
            except ImportError as err:
                raise SourceUnavailable("pynvml is not installed: pip install nvidia-ml-py") from err
            nvml = nvml_mod
        try:
            nvml.nvmlInit()
        except Exception as err:  # pynvml raises NVMLError subclasses, or OSError on load
            raise SourceUnavailable(
                f"NVML unavailable ({err}): no NVIDIA driver or libnvidia-ml.so.1 on this machine"
            ) from err
        try:
            count = int(nvml.nvmlDeviceGetCount())
            if count == 0:
                raise SourceUnavailable("NVML found no GPUs")
            unusable: list[str] = []
            if gpu_indices is None:
                # All GPUs: one broken board must not hide the others; health names it.
                gpus = []
                for i in range(count):
                    try:
                        ((idx, handle),) = _select(nvml, count, [i])
                        gpus.append(_describe(nvml, idx, handle))
                    except SourceUnavailable as err:
                        unusable.append(str(err))
                if not gpus:
                    raise SourceUnavailable(f"no usable GPU: {'; '.join(unusable)}")
            else:
                # GPUs the user named: each must work.
                handles = _select(nvml, count, gpu_indices)
                gpus = [_describe(nvml, idx, h) for idx, h in handles]
        except BaseException:
            nvml.nvmlShutdown()
            raise
        return cls(nvml, gpus, sample_interval_s=sample_interval_s, clock=clock, unusable=unusable)

    # -- EnergySource ---------------------------------------------------------
    def read(self) -> Sequence[EnergyReading]:
        """Cumulative joules of each selected physical GPU since open."""
        with self._lock:
            for g in self._gpus:
                if g.device.method is Method.MEASURED:
                    self._read_counter(g)
                else:
                    self._sample(g)
            return [self._reading(g) for g in self._gpus]

    def read_mig(self) -> Sequence[EnergyReading]:
        """Estimated joules per MIG instance: the parent's joules x the instance's share of
        the parent's memory. A breakdown of :meth:`read`'s values — never add the two."""
        out: list[EnergyReading] = []
        with self._lock:
            for g in self._gpus:
                for dev, _ in g.migs:
                    share = dev.memory_total_bytes / g.device.memory_total_bytes
                    out.append(
                        EnergyReading(
                            Component.GPU,
                            dev.uuid,
                            g.joules * share,
                            Method.ESTIMATED,
                            UNCERTAINTY_MIG,
                            dev.name,
                        )
                    )
        return out

    def health(self) -> SourceHealth:
        with self._lock:
            bad = [g for g in self._gpus if g.error]
            if not bad and self.unusable:
                more = f" (and {len(self.unusable) - 1} more)" if len(self.unusable) > 1 else ""
                return SourceHealth(False, f"{self.unusable[0]}; GPU skipped{more}")
            if not bad:
                return SourceHealth(True, "")
            g = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            return SourceHealth(
                False,
                f"GPU {g.device.index} ({g.device.uuid}) failed: {g.error}; its energy stays at "
                f"the last reading {g.joules:.1f} J{more}",
            )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        # shutting down a lost driver must not fail the caller's exit
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()

    # -- devices and processes -----------------------------------------------
    def devices(self) -> list[GpuDevice]:
        """Selected GPUs, each followed by its MIG instances (with ``parent_uuid``)."""
        out: list[GpuDevice] = []
        for g in self._gpus:
            out.append(g.device)
            out.extend(dev for dev, _ in g.migs)
        return out

    def processes(self) -> list[GpuProcess]:
        """Compute processes per GPU (per MIG instance on MIG GPUs) with SM utilisation.

        NotFound/NotSupported on a device gives no processes (or no utilisation) for that
        device; a PID that vanished between the two NVML calls gets ``sm_util_percent``
        None; a failing GPU is skipped and reported by :meth:`health`. On a MIG-enabled GPU
        utilisation is not asked for: nvml.h says "On MIG-enabled GPUs, querying process
        utilization is not currently supported", so MIG processes carry their used memory
        and ``sm_util_percent`` None."""
        out: list[GpuProcess] = []
        for g in self._gpus:
            targets = [(dev.uuid, h) for dev, h in g.migs] or [(g.device.uuid, g.handle)]
            for uuid, handle in targets:
                try:
                    running = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
                except Exception as err:
                    if _code(err) not in (NVML_ERROR_NOT_FOUND, NVML_ERROR_NOT_SUPPORTED):
                        with self._lock:
                            g.error = f"process query: {err}"
                    continue
                util = {} if g.migs else self._sm_util(handle)
                for p in running:
                    mem = getattr(p, "usedGpuMemory", None)
                    pid = int(p.pid)
                    out.append(GpuProcess(uuid, pid, None if mem is None else int(mem), util.get(pid)))
        return out

    def _sm_util(self, handle: Any) -> dict[int, float]:
        """Latest SM % per pid from NVML's sample buffer; {} when unsupported or no samples."""
        try:
            samples = self._nvml.nvmlDeviceGetProcessUtilization(handle, 0)
        except Exception:
            return {}  # NotFound (no samples yet) or NotSupported: utilisation unknown
        latest: dict[int, tuple[int, float]] = {}
        for s in samples:
            pid, ts = int(s.pid), int(s.timeStamp)
            if pid not in latest or ts >= latest[pid][0]:
                latest[pid] = (ts, float(s.smUtil))
        return {pid: v for pid, (_, v) in latest.items()}

    # -- internals ------------------------------------------------------------
    def _reading(self, g: _Gpu) -> EnergyReading:
        unc = UNCERTAINTY_MEASURED if g.device.method is Method.MEASURED else UNCERTAINTY_SAMPLED
        return EnergyReading(Component.GPU, g.device.uuid, g.joules, g.device.method, unc, g.device.name)

    def _read_counter(self, g: _Gpu) -> None:
        try:
            mj = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(g.handle))
        except Exception as err:
            g.error = str(err) or type(err).__name__
            return
        g.error = ""
        delta = mj - g.last_mj
        if delta < 0:
            delta = mj  # counter restarted with the driver: it has counted mj since
        g.joules += delta / 1000.0
        g.last_mj = mj

    def _sample(self, g: _Gpu) -> None:
        """One power sample; integrate since the previous one (trapezoid). Caller holds lock."""
        now = self._clock()
        try:
            watts = int(self._nvml.nvmlDeviceGetPowerUsage(g.handle)) / 1000.0
        except Exception as err:
            g.error = str(err) or type(err).__name__
            g.last_sample_t = None  # do not bridge the outage with a guess
            return
        g.error = ""
        if g.last_sample_t is not None:
            g.joules += (g.last_power_w + watts) / 2.0 * max(now - g.last_sample_t, 0.0)
        g.last_sample_t, g.last_power_w = now, watts
        self.samples += 1

    def _sample_loop(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                for g in self._gpus:
                    if g.device.method is Method.SAMPLED:
                        self._sample(g)


# -- discovery (module functions: they read NVML once at open and hold no state) ----
def _select(nvml: ModuleType, count: int, wanted: Sequence[int | str] | None) -> list[tuple[int, Any]]:
    if wanted is None:
        wanted = list(range(count))
    out: list[tuple[int, Any]] = []
    for w in wanted:
        key = str(w).strip()
        try:
            if key.isdigit():
                if int(key) >= count:
                    raise ConfigError(
                        f"GPU index {key} does not exist: this machine has {count} GPU(s), indices 0-{count - 1}"
                    )
                handle = nvml.nvmlDeviceGetHandleByIndex(int(key))
            else:
                handle = nvml.nvmlDeviceGetHandleByUUID(key)
                if _is_mig(nvml, handle):
                    # energy is per physical GPU: select the parent of a MIG instance
                    handle = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
            idx = int(nvml.nvmlDeviceGetIndex(handle))
        except ConfigError:
            raise
        except Exception as err:
            if _code(err) in (NVML_ERROR_NOT_FOUND, 2):
                raise ConfigError(
                    f"GPU {key!r} not found: give an index 0-{count - 1} or a GPU-/MIG- UUID "
                    "as listed by nvidia-smi -L"
                ) from None
            raise SourceUnavailable(f"GPU {key}: {err}") from err
        if idx not in [i for i, _ in out]:
            out.append((idx, handle))
    return out


def _describe(nvml: ModuleType, idx: int, handle: Any) -> _Gpu:
    """Name, memory, MIG instances and energy method of one GPU; SourceUnavailable if the
    GPU cannot be used (lost, or no way to measure it)."""
    try:
        return _describe_unchecked(nvml, idx, handle)
    except SourceUnavailable:
        raise
    except Exception as err:
        raise SourceUnavailable(f"GPU {idx}: {err}") from err


def _describe_unchecked(nvml: ModuleType, idx: int, handle: Any) -> _Gpu:
    uuid = _text(nvml.nvmlDeviceGetUUID(handle))
    name = _text(nvml.nvmlDeviceGetName(handle))
    mem = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
    try:
        energy: int | None = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception as err:
        if _code(err) != NVML_ERROR_NOT_SUPPORTED:
            raise SourceUnavailable(f"GPU {idx} ({uuid}): energy counter: {err}") from err
        energy = None
        try:
            nvml.nvmlDeviceGetPowerUsage(handle)
        except Exception as perr:
            # no counter and no power reading: reporting 0 J would be a silent lie
            raise SourceUnavailable(
                f"GPU {idx} ({uuid}): neither the energy counter nor power readings are "
                f"supported ({perr}); its energy cannot be measured"
            ) from perr
    method = Method.MEASURED if energy is not None else Method.SAMPLED
    device = GpuDevice(idx, uuid, name, mem, method=method)
    gpu = _Gpu(device, handle, _list_migs(nvml, idx, handle, uuid))
    if energy is not None:
        gpu.baseline_mj = gpu.last_mj = energy
    return gpu


def _is_mig(nvml: ModuleType, handle: Any) -> bool:
    try:
        flag = nvml.nvmlDeviceIsMigDeviceHandle(handle)
    except Exception:
        return False
    return bool(getattr(flag, "value", flag))  # pynvml 12+ returns a c_uint here


def _list_migs(nvml: ModuleType, idx: int, handle: Any, parent_uuid: str) -> list[tuple[GpuDevice, Any]]:
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except Exception:
        return []  # not MIG-capable (NotSupported) or the query failed: no instances
    if int(current) != 1:
        return []
    out: list[tuple[GpuDevice, Any]] = []
    for i in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(handle))):
        try:
            mh = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, i)
        except Exception:
            continue  # empty slot (NotFound)
        dev = GpuDevice(
            index=idx,
            uuid=_text(nvml.nvmlDeviceGetUUID(mh)),
            name=_text(nvml.nvmlDeviceGetName(mh)),
            memory_total_bytes=int(nvml.nvmlDeviceGetMemoryInfo(mh).total),
            parent_uuid=parent_uuid,
            method=Method.ESTIMATED,
            mig_index=i,
        )
        out.append((dev, mh))
    return out


def present(env: Mapping[str, str]) -> bool:
    """Cheap checks only (no ldconfig): a driver node, the driver's procfs, or the library
    on LD_LIBRARY_PATH (how tests load the fake libnvidia-ml.so.1)."""
    if Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists():
        return True
    dirs = [d for d in env.get("LD_LIBRARY_PATH", "").split(":") if d]
    return any(Path(d, "libnvidia-ml.so.1").exists() for d in dirs)


def open_source(ctx: SourceContext) -> NvmlSource:
    """The registry's factory: every GPU, or the indices the tracker's --gpus names."""
    return NvmlSource.open(gpu_indices=list(ctx.gpu_indices) if ctx.gpu_indices else None)
