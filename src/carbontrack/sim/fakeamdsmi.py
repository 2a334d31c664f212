"""Build and drive the fake ``libamd_smi.so`` (``fakeamdsmi.c``).

The real ``amdsmi`` Python bindings (PyPI ``amdsmi``) load ``libamd_smi.so`` with ctypes,
trying ``$ROCM_PATH/lib/libamd_smi.so`` first; this module compiles a C library with that
name whose functions answer from a state file, so tests and the node simulator run the
real bindings end to end without an AMD GPU.

To use it, put the directory :func:`build_fake_libamdsmi` returns in ``ROCM_PATH`` (the
library sits in its ``lib/``) before ``amdsmi`` is first imported, and set
``CARBONTRACK_FAKE_AMDSMI_STATE`` to a file :func:`write_state` writes. The bindings bind
every entry point at import, so a library missing one (``old=True``: one built as an older
release would be) makes ``import amdsmi`` fail with "undefined symbol".

Energy is given as the library gives it: ``energy_counts`` accumulator ticks of
``resolution_uj`` microjoules each (AMD's header: "counter_resolution resolution of the
counter in micro Joules"; rocm_smi.cc hard-codes 15.3). :func:`counts_for_joules` converts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import ModuleType

from ._atomic import write_atomic

STATE_ENV = "CARBONTRACK_FAKE_AMDSMI_STATE"
LIBRARY = "libamd_smi.so"
GIB = 1024**3
# rocm_smi/src/rocm_smi.cc: kEnergyCounterResolution = 15.3F (micro joules per tick)
DEFAULT_RESOLUTION_UJ = 15.3
# amdsmi_status_t values (amdsmi.h), for the error fields below
STATUS_NOT_SUPPORTED = 2
STATUS_FILE_ERROR = 14
STATUS_INIT_ERROR = 18


class FakeAmdSmiBuildError(RuntimeError):
    """The fake library could not be compiled (no gcc, or a compiler error)."""


@dataclass
class FakePartition:
    """A compute partition (partition id 1..n) of a FakeAmdGpu; partition 0 is the GPU's own
    handle. Partitions have no energy counter of their own unless ``energy_error`` is 0."""

    bdf: str
    uuid: str
    memory_total_bytes: int = 24 * GIB
    energy_error: int = STATUS_NOT_SUPPORTED


@dataclass
class FakeAmdGpu:
    """One physical AMD GPU (one amdsmi socket) as the library reports it."""

    bdf: str  # PCI address, "0000:c1:00.0": the AMD device plugin's device ID
    uuid: str
    name: str = "AMD Instinct MI300X"
    memory_total_bytes: int = 192 * GIB
    energy_counts: int = 0  # accumulator ticks (see resolution_uj)
    resolution_uj: float = DEFAULT_RESOLUTION_UJ
    power_w: int = 0  # current_socket_power, W
    avg_power_w: int | None = None  # average_socket_power, W (default: power_w)
    energy_error: int = 0  # amdsmi_status_t for amdsmi_get_energy_count (2 = NOT_SUPPORTED)
    power_error: int = 0
    procs_error: int = 0
    state: str = "ok"  # ok | lost (every call on its handles answers lost_error)
    lost_error: int = STATUS_FILE_ERROR
    compute_partition: str = "SPX"
    partitions: list[FakePartition] = field(default_factory=list)


@dataclass
class FakeAmdProcess:
    """A process on ``gpu`` (index into the gpus list), on partition ``partition`` (0: the
    GPU's own handle). ``gfx_ns``: cumulative time on the graphics/compute engine."""

    gpu: int
    pid: int
    vram_bytes: int = 0
    gfx_ns: int = 0
    name: str = "python3"
    partition: int = 0


def counts_for_joules(joules: float, resolution_uj: float = DEFAULT_RESOLUTION_UJ) -> int:
    """Accumulator ticks that stand for ``joules`` at ``resolution_uj`` per tick."""
    return round(joules * 1e6 / resolution_uj)


def _clean(value: str, what: str) -> str:
    if any(c in value for c in "\t\r\n"):
        raise ValueError(f"{what} {value!r} must not contain tabs or newlines")
    return value


def render_state(gpus: Sequence[FakeAmdGpu], processes: Iterable[FakeAmdProcess] = (), *,
                 lib_version: str = "7.0.2", init_error: int = 0) -> str:
    """The state file text for ``fakeamdsmi.c`` (format at the top of that file)."""
    lines = [f"lib\tversion={_clean(lib_version, 'lib version')}"]
    if init_error:
        lines.append(f"init\terror={init_error}")
    for g in gpus:
        if g.state not in ("ok", "lost"):
            raise ValueError(f"FakeAmdGpu.state must be ok or lost, got {g.state!r}")
        avg = g.power_w if g.avg_power_w is None else g.avg_power_w
        lines.append("\t".join([
            "gpu", f"bdf={_clean(g.bdf, 'bdf')}", f"uuid={_clean(g.uuid, 'uuid')}",
            f"name={_clean(g.name, 'name')}", f"mem_total={g.memory_total_bytes}",
            f"energy={g.energy_counts}", f"resolution={g.resolution_uj!r}",
            f"power_w={g.power_w}", f"avg_power_w={avg}", f"energy_error={g.energy_error}",
            f"power_error={g.power_error}", f"procs_error={g.procs_error}",
            f"state={g.state}", f"lost_error={g.lost_error}",
            f"partition={_clean(g.compute_partition, 'partition')}",
        ]))
    for gi, g in enumerate(gpus):
        for p in g.partitions:
            lines.append(f"part\tgpu={gi}\tbdf={_clean(p.bdf, 'bdf')}\tuuid={_clean(p.uuid, 'uuid')}"
                         f"\tmem_total={p.memory_total_bytes}\tenergy_error={p.energy_error}")
    for proc in processes:
        if not 0 <= proc.gpu < len(gpus):
            raise ValueError(f"FakeAmdProcess pid {proc.pid}: gpu {proc.gpu} is not in gpus")
        if not 0 <= proc.partition <= len(gpus[proc.gpu].partitions):
            raise ValueError(f"FakeAmdProcess pid {proc.pid}: no partition {proc.partition}")
        lines.append(f"proc\tgpu={proc.gpu}\tpart={proc.partition}\tpid={proc.pid}"
                     f"\tname={_clean(proc.name, 'name')}\tmem={proc.vram_bytes}"
                     f"\tvram={proc.vram_bytes}\tgfx_ns={proc.gfx_ns}")
    return "\n".join(lines) + "\n"


def write_state(path: Path, gpus: Sequence[FakeAmdGpu], processes: Iterable[FakeAmdProcess] = (),
                *, lib_version: str = "7.0.2", init_error: int = 0) -> None:
    """Atomically (re)write the state file the fake library reads on every call."""
    write_atomic(Path(path), render_state(gpus, processes, lib_version=lib_version,
                                          init_error=init_error))


def _source() -> bytes:
    return resources.files("carbontrack.sim").joinpath("fakeamdsmi.c").read_bytes()


def build_fake_libamdsmi(cache_dir: Path, *, old: bool = False, cc: str | None = None) -> Path:
    """Compile ``fakeamdsmi.c`` (once per source version) and return a ROCM_PATH-style
    directory whose ``lib/`` holds ``libamd_smi.so``. ``old``: leave out an entry point the
    bindings need (an older library). Safe to call from parallel test processes."""
    src = _source()
    digest = hashlib.sha256(src).hexdigest()[:16]
    root = Path(cache_dir) / f"fakeamdsmi-{digest}{'-old' if old else ''}"
    lib = root / "lib" / LIBRARY
    if lib.exists():
        return root
    compiler = shutil.which(cc) if cc else shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise FakeAmdSmiBuildError(
            "no C compiler (gcc) on PATH: install one (e.g. apt-get install gcc) to build the "
            "fake libamd_smi.so")
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        c_file = Path(tmp) / "fakeamdsmi.c"
        c_file.write_bytes(src)
        tmp_lib = Path(tmp) / LIBRARY
        cmd = [compiler, "-O2", "-Wall", "-shared", "-fPIC", f"-Wl,-soname,{LIBRARY}",
               *(["-DFAKE_AMDSMI_OMIT_NEW"] if old else []), "-o", str(tmp_lib), str(c_file)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise FakeAmdSmiBuildError(
                f"compiling fakeamdsmi.c failed ({' '.join(cmd)}): {proc.stderr.strip()}")
        os.replace(tmp_lib, lib)  # atomic: a parallel builder sees all or nothing
    return root


def load_in_process(root: Path) -> ModuleType:
    """Import the real ``amdsmi`` bindings in this process, bound to the fake library under
    ``root`` (from :func:`build_fake_libamdsmi`). The bindings load their library once, at
    import: a process that already imported them bound to another library keeps it, and
    this raises RuntimeError (run such a test in a subprocess)."""
    os.environ["ROCM_PATH"] = str(root)  # the bindings search $ROCM_PATH/lib first
    import amdsmi

    loaded = str(getattr(amdsmi.amdsmi_wrapper._libraries.get(LIBRARY), "_name", ""))
    # any build of this same fake source will do (its directory is named by its digest)
    if Path(loaded).parent.parent.name != Path(root).name:
        raise RuntimeError(f"amdsmi is already bound to {loaded!r} in this process")
    mod: ModuleType = amdsmi
    return mod
