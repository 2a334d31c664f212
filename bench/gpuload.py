"""A GPU load with nothing but the standard library: the CUDA driver API through ctypes.

Used by bench/device_nvml_validation.py as the load it measures (and as the command
`carbontrack run` tracks). Patterns:

* ``steady``: back-to-back kernels that keep every SM busy (FMA loop, 4 blocks per SM);
* ``bursty``: kernels of ``--kernel-ms`` separated by ``--gap-ms`` of idle;
* ``idle``: a context and nothing launched (the GPU's floor with a process attached).

Backends:

* ``cuda``: libcuda.so.1 (cuInit, cuDeviceGet, cuCtxCreate_v2 — or the primary context
  where that symbol is missing —, cuModuleLoadDataEx with the PTX below, cuLaunchKernel,
  cuCtxSynchronize). The kernel spins on ``%clock64`` for a number of SM cycles computed
  from the device's clock rate, doing FMAs so that the SMs draw power, and stores one
  float per thread so that the FMAs are not dead code.
* ``fake``: no GPU. The process registers itself as a JSON file ``<pid>.json`` in the
  directory ``$CARBONTRACK_FAKE_GPU_JOBS`` (pattern, timings, start time) for
  bench/fakegpu_model.py, which turns the registered jobs into the fake libnvidia-ml's
  power, energy and per-process utilisation; it then sleeps the same on/off pattern.

Either way it writes a JSON report (``--report``): pid, pattern, kernels launched and the
time they ran (launch to synchronise, wall clock), so the measurer knows each process's
own busy time.

Run: python3 bench/gpuload.py --backend cuda --pattern steady --seconds 10
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time
from pathlib import Path

JOBS_ENV = "CARBONTRACK_FAKE_GPU_JOBS"
PATTERNS = ("steady", "bursty", "idle")
STEADY_KERNEL_MS = 20.0  # long enough that launch overhead is negligible, short enough to stop on time

# PTX ISA 7.0 / sm_70: JIT-compiled by the driver for the device (sm_90 on H100/H200).
# burn(out, cycles): each thread runs 16 dependent FMAs per iteration on two chains until
# cycles SM clocks have passed since it started, then stores its result.
PTX = r"""
.version 7.0
.target sm_70
.address_size 64

