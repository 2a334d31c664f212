"""Raw NVML readings for bench/bench_nvml_device.py, through pynvml (nvidia-ml-py).

* :class:`PowerSampler`: a thread reading power (nvmlDeviceGetPowerUsage), the energy
  counter (nvmlDeviceGetTotalEnergyConsumption) and, where the driver has it, the
  instantaneous power field (NVML_FI_DEV_POWER_INSTANT) every ``interval_s``;
* :func:`inventory`: every read-only call whose answer the fake library imitates (and a few
  it does not), each recorded as its value or its NVML error code and name — MIG mode is
  read, never set; clocks are not touched;
* :func:`process_snapshot`: the raw running-process list and utilisation samples.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

NVML_FI_DEV_POWER_AVERAGE = 185  # nvml.h field ids (pynvml may predate them)
NVML_FI_DEV_POWER_INSTANT = 186


def call(fn: Callable[[], Any]) -> dict[str, Any]:
    """{"ok": value} or {"error": code, "name": NVMLError class} for one NVML call."""
    try:
        return {"ok": _plain(fn())}
    except Exception as err:
        return {"error": getattr(err, "value", None), "name": type(err).__name__, "text": str(err)}


def _plain(value: Any) -> Any:
    """ctypes structs and lists as JSON-able values."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    fields = getattr(value, "_fields_", None)
    if fields:
        return {f[0]: _plain(getattr(value, f[0])) for f in fields}
    if hasattr(value, "value"):
        return _plain(value.value)
    attrs = getattr(value, "__dict__", None)  # pynvml's nvmlFriendlyObject (process lists)
    if isinstance(attrs, dict) and attrs:
        return {k: _plain(v) for k, v in attrs.items()}
    return repr(value)


def instant_power_w(nvml: ModuleType, handle: Any) -> float | None:
    """NVML_FI_DEV_POWER_INSTANT in W, or None where the driver (or the fake) has no such field."""
    try:
        (fv,) = nvml.nvmlDeviceGetFieldValues(handle, [NVML_FI_DEV_POWER_INSTANT])
    except Exception:
        return None
    if int(getattr(fv, "nvmlReturn", 0)) != 0:
        return None
    return float(fv.value.uiVal) / 1000.0


class PowerSampler:
    """Samples (t, power W, counter J) every ``interval_s`` until stopped; ``instant`` holds
    (t, W) of the instantaneous field where the driver answers it."""

    def __init__(self, nvml: ModuleType, handle: Any, interval_s: float) -> None:
        self._nvml, self._h, self.interval_s = nvml, handle, interval_s
        self.samples: list[tuple[float, float, float]] = []
        self.instant: list[tuple[float, float]] = []
        self.errors: dict[str, int] = {}
        self._has_instant = instant_power_w(nvml, handle) is not None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nvml-power-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def now(self) -> float:
        return time.monotonic()

    def _loop(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                t = time.monotonic()
                mw = int(self._nvml.nvmlDeviceGetPowerUsage(self._h))
                mj = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._h))
                self.samples.append((t, mw / 1000.0, mj / 1000.0))
                if self._has_instant:
                    w = instant_power_w(self._nvml, self._h)
                    if w is not None:
                        self.instant.append((t, w))
            except Exception as err:
                key = type(err).__name__
                self.errors[key] = self.errors.get(key, 0) + 1
            next_t += self.interval_s
            self._stop.wait(max(0.0, next_t - time.monotonic()))


