"""Readers for ``/proc/stat``, ``/proc/cpuinfo``, ``/proc/meminfo`` and ``/proc/<pid>/stat``.

Every function takes the procfs root (``Path("/proc")`` in production, a fake tree in
tests), so nothing here reads globals. Times are in clock ticks (``USER_HZ``, almost
always 100) as the kernel writes them; helpers convert to seconds with an injected
``clk_tck``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from carbontrack.core.errors import SourceUnavailable

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuTimes:
    """One ``cpu`` line of /proc/stat, in clock ticks. guest time is already in user."""

    user: int = 0
    nice: int = 0
    system: int = 0
    idle: int = 0
    iowait: int = 0
    irq: int = 0
    softirq: int = 0
    steal: int = 0

    @property
    def total(self) -> int:
        return (
            self.user + self.nice + self.system + self.idle
            + self.iowait + self.irq + self.softirq + self.steal
        )  # fmt: skip

    @property
    def busy(self) -> int:
        """Ticks this machine's CPUs ran work. Steal is another guest's time, so not ours."""
        return self.user + self.nice + self.system + self.irq + self.softirq

    def utilisation_since(self, earlier: CpuTimes) -> float:
        """Busy share of all ticks between ``earlier`` and now, 0..1 (0 if no ticks passed)."""
        total = self.total - earlier.total
        if total <= 0:
            return 0.0
        return min(max((self.busy - earlier.busy) / total, 0.0), 1.0)


@dataclass(frozen=True)
class ProcStat:
    """The aggregate ``cpu`` line and the number of online CPUs (``cpuN`` lines)."""

    cpu: CpuTimes
    online_cpus: int


def read_proc_stat(procfs_root: Path) -> ProcStat:
    """Parse ``<procfs_root>/stat``. Raises SourceUnavailable if it is missing or malformed."""
    path = Path(procfs_root) / "stat"
    try:
        text = path.read_text()
    except OSError as err:
        raise SourceUnavailable(f"cannot read {path}: {err.strerror or err}") from err
    cpu: CpuTimes | None = None
    online = 0
    for line in text.splitlines():
        if line.startswith("cpu "):
            cpu = _cpu_times(line, path)
        elif line.startswith("cpu") and line[3:4].isdigit():
            online += 1
    if cpu is None:
        raise SourceUnavailable(f"{path} has no aggregate 'cpu' line; is it a procfs tree?")
    return ProcStat(cpu, max(online, 1))


def _cpu_times(line: str, path: Path) -> CpuTimes:
    # counters are non-negative decimal integers; anything else is not a procfs we can read
    fields = line.split()[1:9]
    if not fields or not all(f.isascii() and f.isdigit() for f in fields):
        raise SourceUnavailable(f"{path}: malformed aggregate 'cpu' line {line[:80]!r}")
    return CpuTimes(*(int(f) for f in fields))


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says about the first CPU, plus the socket count."""

    model_name: str = ""
    vendor: str = ""  # GenuineIntel, AuthenticAMD, or ARM implementer ("0x41")
    family: int | None = None
    model: int | None = None  # x86 model number, or ARM "CPU part"
    stepping: int | None = None
    sockets: int = 1
    smt: bool = False  # "ht" flag: two hardware threads per core


