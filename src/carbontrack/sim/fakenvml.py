"""Build and drive the fake ``libnvidia-ml.so.1`` (``fakenvml.c``).

The real pynvml bindings load ``libnvidia-ml.so.1`` with ctypes; this module compiles a
small C library with that soname whose functions answer from a state file, so tests,
the node simulator and benchmarks run the real bindings end to end without a GPU.

Two ways to load it:

* another process: put the directory from :func:`build_fake_libnvml` first on
  ``LD_LIBRARY_PATH`` and set ``CARBONTRACK_FAKE_NVML_STATE`` in its environment;
* this process (unit tests): call :func:`load_in_process` *before* the first
  ``pynvml.nvmlInit()``. It dlopens the library by full path with RTLD_GLOBAL; pynvml's
  later ``CDLL("libnvidia-ml.so.1")`` then gets the already-loaded object, because the
  dynamic loader matches a requested name against the sonames of loaded libraries. A
  process that already loaded the real NVML keeps it: use a subprocess there.

The state file is re-read on every NVML call; :func:`write_state` replaces it atomically.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ._atomic import write_atomic

STATE_ENV = "CARBONTRACK_FAKE_NVML_STATE"
SONAME = "libnvidia-ml.so.1"
GIB = 1024**3


class FakeNvmlBuildError(RuntimeError):
    """The fake library could not be compiled (no gcc, or a compiler error)."""


@dataclass
class FakeMig:
    """A MIG instance (GPU instance + compute instance) of a FakeGpu."""

    uuid: str  # "MIG-<uuid>"
    name: str = "NVIDIA H100 80GB HBM3 MIG 3g.40gb"
    memory_total_bytes: int = 40 * GIB
    gpu_instance_id: int | None = None  # default: position + 1
    compute_instance_id: int = 0


@dataclass
class FakeGpu:
    """One physical GPU as NVML reports it. Energy in mJ, power in mW (NVML's units)."""

    uuid: str  # "GPU-<uuid>"
    name: str = "NVIDIA H100 80GB HBM3"
    memory_total_bytes: int = 80 * GIB
    memory_used_bytes: int = 0
    energy_mj: int = 0
    energy_supported: bool = True  # False: nvmlDeviceGetTotalEnergyConsumption -> NOT_SUPPORTED
    power_supported: bool = True  # False: nvmlDeviceGetPowerUsage -> NOT_SUPPORTED
    power_mw: int = 0
    util_gpu: int = 0
    util_mem: int = 0
    state: str = "ok"  # ok | lost (GPU_IS_LOST on every call) | gone (not even counted)
    mig_mode: int | None = None  # None: not MIG-capable; 0 off; 1 on (default if migs given)
    migs: list[FakeMig] = field(default_factory=list)
    procs_error: int = 0  # NVML error code for running-process queries (3 = NOT_SUPPORTED)
    putil_error: int = 0  # NVML error code for per-process utilisation queries


@dataclass
class FakeGpuProcess:
    """A compute process on ``gpu`` (index into the gpus list) or one of its MIG instances."""

    gpu: int
    pid: int
    used_memory_bytes: int = 0
    # utilisation sample; never reported on a MIG-enabled GPU (NVML answers NOT_SUPPORTED)
    sm_util: int = 0
    mem_util: int = 0
    mig: int | None = None  # index into that FakeGpu's migs
    timestamp_us: int = 1  # utilisation sample time; 0 means "no sample yet"


def _clean(value: str, what: str) -> str:
    if any(c in value for c in "\t\r\n"):
        raise ValueError(f"{what} {value!r} must not contain tabs or newlines")
    return value


def render_state(
    gpus: Sequence[FakeGpu],
    processes: Iterable[FakeGpuProcess] = (),
    *,
    driver_version: str = "550.54.15",
    init_error: int = 0,
) -> str:
    """The state file text for ``fakenvml.c`` (format documented at the top of that file)."""
    lines = [f"driver\tversion={_clean(driver_version, 'driver version')}"]
    if init_error:
        lines.append(f"init\terror={init_error}")
    for g in gpus:
        if g.state not in ("ok", "lost", "gone"):
            raise ValueError(f"FakeGpu.state must be ok, lost or gone, got {g.state!r}")
        mig_mode = g.mig_mode if g.mig_mode is not None else (1 if g.migs else -1)
        lines.append(
            "\t".join(
                [
                    "gpu",
                    f"uuid={_clean(g.uuid, 'uuid')}",
                    f"name={_clean(g.name, 'name')}",
                    f"mem_total={g.memory_total_bytes}",
                    f"mem_used={g.memory_used_bytes}",
                    f"energy_mj={g.energy_mj}",
                    f"energy_supported={int(g.energy_supported)}",
                    f"power_supported={int(g.power_supported)}",
                    f"power_mw={g.power_mw}",
                    f"util_gpu={g.util_gpu}",
                    f"util_mem={g.util_mem}",
                    f"state={g.state}",
                    f"mig_mode={mig_mode}",
                    f"procs_error={g.procs_error}",
                    f"putil_error={g.putil_error}",
                ]
            )
        )
    for gi, g in enumerate(gpus):
        for mi, m in enumerate(g.migs):
            gid = m.gpu_instance_id if m.gpu_instance_id is not None else mi + 1
            lines.append(
                f"mig\tgpu={gi}\tuuid={_clean(m.uuid, 'uuid')}\tname={_clean(m.name, 'name')}"
                f"\tmem_total={m.memory_total_bytes}\tgi={gid}\tci={m.compute_instance_id}"
            )
    for p in processes:
        if not 0 <= p.gpu < len(gpus):
            raise ValueError(f"FakeGpuProcess pid {p.pid}: gpu {p.gpu} is not in gpus")
        lines.append(
            f"proc\tgpu={p.gpu}\tmig={-1 if p.mig is None else p.mig}\tpid={p.pid}"
            f"\tused_mem={p.used_memory_bytes}\tsm={p.sm_util}\tmem={p.mem_util}"
            f"\tts={p.timestamp_us}"
        )
    return "\n".join(lines) + "\n"


def write_state(
    path: Path,
    gpus: Sequence[FakeGpu],
    processes: Iterable[FakeGpuProcess] = (),
    *,
    driver_version: str = "550.54.15",
    init_error: int = 0,
) -> None:
    """Atomically (re)write the state file the fake library reads on every call."""
    write_atomic(
        Path(path),
        render_state(gpus, processes, driver_version=driver_version, init_error=init_error),
    )


def _source() -> bytes:
    return resources.files("carbontrack.sim").joinpath("fakenvml.c").read_bytes()


def build_fake_libnvml(cache_dir: Path, *, cc: str | None = None) -> Path:
    """Compile ``fakenvml.c`` (once per source version) and return the directory holding
    ``libnvidia-ml.so.1``. Safe to call from parallel test processes."""
    src = _source()
    digest = hashlib.sha256(src).hexdigest()[:16]
    out_dir = Path(cache_dir) / f"fakenvml-{digest}"
    lib = out_dir / SONAME
    if lib.exists():
        return out_dir
    compiler = shutil.which(cc) if cc else shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise FakeNvmlBuildError(
            "no C compiler (gcc) on PATH: install one (e.g. apt-get install gcc) to build the fake libnvidia-ml.so.1"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        c_file = Path(tmp) / "fakenvml.c"
        c_file.write_bytes(src)
        tmp_lib = Path(tmp) / SONAME
        cmd = [
            compiler, "-O2", "-Wall", "-shared", "-fPIC",
            f"-Wl,-soname,{SONAME}", "-o", str(tmp_lib), str(c_file),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise FakeNvmlBuildError(f"compiling fakenvml.c failed ({' '.join(cmd)}): {proc.stderr.strip()}")
        os.replace(tmp_lib, lib)  # atomic: a parallel builder sees all or nothing
    return out_dir


_loaded: dict[Path, ctypes.CDLL] = {}


def load_in_process(lib_dir: Path) -> ctypes.CDLL:
    """dlopen the fake library globally so pynvml's ``CDLL("libnvidia-ml.so.1")`` finds it.

    Call before pynvml first loads NVML in this process. Returns the handle (kept alive)."""
    path = (Path(lib_dir) / SONAME).resolve()
    if path not in _loaded:
        _loaded[path] = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    return _loaded[path]