def inventory(nvml: ModuleType, handle: Any) -> dict[str, Any]:
    """Versions, identity, limits, MIG state (read only) and the error codes of edge calls."""
    n = nvml
    bogus_uuid = "GPU-00000000-0000-0000-0000-000000000000"
    calls: dict[str, Callable[[], Any]] = {
        "nvmlSystemGetDriverVersion": n.nvmlSystemGetDriverVersion,
        "nvmlSystemGetNVMLVersion": n.nvmlSystemGetNVMLVersion,
        "nvmlSystemGetCudaDriverVersion_v2": n.nvmlSystemGetCudaDriverVersion_v2,
        "nvmlDeviceGetCount": n.nvmlDeviceGetCount,
        "nvmlDeviceGetName": lambda: n.nvmlDeviceGetName(handle),
        "nvmlDeviceGetUUID": lambda: n.nvmlDeviceGetUUID(handle),
        "nvmlDeviceGetIndex": lambda: n.nvmlDeviceGetIndex(handle),
        "nvmlDeviceGetMemoryInfo(v1)": lambda: n.nvmlDeviceGetMemoryInfo(handle),
        "nvmlDeviceGetMemoryInfo(v2)": lambda: n.nvmlDeviceGetMemoryInfo(handle, version=n.nvmlMemory_v2),
        "nvmlDeviceGetTotalEnergyConsumption": lambda: n.nvmlDeviceGetTotalEnergyConsumption(handle),
        "nvmlDeviceGetPowerUsage": lambda: n.nvmlDeviceGetPowerUsage(handle),
        "nvmlDeviceGetFieldValues(POWER_INSTANT,POWER_AVERAGE)": lambda: [
            {"nvmlReturn": int(f.nvmlReturn), "uiVal": int(f.value.uiVal)}
            for f in n.nvmlDeviceGetFieldValues(handle, [NVML_FI_DEV_POWER_INSTANT, NVML_FI_DEV_POWER_AVERAGE])
        ],
        "nvmlDeviceGetEnforcedPowerLimit": lambda: n.nvmlDeviceGetEnforcedPowerLimit(handle),
        "nvmlDeviceGetUtilizationRates": lambda: n.nvmlDeviceGetUtilizationRates(handle),
        "nvmlDeviceGetComputeRunningProcesses": lambda: n.nvmlDeviceGetComputeRunningProcesses(handle),
        "nvmlDeviceGetProcessUtilization(0)": lambda: n.nvmlDeviceGetProcessUtilization(handle, 0),
        "nvmlDeviceGetMigMode": lambda: n.nvmlDeviceGetMigMode(handle),
        "nvmlDeviceGetMaxMigDeviceCount": lambda: n.nvmlDeviceGetMaxMigDeviceCount(handle),
        "nvmlDeviceGetMigDeviceHandleByIndex(0)": lambda: str(n.nvmlDeviceGetMigDeviceHandleByIndex(handle, 0)),
        "nvmlDeviceIsMigDeviceHandle": lambda: n.nvmlDeviceIsMigDeviceHandle(handle),
        "nvmlDeviceGetHandleByUUID(unknown uuid)": lambda: str(n.nvmlDeviceGetHandleByUUID(bogus_uuid)),
        "nvmlDeviceGetHandleByIndex(count)": lambda: str(n.nvmlDeviceGetHandleByIndex(int(n.nvmlDeviceGetCount()))),
        "nvmlDeviceGetCudaComputeCapability": lambda: n.nvmlDeviceGetCudaComputeCapability(handle),
        "nvmlDeviceGetComputeMode": lambda: n.nvmlDeviceGetComputeMode(handle),
        "nvmlDeviceGetPerformanceState": lambda: n.nvmlDeviceGetPerformanceState(handle),
        "nvmlDeviceGetClockInfo(SM)": lambda: n.nvmlDeviceGetClockInfo(handle, n.NVML_CLOCK_SM),
    }
    return {name: call(fn) for name, fn in calls.items()}


def process_snapshot(nvml: ModuleType, handle: Any, last_seen_us: int) -> tuple[dict[str, Any], int]:
    """Raw process list and the utilisation samples newer than ``last_seen_us``; returns the
    snapshot and the newest sample timestamp (to pass next time, as NVML intends)."""
    procs = call(lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle))
    util = call(lambda: nvml.nvmlDeviceGetProcessUtilization(handle, last_seen_us))
    newest = last_seen_us
    if "ok" in util and isinstance(util["ok"], list):
        for s in util["ok"]:
            if isinstance(s, dict):
                newest = max(newest, int(s.get("timeStamp", 0)))
    return {"t": time.monotonic(), "processes": procs, "utilization": util}, newest
