"""A fake procfs: ``<procfs_root>/stat``, ``cpuinfo``, ``meminfo``, ``<pid>/stat``, ``<pid>/cgroup``.

Formats follow proc(5) for Linux 5.x/6.x. Times are clock ticks (USER_HZ = 100 unless a
caller says otherwise). All writes are atomic (temp file + rename) because the exporter
and the tracker read these files while tests and the node simulator rewrite them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ._atomic import write_atomic

USER_HZ = 100


@dataclass
class Ticks:
    """Aggregate CPU ticks of /proc/stat's ``cpu`` line (the fields CarbonTrack reads)."""

    user: int = 0
    nice: int = 0
    system: int = 0
    idle: int = 0
    iowait: int = 0
    irq: int = 0
    softirq: int = 0
    steal: int = 0

    def fields(self) -> list[int]:
        return [
            self.user, self.nice, self.system, self.idle,
            self.iowait, self.irq, self.softirq, self.steal,
        ]  # fmt: skip


def proc_stat_text(ticks: Ticks, n_cpus: int, btime: int = 1_700_000_000) -> str:
    """``/proc/stat`` with the aggregate line and ``n_cpus`` per-CPU lines (ticks split
    evenly, the remainder on cpu0), plus the usual trailing counters."""
    lines = ["cpu  " + " ".join(str(v) for v in [*ticks.fields(), 0, 0])]
    for i in range(n_cpus):
        share = [v // n_cpus + (v % n_cpus if i == 0 else 0) for v in ticks.fields()]
        lines.append(f"cpu{i} " + " ".join(str(v) for v in [*share, 0, 0]))
    lines += [
        "intr 0",
        "ctxt 0",
        f"btime {btime}",
        "processes 1",
        "procs_running 1",
        "procs_blocked 0",
        "softirq 0 0 0 0 0 0 0 0 0 0 0",
    ]
    return "\n".join(lines) + "\n"


def write_proc_stat(procfs_root: Path, ticks: Ticks, n_cpus: int, btime: int = 1_700_000_000) -> None:
    """Write ``/proc/stat`` (``proc_stat_text``)."""
    write_atomic(Path(procfs_root) / "stat", proc_stat_text(ticks, n_cpus, btime))


@dataclass
class FakeProcStat:
    """A machine whose CPUs tick: ``advance(seconds, busy_cpus)`` adds ticks and rewrites stat.

    Busy time goes to user, the rest of each CPU's time to idle; ``steal_cpus`` adds
    hypervisor steal (time that is neither ours nor idle).
    """

    procfs_root: Path
    n_cpus: int
    hz: int = USER_HZ
    ticks: Ticks = field(default_factory=Ticks)

    def __post_init__(self) -> None:
        write_proc_stat(self.procfs_root, self.ticks, self.n_cpus)

    def advance(self, seconds: float, busy_cpus: float, steal_cpus: float = 0.0) -> None:
        if not 0 <= busy_cpus + steal_cpus <= self.n_cpus:
            raise ValueError(f"busy+steal {busy_cpus + steal_cpus} not in 0..{self.n_cpus} CPUs")
        busy = round(seconds * busy_cpus * self.hz)
        steal = round(seconds * steal_cpus * self.hz)
        total = round(seconds * self.n_cpus * self.hz)
        self.ticks.user += busy
        self.ticks.steal += steal
        self.ticks.idle += total - busy - steal
        write_proc_stat(self.procfs_root, self.ticks, self.n_cpus)


def write_cpuinfo(
    procfs_root: Path,
    *,
    model_name: str,
    n_cpus: int,
    vendor: str = "GenuineIntel",
    family: int = 6,
    model: int = 0x6A,
    stepping: int = 6,
    sockets: int = 1,
    smt: bool = True,
) -> None:
    """x86 /proc/cpuinfo with ``n_cpus`` processors spread evenly over ``sockets``."""
    per_socket = max(n_cpus // sockets, 1)
    flags = "fpu vme de pse tsc msr pae mce" + (" ht" if smt else "") + " syscall nx lm"
    blocks = []
    for i in range(n_cpus):
        blocks.append(
            "\n".join(
                [
                    f"processor\t: {i}",
                    f"vendor_id\t: {vendor}",
                    f"cpu family\t: {family}",
                    f"model\t\t: {model}",
                    f"model name\t: {model_name}",
                    f"stepping\t: {stepping}",
                    f"physical id\t: {min(i // per_socket, sockets - 1)}",
                    f"siblings\t: {per_socket}",
                    f"flags\t\t: {flags}",
                ]
            )
        )
    write_atomic(Path(procfs_root) / "cpuinfo", "\n\n".join(blocks) + "\n\n")


def write_arm_cpuinfo(procfs_root: Path, *, n_cpus: int, implementer: int, part: int) -> None:
    """arm64 /proc/cpuinfo: no model name, only implementer/part numbers (Graviton style)."""
    blocks = [
        f"processor\t: {i}\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd\n"
        f"CPU implementer\t: {implementer:#x}\nCPU architecture: 8\nCPU variant\t: 0x1\n"
        f"CPU part\t: {part:#05x}\nCPU revision\t: 1"
        for i in range(n_cpus)
    ]
    write_atomic(Path(procfs_root) / "cpuinfo", "\n\n".join(blocks) + "\n\n")


def write_meminfo(procfs_root: Path, total_bytes: int, available_bytes: int | None = None) -> None:
    """/proc/meminfo with MemTotal/MemFree/MemAvailable in kB (KiB, as the kernel writes)."""
    total_kb = total_bytes // 1024
    avail_kb = (available_bytes if available_bytes is not None else total_bytes // 2) // 1024
    text = (
        f"MemTotal:       {total_kb} kB\n"
        f"MemFree:        {avail_kb} kB\n"
        f"MemAvailable:   {avail_kb} kB\n"
        "Buffers:               0 kB\n"
        "Cached:                0 kB\n"
    )
    write_atomic(Path(procfs_root) / "meminfo", text)


def pid_stat_text(
    pid: int,
    *,
    comm: str = "python",
    ppid: int = 1,
    utime: int = 0,
    stime: int = 0,
    cutime: int = 0,
    cstime: int = 0,
    starttime: int = 1000,
    state: str = "R",
) -> str:
    """The text of ``/proc/<pid>/stat`` (52 fields; the ones not named here are zero)."""
    fields: list[str | int] = [state, ppid, pid, pid, 0, -1, 4194304, 0, 0, 0, 0]
    fields += [utime, stime, cutime, cstime, 20, 0, 1, 0, starttime]
    fields += [0] * (50 - len(fields))
    return f"{pid} ({comm}) " + " ".join(str(f) for f in fields) + "\n"


def write_pid_stat(
    procfs_root: Path,
    pid: int,
    *,
    comm: str = "python",
    ppid: int = 1,
    utime: int = 0,
    stime: int = 0,
    cutime: int = 0,
    cstime: int = 0,
    starttime: int = 1000,
    state: str = "R",
) -> None:
    """Write ``/proc/<pid>/stat`` (``pid_stat_text``)."""
    text = pid_stat_text(pid, comm=comm, ppid=ppid, utime=utime, stime=stime, cutime=cutime,
                         cstime=cstime, starttime=starttime, state=state)
    write_atomic(Path(procfs_root) / str(pid) / "stat", text)


def write_pid_cgroup(procfs_root: Path, pid: int, path: str, *, v1_controllers: list[str] | None = None) -> None:
    """``/proc/<pid>/cgroup``: the v2 line ``0::<path>``, or one line per v1 hierarchy."""
    lines = [f"0::{path}"]
    if v1_controllers:
        lines = [f"{i + 1}:{ctl}:{path}" for i, ctl in enumerate(v1_controllers)]
    write_atomic(Path(procfs_root) / str(pid) / "cgroup", "\n".join(lines) + "\n")


def remove_pid(procfs_root: Path, pid: int) -> None:
    """The process exited (and was reaped): its directory disappears."""
    d = Path(procfs_root) / str(pid)
    for child in d.iterdir() if d.exists() else []:
        child.unlink()
    if d.exists():
        d.rmdir()
