"""AMD Instinct GPU energy through the ``amdsmi`` Python bindings (PyPI ``amdsmi``, injected).

Per physical GPU (one amdsmi socket), in order of preference:

* ``measured``: ``amdsmi_get_energy_count`` gives ``energy_accumulator`` ticks and their
  ``counter_resolution`` in **micro**joules (amdsmi.h: "counter_resolution resolution of
  the counter @p power in micro Joules"; rocm_smi.cc hard-codes 15.3 for every ASIC; the
  gpu_metrics header calls the unit 15.259 uJ = 2^-16 J). Joules = ticks x resolution x 1e-6,
  as amdsmi_cli prints it. Reading the ticks as millijoules, or the resolution as joules,
  is the trap CodeCarbon fell into (its pull request #1072 printed 12.5 MW for MI250s), so
  the resolution is read from the library on every call and never assumed.
  The accumulator is a uint64, but the gpu_metrics table's field was widened from 32 bits
  ("v1 mod. (32->64)", amdsmi.h): firmware with a 32-bit counter wraps every 2^32 ticks
  (65.7 kJ at 15.3 uJ: two minutes at 550 W). A counter that goes backwards is a 32-bit wrap
  when the wrapped difference fits the time since the last read at ``max_watts``; otherwise
  the driver restarted and the counter counts from zero.
* ``sampled``: where the counter is NotSupported, ``amdsmi_get_power_info``'s
  ``current_socket_power`` (W; ``average_socket_power`` where that is N/A, as on MI200) is
  sampled every ``sample_interval_s`` and integrated (trapezoid). Never a silent 0: a GPU
  with neither is left out and :meth:`AmdSmiSource.health` names it.

Compute partitions (MI300 CPX/DPX/QPX modes): amdsmi lists a partitioned GPU's partitions as
processor handles of one socket, partition 0 first (``amdsmi_get_gpu_kfd_info``'s
``current_partition_id``). Energy is counted on partition 0's handle, which covers the
whole GPU; partitions of one mode are equal in size (each holds the same number of XCDs),
so each partition is a sub-device with an equal, ``estimated`` share (as MIG instances are
for NVIDIA).

Per-process use: ``amdsmi_get_gpu_process_list`` per handle gives each process's VRAM and
its cumulative graphics-engine time in ns (amdsmi.h: "How much time the process spend using
these engines in ns"); the busy share over the interval between two calls stands in for
NVML's SM %. A GPU that errors mid-run keeps its last cumulative energy; ``read()`` never
raises. Device ids are PCI addresses: what AMD's Kubernetes device plugin allocates
(ROCm/k8s-device-plugin internal/pkg/plugin/plugin.go: "Watching GPU with bus ID").
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from carbontrack.core.errors import SourceUnavailable
from carbontrack.core.types import Component, EnergyReading, Method, SourceHealth

from .gpu import GpuDevice, GpuProcess

if TYPE_CHECKING:
    from .registry import SourceContext

# AMD does not publish an accuracy for the SMU's energy accumulator; the board power it
# integrates is the same telemetry as NVIDIA's +/-5 % class, so the same figure is used.
UNCERTAINTY_MEASURED = 0.05
UNCERTAINTY_SAMPLED = 0.15  # whole-watt samples of a 1 s average miss transients
UNCERTAINTY_PARTITION = 0.30  # equal split of the GPU's energy among its partitions
# the oldest library whose bindings this module is written against (amdsmi_get_energy_count
# with counter_resolution, amdsmi_get_gpu_process_list with engine_usage)
MIN_LIB_MAJOR = 6
# above any Instinct board's power (MI355X: 1.4 kW): bounds a plausible 32-bit wrap
MAX_WATTS = 2000.0
WRAP_32 = 1 << 32
STATUS_NOT_SUPPORTED = 2
PACKAGE_HINT = "pip install 'carbontrack[amd]' (the amdsmi bindings)"


def _why(err: BaseException) -> str:
    """One line for an amdsmi exception (its str() spans lines)."""
    info = getattr(err, "get_error_info", None)
    if callable(info):
        with contextlib.suppress(Exception):
            return str(info(False))
    return str(err).replace("\n", " ").strip() or type(err).__name__


def _code(err: BaseException) -> int | None:
    code = getattr(err, "err_code", None)
    return code if isinstance(code, int) else None


def load_bindings() -> ModuleType:
    """Import ``amdsmi``; SourceUnavailable with the fix when the bindings or the library
    are missing or the library is older than the bindings."""
    try:
        import amdsmi
    except ImportError as err:
        raise SourceUnavailable(f"amdsmi bindings are not installed: {PACKAGE_HINT}") from err
    except KeyError as err:  # amdsmi_wrapper: _libraries['libamd_smi.so'] never loaded
        raise SourceUnavailable(
            "libamd_smi.so not found: install the ROCm amd-smi-lib package or set ROCM_PATH "
            "to the ROCm directory holding lib/libamd_smi.so") from err
    except AttributeError as err:  # ctypes: "undefined symbol" while binding entry points
        raise SourceUnavailable(
            f"libamd_smi.so is older than the amdsmi bindings ({err}): install the "
            "amd-smi-lib release matching the bindings' version") from err
    mod: ModuleType = amdsmi
    return mod


@dataclass
class _AmdGpu:
    device: GpuDevice
    handle: Any
    partitions: list[tuple[GpuDevice, Any]] = field(default_factory=list)
    last_ticks: int | None = None
    last_read_t: float | None = None
    joules: float = 0.0
    wraps: int = 0
    last_sample_t: float | None = None
    last_power_w: float = 0.0
    error: str = ""


class AmdSmiSource:
    """Cumulative joules per AMD GPU (an ``EnergySource`` and ``GpuSource``)."""

    name = "amdsmi"

    def __init__(self, smi: ModuleType, gpus: list[_AmdGpu], *, sample_interval_s: float,
                 clock: Callable[[], float], unusable: Sequence[str] = (),
                 max_watts: float = MAX_WATTS) -> None:
        self._smi = smi
        self._gpus = gpus
        self.unusable = list(unusable)
        self._clock = clock
        self._max_watts = max_watts
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._gfx: dict[tuple[str, int], tuple[float, int]] = {}  # (unit, pid) -> (t, gfx ns)
        self._interval = sample_interval_s
        for g in gpus:  # baseline: energy counts from open
            if g.device.method is Method.MEASURED:
                self._read_counter(g)
            else:
                self._sample(g)
        self._thread: threading.Thread | None = None
        if sample_interval_s > 0 and any(g.device.method is Method.SAMPLED for g in gpus):
            self._thread = threading.Thread(target=self._sample_loop, daemon=True,
                                            name="carbontrack-amdsmi-sampler")
            self._thread.start()

    # -- construction ---------------------------------------------------------
    @classmethod
    def open(cls, smi: ModuleType | None = None, sample_interval_s: float = 0.1, *,
             clock: Callable[[], float] = time.monotonic,
             max_watts: float = MAX_WATTS) -> AmdSmiSource:
        """Initialise amdsmi for AMD GPUs and describe every GPU. ``sample_interval_s`` <= 0
        starts no thread (sampled GPUs are sampled on each read). SourceUnavailable when the
        bindings, the library or any usable GPU are missing."""
        smi = smi if smi is not None else load_bindings()
        try:
            smi.amdsmi_init(smi.AmdSmiInitFlags.INIT_AMD_GPUS)
        except Exception as err:
            raise SourceUnavailable(f"amdsmi_init failed ({_why(err)}): is the amdgpu driver "
                                    "loaded and /dev/kfd, /dev/dri readable?") from err
        try:
            version = smi.amdsmi_get_lib_version()
            if int(version["major"]) < MIN_LIB_MAJOR:
                raise SourceUnavailable(
                    f"libamd_smi {version['major']}.{version['minor']}.{version['release']} is "
                    f"too old: ROCm {MIN_LIB_MAJOR}.0 or newer is needed for energy counters")
            gpus, unusable = _discover(smi)
            if not gpus:
                raise SourceUnavailable("amdsmi found no usable AMD GPU"
                                        + (f": {'; '.join(unusable)}" if unusable else ""))
        except BaseException:
            with contextlib.suppress(Exception):
                smi.amdsmi_shut_down()
            raise
        return cls(smi, gpus, sample_interval_s=sample_interval_s, clock=clock,
                   unusable=unusable, max_watts=max_watts)

    # -- EnergySource ---------------------------------------------------------
    def read(self) -> Sequence[EnergyReading]:
        """Cumulative joules of each physical GPU since open."""
        with self._lock:
            for g in self._gpus:
                if g.device.method is Method.MEASURED:
                    self._read_counter(g)
                else:
                    self._sample(g)
            return [EnergyReading(Component.GPU, g.device.uuid, g.joules, g.device.method,
                                  UNCERTAINTY_MEASURED if g.device.method is Method.MEASURED
                                  else UNCERTAINTY_SAMPLED, g.device.name) for g in self._gpus]

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
            return SourceHealth(False, f"AMD GPU {g.device.index} ({g.device.uuid}) failed: "
                                f"{g.error}; its energy stays at the last reading "
                                f"{g.joules:.1f} J{more}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(Exception):
            self._smi.amdsmi_shut_down()

    # -- devices and processes ------------------------------------------------
    def devices(self) -> list[GpuDevice]:
        """Each GPU followed by its partitions (with ``parent_uuid``), if partitioned."""
        out: list[GpuDevice] = []
        for g in self._gpus:
            out.append(g.device)
            out.extend(d for d, _ in g.partitions)
        return out

    def processes(self) -> list[GpuProcess]:
        """Processes per GPU (per partition on partitioned GPUs) with VRAM and busy %."""
        out: list[GpuProcess] = []
        now = self._clock()
        seen: dict[tuple[str, int], tuple[float, int]] = {}
        for g in self._gpus:
            units = [(d.uuid, h) for d, h in g.partitions] or [(g.device.uuid, g.handle)]
            for uuid, handle in units:
                try:
                    procs = self._smi.amdsmi_get_gpu_process_list(handle)
                except Exception as err:
                    if _code(err) != STATUS_NOT_SUPPORTED:
                        with self._lock:
                            g.error = f"process query: {_why(err)}"
                    continue
                for p in procs:
                    pid = int(p["pid"])
                    usage = p.get("memory_usage") or {}
                    vram = usage.get("vram_mem", p.get("mem"))
                    gfx = int((p.get("engine_usage") or {}).get("gfx", 0))
                    seen[(uuid, pid)] = (now, gfx)
                    out.append(GpuProcess(uuid, pid, None if vram is None else int(vram),
                                          self._busy(uuid, pid, now, gfx)))
        self._gfx = seen  # bounded by the processes alive now
        return out

    def _busy(self, unit: str, pid: int, now: float, gfx_ns: int) -> float | None:
        prev = self._gfx.get((unit, pid))
        if prev is None or now <= prev[0] or gfx_ns < prev[1]:
            return None  # first sight (or a reused pid): no interval yet
        return min(100.0, 100.0 * (gfx_ns - prev[1]) / 1e9 / (now - prev[0]))

    # -- internals ------------------------------------------------------------
    def _read_counter(self, g: _AmdGpu) -> None:
        now = self._clock()
        try:
            e = self._smi.amdsmi_get_energy_count(g.handle)
            ticks = int(e["energy_accumulator"])
            res_uj = float(e["counter_resolution"])
        except Exception as err:
            g.error = _why(err)
            return
        if not res_uj > 0:
            g.error = f"counter_resolution {res_uj!r} uJ is not positive; energy not counted"
            return
        g.error = ""
        last, last_t = g.last_ticks, g.last_read_t
        g.last_ticks, g.last_read_t = ticks, now
        if last is None:
            return  # the baseline
        delta = ticks - last
        if delta < 0:
            wrapped = ticks + WRAP_32 - last
            dt = max(now - (last_t if last_t is not None else now), 0.0)
            if last < WRAP_32 and wrapped * res_uj * 1e-6 <= self._max_watts * max(dt, 1e-3):
                delta = wrapped  # a 32-bit accumulator wrapped
                g.wraps += 1
            else:
                delta = ticks  # the driver restarted: the counter counts from zero
        g.joules += delta * res_uj * 1e-6

    def _sample(self, g: _AmdGpu) -> None:
        now = self._clock()
        try:
            watts = _power_w(self._smi.amdsmi_get_power_info(g.handle))
        except Exception as err:
            g.error = _why(err)
            g.last_sample_t = None  # do not bridge the outage with a guess
            return
        if watts is None:
            g.error = "power reads N/A"
            g.last_sample_t = None
            return
        g.error = ""
        if g.last_sample_t is not None:
            g.joules += (g.last_power_w + watts) / 2.0 * max(now - g.last_sample_t, 0.0)
        g.last_sample_t, g.last_power_w = now, watts

    def _sample_loop(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                for g in self._gpus:
                    if g.device.method is Method.SAMPLED:
                        self._sample(g)


# -- discovery (module functions: they read amdsmi once at open and hold no state) --
def _discover(smi: ModuleType) -> tuple[list[_AmdGpu], list[str]]:
    gpus: list[_AmdGpu] = []
    unusable: list[str] = []
    for idx, socket in enumerate(smi.amdsmi_get_socket_handles()):
        try:
            handles = _socket_processors(smi, socket)
            gpus.append(_describe(smi, idx, handles))
        except SourceUnavailable as err:
            unusable.append(str(err))
        except Exception as err:  # one broken GPU must not hide the others
            unusable.append(f"AMD GPU {idx}: {_why(err)}")
    return gpus, unusable


def _socket_processors(smi: ModuleType, socket: Any) -> list[Any]:
    """The processor handles of one socket (the bindings' amdsmi_get_processor_handles
    flattens every socket; the C entry point takes one)."""
    import ctypes

    w = smi.amdsmi_wrapper
    count = ctypes.c_uint32(0)
    null = ctypes.POINTER(w.amdsmi_processor_handle)()
    smi.amdsmi_interface._check_res(w.amdsmi_get_processor_handles(socket, ctypes.byref(count), null))
    arr = (w.amdsmi_processor_handle * count.value)()
    smi.amdsmi_interface._check_res(w.amdsmi_get_processor_handles(socket, ctypes.byref(count), arr))
    return [w.amdsmi_processor_handle(arr[i]) for i in range(count.value)]


def _describe(smi: ModuleType, idx: int, handles: list[Any]) -> _AmdGpu:
    if not handles:
        raise SourceUnavailable(f"AMD GPU {idx}: no processor handles")

    def info(h: Any) -> tuple[str, str, int, int]:
        bdf = str(smi.amdsmi_get_gpu_device_bdf(h))
        name = str(smi.amdsmi_get_gpu_asic_info(h).get("market_name", "AMD GPU"))
        mem = int(smi.amdsmi_get_gpu_memory_total(h, smi.AmdSmiMemoryType.VRAM))
        try:
            part = int(smi.amdsmi_get_gpu_kfd_info(h)["current_partition_id"])
        except Exception:
            part = 0  # not partitionable: the GPU's own handle
        return bdf, name, mem, part

    described = sorted(((*info(h), h) for h in handles), key=lambda t: t[3])
    bdf, name, mem, _, handle = described[0]
    method = _method(smi, idx, bdf, handle)
    parent = GpuDevice(idx, bdf, name, mem, method=method)
    gpu = _AmdGpu(parent, handle)
    if len(described) > 1:
        total = sum(d[2] for d in described)
        parent = GpuDevice(idx, bdf, name, total, method=method)
        gpu.device = parent
        gpu.partitions = [
            (GpuDevice(idx, d[0], f"{name} partition {d[3]}", d[2], parent_uuid=bdf,
                       method=Method.ESTIMATED, mig_index=i), d[4])
            for i, d in enumerate(described)]
    return gpu


def _method(smi: ModuleType, idx: int, bdf: str, handle: Any) -> Method:
    try:
        smi.amdsmi_get_energy_count(handle)
        return Method.MEASURED
    except Exception as err:
        if _code(err) != STATUS_NOT_SUPPORTED:
            raise SourceUnavailable(f"AMD GPU {idx} ({bdf}): energy counter: {_why(err)}") from err
    try:
        if _power_w(smi.amdsmi_get_power_info(handle)) is None:
            raise SourceUnavailable(f"AMD GPU {idx} ({bdf}): power reads N/A")
    except SourceUnavailable:
        raise
    except Exception as perr:
        raise SourceUnavailable(
            f"AMD GPU {idx} ({bdf}): neither the energy counter nor power readings are "
            f"supported ({_why(perr)}); its energy cannot be measured") from perr
    return Method.SAMPLED


def _power_w(info: dict[str, Any]) -> float | None:
    """current_socket_power in W, else average_socket_power (older gpu_metrics); None if
    both are N/A (the bindings give the string "N/A" for 0xFFFF)."""
    for key in ("current_socket_power", "average_socket_power", "socket_power"):
        v = info.get(key)
        if isinstance(v, (int, float)) and v != 0xFFFF:
            return float(v)
    return None


def present(env: Mapping[str, str]) -> bool:
    """Cheap checks only: the amdgpu compute device, or libamd_smi.so where the bindings
    look for it (ROCM_HOME/ROCM_PATH, then /opt/rocm)."""
    if Path("/dev/kfd").exists():
        return True
    roots = [env.get("ROCM_HOME"), env.get("ROCM_PATH"), "/opt/rocm"]
    return any(Path(r, "lib", "libamd_smi.so").exists() for r in roots if r)


def open_source(ctx: SourceContext) -> AmdSmiSource:
    """The registry's factory (carbontrack.sources.registry)."""
    return AmdSmiSource.open()