.visible .entry burn(
    .param .u64 burn_param_out,
    .param .u64 burn_param_cycles
)
{
    .reg .pred %p<2>;
    .reg .b32 %r<5>;
    .reg .b64 %rd<9>;
    .reg .f32 %f<6>;

    ld.param.u64 %rd1, [burn_param_out];
    ld.param.u64 %rd2, [burn_param_cycles];
    cvta.to.global.u64 %rd1, %rd1;
    mov.u64 %rd3, %clock64;
    mov.u32 %r1, %tid.x;
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mad.lo.s32 %r4, %r2, %r3, %r1;
    cvt.rn.f32.u32 %f1, %r4;
    mov.f32 %f2, 0f3F800000;
    mov.f32 %f3, 0f3F7FFFEF;
    mov.f32 %f4, 0f3A83126F;
BURN_LOOP:
    fma.rn.f32 %f1, %f1, %f3, %f4;
    fma.rn.f32 %f2, %f2, %f3, %f4;
    fma.rn.f32 %f1, %f1, %f3, %f4;
    fma.rn.f32 %f2, %f2, %f3, %f4;
    fma.rn.f32 %f1, %f1, %f3, %f4;
    fma.rn.f32 %f2, %f2, %f3, %f4;
    fma.rn.f32 %f1, %f1, %f3, %f4;
    fma.rn.f32 %f2, %f2, %f3, %f4;
    fma.rn.f32 %f1, %f1, %f3, %f4;
    fma.rn.f32 %f2, %f2, %f3, %f4;
    fma.rn.f32 %f1, %f1, %f3, %f4;
    fma.rn.f32 %f2, %f2, %f3, %f4;
    fma.rn.f32 %f1, %f1, %f3, %f4;
    fma.rn.f32 %f2, %f2, %f3, %f4;
    fma.rn.f32 %f1, %f1, %f3, %f4;
    fma.rn.f32 %f2, %f2, %f3, %f4;
    mov.u64 %rd4, %clock64;
    sub.s64 %rd5, %rd4, %rd3;
    setp.lt.u64 %p1, %rd5, %rd2;
    @%p1 bra BURN_LOOP;
    add.f32 %f5, %f1, %f2;
    mul.wide.u32 %rd6, %r4, 4;
    add.s64 %rd7, %rd1, %rd6;
    st.global.f32 [%rd7], %f5;
    ret;
}
"""

# cuda.h enum values
CU_DEVICE_ATTRIBUTE_CLOCK_RATE = 13  # kHz
CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16
CU_JIT_ERROR_LOG_BUFFER = 5
CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6
THREADS_PER_BLOCK = 256
BLOCKS_PER_SM = 4


class CudaError(RuntimeError):
    """A CUDA driver call failed; the message names the call and the CUresult."""


class CudaBurner:
    """One context on device 0 with the burn kernel loaded (CUDA driver API via ctypes)."""

    def __init__(self, lib_path: str = "libcuda.so.1") -> None:
        try:
            self._cu = ctypes.CDLL(lib_path)
        except OSError as err:
            raise CudaError(f"cannot load {lib_path} ({err}): no NVIDIA driver on this machine") from err
        self._check("cuInit", self._cu.cuInit(0))
        dev = ctypes.c_int()
        self._check("cuDeviceGet", self._cu.cuDeviceGet(ctypes.byref(dev), 0))
        self._ctx = ctypes.c_void_p()
        self.context = "cuCtxCreate_v2"
        rc = self._cu.cuCtxCreate_v2(ctypes.byref(self._ctx), 0, dev) if hasattr(self._cu, "cuCtxCreate_v2") else -1
        if rc != 0:  # no such entry point, or it failed: the primary context does the same here
            self.context = f"primary (cuCtxCreate_v2 answered {rc})"
            self._check("cuDevicePrimaryCtxRetain", self._cu.cuDevicePrimaryCtxRetain(ctypes.byref(self._ctx), dev))
            self._check("cuCtxSetCurrent", self._cu.cuCtxSetCurrent(self._ctx))
        self.clock_khz = self._attr(CU_DEVICE_ATTRIBUTE_CLOCK_RATE, dev)
        self.sms = self._attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev)
        name = ctypes.create_string_buffer(256)
        self._check("cuDeviceGetName", self._cu.cuDeviceGetName(name, 256, dev))
        self.device_name = name.value.decode()
        self._fn = self._load_kernel()
        self.blocks = self.sms * BLOCKS_PER_SM
        self._out = ctypes.c_uint64()
        nbytes = ctypes.c_size_t(self.blocks * THREADS_PER_BLOCK * 4)
        self._check("cuMemAlloc_v2", self._cu.cuMemAlloc_v2(ctypes.byref(self._out), nbytes))

    def _attr(self, attr: int, dev: ctypes.c_int) -> int:
        value = ctypes.c_int()
        self._check("cuDeviceGetAttribute", self._cu.cuDeviceGetAttribute(ctypes.byref(value), attr, dev))
        return value.value

    def _load_kernel(self) -> ctypes.c_void_p:
        module = ctypes.c_void_p()
        log = ctypes.create_string_buffer(8192)
        opts = (ctypes.c_int * 2)(CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
        vals = (ctypes.c_void_p * 2)(ctypes.cast(log, ctypes.c_void_p), ctypes.c_void_p(len(log)))
        rc = self._cu.cuModuleLoadDataEx(ctypes.byref(module), ctypes.c_char_p(PTX.encode()), 2, opts, vals)
        if rc != 0:
            jit_log = log.value.decode(errors="replace")
            raise CudaError(f"cuModuleLoadDataEx failed: {self._name(rc)}; JIT log: {jit_log}")
        fn = ctypes.c_void_p()
        self._check("cuModuleGetFunction", self._cu.cuModuleGetFunction(ctypes.byref(fn), module, b"burn"))
        return fn

    def run_kernel(self, ms: float) -> float:
        """Launch one burn kernel of about ``ms`` milliseconds on every SM, wait for it;
        returns the wall seconds from launch to the end of cuCtxSynchronize."""
        out = ctypes.c_uint64(self._out.value)
        cycles = ctypes.c_uint64(int(ms * self.clock_khz))
        params = (ctypes.c_void_p * 2)(
            ctypes.cast(ctypes.byref(out), ctypes.c_void_p), ctypes.cast(ctypes.byref(cycles), ctypes.c_void_p)
        )
        t0 = time.monotonic()
        self._check(
            "cuLaunchKernel",
            self._cu.cuLaunchKernel(self._fn, self.blocks, 1, 1, THREADS_PER_BLOCK, 1, 1, 0, None, params, None),
        )
        self._check("cuCtxSynchronize", self._cu.cuCtxSynchronize())
        return time.monotonic() - t0

    def _name(self, rc: int) -> str:
        text = ctypes.c_char_p()
        self._cu.cuGetErrorName(rc, ctypes.byref(text))
        return f"{rc} ({text.value.decode() if text.value else 'unknown'})"

    def _check(self, call: str, rc: int) -> None:
        if rc != 0:
            raise CudaError(f"{call} failed: {self._name(rc)}")


def ready(path: Path | None) -> None:
    """Tell the measurer the load is set up (context made, kernel loaded): its time starts now."""
    if path is not None:
        path.touch()


def run_cuda(pattern: str, seconds: float, kernel_ms: float, gap_ms: float, lib: str,
             ready_file: Path | None) -> dict[str, object]:  # fmt: skip
    burner = CudaBurner(lib)
    ready(ready_file)
    deadline = time.monotonic() + seconds
    kernels, busy = 0, 0.0
    while time.monotonic() < deadline:
        if pattern == "idle":
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            continue
        ms = STEADY_KERNEL_MS if pattern == "steady" else kernel_ms
        busy += burner.run_kernel(ms)
        kernels += 1
        if pattern == "bursty":
            time.sleep(gap_ms / 1000.0)
    return {"device": burner.device_name, "sms": burner.sms, "clock_khz": burner.clock_khz,
            "context": burner.context, "kernels": kernels, "busy_s": busy}  # fmt: skip


def fake_active(job: dict[str, float | str], now: float) -> float:
    """1.0 while a registered fake job's pattern has a kernel running at wall time ``now``."""
    if job["pattern"] == "steady":
        return 1.0
    if job["pattern"] != "bursty":
        return 0.0
    on, off = float(job["kernel_ms"]) / 1000.0, float(job["gap_ms"]) / 1000.0
    return 1.0 if (now - float(job["start"])) % (on + off) < on else 0.0


