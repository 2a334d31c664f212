"""The fake libnvidia-ml.so.1 follows nvml.h where CarbonTrack depends on it, through the real
pynvml bindings. nvml.h: NVIDIA/go-nvml gen/nvml/nvml.h at 2f9e261fe40a7a1c54783d66805e8920564763b4
(NVML_API_VERSION 13); the quoted sentences are from its doc comments."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from types import ModuleType

import pytest

from carbontrack.sim.fakenvml import FakeGpu, FakeGpuProcess, FakeMig

GIB = 1024**3


def _lib() -> ctypes.CDLL:
    """The library pynvml is bound to. By soname: the loader hands back the object already
    loaded in this process (another test module may have built and loaded its own copy)."""
    return ctypes.CDLL("libnvidia-ml.so.1")


def _init_count() -> int:
    return int(_lib().carbontrackFakeNvmlInitCount())


def test_init_is_reference_counted(pynvml: ModuleType, nvml_state: Callable[..., None]) -> None:
    # "A reference count of the number of initializations is maintained. Shutdown only
    # occurs when the reference count reaches zero."
    nvml_state([FakeGpu("GPU-rc")])
    base = _init_count()
    pynvml.nvmlInit()
    pynvml.nvmlInit()
    assert _init_count() == base + 2
    pynvml.nvmlShutdown()
    assert pynvml.nvmlDeviceGetCount() == 1  # one reference left: still initialised
    pynvml.nvmlShutdown()
    assert _init_count() == base
    if base == 0:
        with pytest.raises(pynvml.NVMLError) as err:
            pynvml.nvmlDeviceGetCount()
        assert err.value.value == pynvml.NVML_ERROR_UNINITIALIZED


def test_unmatched_shutdown_is_not_an_error(pynvml: ModuleType, nvml_state: Callable[..., None]) -> None:
    # "For backwards compatibility, no error is reported if nvmlShutdown() is called more
    # times than nvmlInit()." Called on the C symbol: pynvml keeps its own count too.
    lib = _lib()
    base = int(lib.carbontrackFakeNvmlInitCount())
    for _ in range(base):
        assert lib.nvmlInit_v2() == 0  # balance what other tests left open, then over-release
    for _ in range(2 * base + 2):
        assert lib.nvmlShutdown() == 0
    assert lib.carbontrackFakeNvmlInitCount() == 0
    for _ in range(base):
        assert lib.nvmlInit_v2() == 0
    assert lib.carbontrackFakeNvmlInitCount() == base


def _mig_gpu() -> list[FakeGpu]:
    return [FakeGpu("GPU-mig", memory_total_bytes=80 * GIB, util_gpu=70,
                    migs=[FakeMig("MIG-one", memory_total_bytes=40 * GIB)]),
            FakeGpu("GPU-plain", util_gpu=55)]


def test_utilisation_not_supported_on_mig_enabled_gpus(pynvml: ModuleType, nvml_state: Callable[..., None]) -> None:
    # nvmlDeviceGetUtilizationRates: "On MIG-enabled GPUs, querying device utilization rates
    # is not currently supported."; nvmlDeviceGetProcessUtilization: "... querying process
    # utilization is not currently supported."
    nvml_state(_mig_gpu(), [FakeGpuProcess(0, 900, used_memory_bytes=3 * GIB, sm_util=80, mig=0),
                            FakeGpuProcess(1, 901, used_memory_bytes=GIB, sm_util=40)])
    pynvml.nvmlInit()
    try:
        parent = pynvml.nvmlDeviceGetHandleByIndex(0)
        mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 0)
        plain = pynvml.nvmlDeviceGetHandleByIndex(1)
        for handle in (parent, mig):
            for call in (lambda h: pynvml.nvmlDeviceGetUtilizationRates(h),
                         lambda h: pynvml.nvmlDeviceGetProcessUtilization(h, 0)):
                with pytest.raises(pynvml.NVMLError) as err:
                    call(handle)
                assert err.value.value == pynvml.NVML_ERROR_NOT_SUPPORTED
        # what MIG does offer: the processes on an instance, their memory, the instance's size
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(mig)
        assert [(p.pid, p.usedGpuMemory) for p in procs] == [(900, 3 * GIB)]
        info = pynvml.nvmlDeviceGetMemoryInfo(mig)
        assert (info.total, info.used) == (40 * GIB, 3 * GIB)
        # a GPU without MIG still answers
        assert pynvml.nvmlDeviceGetUtilizationRates(plain).gpu == 55
        assert [s.smUtil for s in pynvml.nvmlDeviceGetProcessUtilization(plain, 0)] == [40]
    finally:
        pynvml.nvmlShutdown()


def test_memory_v2_struct_version_is_checked(pynvml: ModuleType, nvml_state: Callable[..., None]) -> None:
    # nvmlMemory_v2 = NVML_STRUCT_VERSION(Memory, 2) = sizeof(nvmlMemory_v2_t) | 2 << 24;
    # sizeof is 40 on x86-64 (an unsigned int padded to 8, then four unsigned long long).
    assert pynvml.nvmlMemory_v2 == 40 | 2 << 24
    nvml_state([FakeGpu("GPU-mem", memory_total_bytes=16 * GIB, memory_used_bytes=GIB)])
    pynvml.nvmlInit()
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        good = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
        assert (good.total, good.used, good.free) == (16 * GIB, GIB, 15 * GIB)

        class MemoryV2(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint), ("total", ctypes.c_ulonglong),
                        ("reserved", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                        ("used", ctypes.c_ulonglong)]

        lib = _lib()
        bad = MemoryV2(version=1 << 24 | 40)
        assert lib.nvmlDeviceGetMemoryInfo_v2(h, ctypes.byref(bad)) == 25  # ARGUMENT_VERSION_MISMATCH
    finally:
        pynvml.nvmlShutdown()


@pytest.mark.parametrize(("code", "name"), [
    (5, "NVML_ERROR_ALREADY_INITIALIZED"), (21, "NVML_ERROR_NO_DATA"),
    (25, "NVML_ERROR_ARGUMENT_VERSION_MISMATCH"), (28, "NVML_ERROR_GPU_NOT_FOUND"),
    (29, "NVML_ERROR_INVALID_STATE"),
])
def test_return_codes_match_nvml_h(pynvml: ModuleType, code: int, name: str) -> None:
    # the nvmlReturn_t enum of nvml.h, as pynvml also binds it; the fake names each one
    assert getattr(pynvml, name) == code
    assert pynvml.nvmlErrorString(code) not in ("Unknown Error", "")