def _int(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


def read_cpuinfo(procfs_root: Path) -> CpuInfo:
    """Parse ``<procfs_root>/cpuinfo``; an unreadable file gives an empty CpuInfo."""
    try:
        text = (Path(procfs_root) / "cpuinfo").read_text()
    except OSError:
        return CpuInfo()
    first: dict[str, str] = {}
    sockets: set[str] = set()
    for block in text.split("\n\n"):
        kv: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                kv[key.strip()] = value.strip()
        if "physical id" in kv:
            sockets.add(kv["physical id"])
        if not first and kv:
            first = kv
    is_arm = "CPU implementer" in first
    return CpuInfo(
        model_name=first.get("model name", ""),
        vendor=("ARM" if is_arm else first.get("vendor_id", "")),
        family=_int(first.get("CPU implementer" if is_arm else "cpu family", "")),
        model=_int(first.get("CPU part" if is_arm else "model", "")),
        stepping=_int(first.get("CPU variant" if is_arm else "stepping", "")),
        sockets=max(len(sockets), 1),
        smt=" ht " in f" {first.get('flags', '')} ",
    )


def read_memtotal_bytes(procfs_root: Path) -> int:
    """MemTotal from ``<procfs_root>/meminfo`` in bytes (the file says kB, meaning KiB)."""
    path = Path(procfs_root) / "meminfo"
    try:
        text = path.read_text()
    except OSError as err:
        raise SourceUnavailable(f"cannot read {path}: {err.strerror or err}") from err
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            value = line.split()[1:2]
            if not value or not (value[0].isascii() and value[0].isdigit()):
                raise SourceUnavailable(f"{path}: malformed MemTotal line {line[:80]!r}")
            return int(value[0]) * 1024
    raise SourceUnavailable(f"{path} has no MemTotal line")


@dataclass(frozen=True)
class PidStat:
    """The fields of /proc/<pid>/stat we use; times in clock ticks."""

    pid: int
    comm: str
    state: str
    ppid: int
    utime: int
    stime: int
    cutime: int  # reaped children's user time
    cstime: int
    starttime: int  # ticks after boot: (pid, starttime) identifies a process across pid reuse

    @property
    def own_ticks(self) -> int:
        return self.utime + self.stime

    @property
    def children_ticks(self) -> int:
        return self.cutime + self.cstime


def parse_pid_stat(text: str) -> PidStat:
    """Parse one /proc/<pid>/stat line. ``comm`` may hold spaces and parentheses, so split
    at the *last* ')'. Raises ValueError or IndexError on anything else (callers skip it)."""
    head, _, rest = text.rpartition(")")
    pid_s, _, comm = head.partition(" (")
    f = rest.split()
    # f[0] is field 3 (state); utime is field 14 -> f[11]
    return PidStat(
        pid=_count(pid_s),
        comm=comm,
        state=f[0],
        ppid=_count(f[1]),
        utime=_count(f[11]),
        stime=_count(f[12]),
        cutime=_count(f[13]),
        cstime=_count(f[14]),
        starttime=_count(f[19]),
    )


def _count(text: str) -> int:
    """A non-negative decimal integer (``int()`` would take "-5", " 5", "1_0" and "٣")."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"not a count: {text[:40]!r}")
    return int(text)


def read_pid_stat(procfs_root: Path, pid: int) -> PidStat | None:
    """``/proc/<pid>/stat`` parsed, or None if the process is gone (it may vanish any time)."""
    try:
        return parse_pid_stat((Path(procfs_root) / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def list_pids(procfs_root: Path) -> list[int]:
    return sorted(int(p.name) for p in Path(procfs_root).iterdir() if p.name.isdigit())


def read_all_pid_stats(procfs_root: Path) -> dict[int, PidStat]:
    out: dict[int, PidStat] = {}
    for pid in list_pids(procfs_root):
        st = read_pid_stat(procfs_root, pid)
        if st is not None:
            out[pid] = st
    return out


def process_tree(stats: dict[int, PidStat], root_pid: int) -> set[int]:
    """``root_pid`` and all its live descendants in ``stats``."""
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    tree: set[int] = set()
    todo = [root_pid] if root_pid in stats else []
    while todo:
        pid = todo.pop()
        if pid in tree:
            continue
        tree.add(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_ticks(stats: dict[int, PidStat], pids: Iterable[int]) -> int:
    """Own plus reaped-children ticks of ``pids``. A child reaped by a member moves its time
    into the member's cutime/cstime, so live members are never counted twice."""
    return sum(stats[p].own_ticks + stats[p].children_ticks for p in pids if p in stats)


@dataclass
class ProcessTreeCpuMeter:
    """Monotonic CPU seconds of a process tree, for ``carbontrack run --scope process``.

    Each :meth:`read` scans ``<procfs_root>/[0-9]*/stat``. A process that vanished keeps
    the time last seen for it *unless* its parent is a live member of the tree (then the
    parent's cutime/cstime holds it once the parent reaps it). Time of a child that lived
    and died entirely between two reads and was reaped outside the tree is not seen:
    read often enough (the tracker's interval) or accept that lower bound. A descendant
    adopted by init after its parent exited still counts.
    """

    procfs_root: Path
    root_pid: int
    clk_tck: int = CLK_TCK
    _seen: dict[tuple[int, int], PidStat] = field(default_factory=dict)
    _lost_ticks: int = 0
    _last_ticks: int = 0

    def read(self) -> float:
        """CPU seconds used by the tree since it started (never decreases)."""
        stats = read_all_pid_stats(self.procfs_root)
        members = process_tree(stats, self.root_pid)
        # A descendant stays ours after its parent dies and init adopts it (a daemonised
        # worker is still the run's work), as long as it is the same process (starttime).
        for pid, start in list(self._seen):
            if pid not in members and pid in stats and stats[pid].starttime == start:
                members |= process_tree(stats, pid)
        live_keys = {(p, stats[p].starttime) for p in members}
        for key, last in list(self._seen.items()):
            if key in live_keys:
                continue
            # Gone. If a live member is its parent, that parent's cutime/cstime holds its
            # time (now, or once reaped); otherwise nobody in the tree will: keep it here.
            if last.ppid not in members:
                self._lost_ticks += last.own_ticks + last.children_ticks
            del self._seen[key]
        for p in members:
            self._seen[(p, stats[p].starttime)] = stats[p]
        ticks = tree_cpu_ticks(stats, members) + self._lost_ticks
        self._last_ticks = max(self._last_ticks, ticks)
        return self._last_ticks / self.clk_tck