def run_fake(pattern: str, seconds: float, kernel_ms: float, gap_ms: float,
             ready_file: Path | None) -> dict[str, object]:  # fmt: skip
    jobs = os.environ.get(JOBS_ENV)
    if not jobs:
        raise SystemExit(f"gpuload: --backend fake needs ${JOBS_ENV} (the fake GPU model's job directory)")
    start = time.time()
    job = {"pid": os.getpid(), "pattern": pattern, "kernel_ms": kernel_ms, "gap_ms": gap_ms, "start": start}
    path = Path(jobs) / f"{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(job))
    os.replace(tmp, path)
    ready(ready_file)
    try:
        end = start + seconds
        busy = seconds if pattern == "steady" else 0.0
        kernels = 0
        if pattern == "bursty":
            period = (kernel_ms + gap_ms) / 1000.0
            kernels = int(seconds // period)
            busy = kernels * kernel_ms / 1000.0 + min(seconds % period, kernel_ms / 1000.0)
        time.sleep(max(0.0, end - time.time()))
    finally:
        path.unlink(missing_ok=True)
    return {"device": "fake", "sms": 0, "clock_khz": 0, "kernels": kernels, "busy_s": busy}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--backend", choices=("cuda", "fake"), default="cuda")
    p.add_argument("--pattern", choices=PATTERNS, default="steady")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--kernel-ms", type=float, default=5.0, help="bursty: kernel length")
    p.add_argument("--gap-ms", type=float, default=20.0, help="bursty: idle time between kernels")
    p.add_argument("--cuda-lib", default="libcuda.so.1")
    p.add_argument("--report", type=Path, help="write the JSON report here")
    p.add_argument("--ready", type=Path, help="touch this file once set up, before the timed load")
    a = p.parse_args(argv)
    t0 = time.monotonic()
    try:
        if a.backend == "cuda":
            info = run_cuda(a.pattern, a.seconds, a.kernel_ms, a.gap_ms, a.cuda_lib, a.ready)
        else:
            info = run_fake(a.pattern, a.seconds, a.kernel_ms, a.gap_ms, a.ready)
    except CudaError as err:
        print(f"gpuload: {err}", file=sys.stderr)
        return 2
    report = {"pid": os.getpid(), "backend": a.backend, "pattern": a.pattern, "kernel_ms": a.kernel_ms,
              "gap_ms": a.gap_ms, "wall_s": time.monotonic() - t0, **info}  # fmt: skip
    if a.report:
        a.report.write_text(json.dumps(report))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
