"""A fake node that both CarbonTrack's exporter and Kepler read, advanced by a driver that
knows the truth (bench/bench_vs_kepler.py).

What each exporter reads (Kepler v0.11.4 from its source; CarbonTrack from exporter/):

- RAPL: ``<sysfs>/class/powercap/intel-rapl:*/{name,energy_uj,max_energy_range_uj}``
  (Kepler: prometheus/procfs ``sysfs.GetRaplZones``; CarbonTrack: sources/rapl.py);
- node CPU: ``<procfs>/stat`` (Kepler: active/idle ratio ``procFSReader.CPUUsageRatio``;
  CarbonTrack: the CPU count, the busy time comes from the root cgroup's ``cpu.stat``);
- processes (Kepler only): ``<procfs>/<pid>/{stat,comm,cgroup,cmdline}`` -- CPU time is
  ``utime+stime`` in USER_HZ ticks, the container id the 64-hex id in the cgroup path
  (``internal/resource/container.go``); ``exe`` and ``environ`` are optional there;
- cgroups (CarbonTrack only): ``<sysfs>/fs/cgroup`` v2, systemd driver, containerd.

One process per container, as the kernel shows it: the cgroup's ``usage_usec`` and the
process's ticks come from the same CPU time (ticks truncated, as proc(5) reports them).
A system daemon outside every pod burns CPU too, in ``system.slice`` and in its own
``/proc/<pid>``, so neither exporter can give all busy time to containers.

The workload is steady: container ``i`` uses a fixed fraction of a core while the workload
runs, and each package a fixed power P all along, so the truth does not depend on where an
exporter's interval falls. Truth per container is the linear model both exporters
document, with the driver's exact inputs: over any interval
``E_pkg x busy/(CPUs x dt) x cpu_i/busy = P x cpu_i / CPUs``. The clock-driven counters
(energy, /proc/stat, the daemon) advance every 0.1 s from one thread, container CPU every
second from another (``Driver``): an exporter's estimate is then exact however its
intervals fall, up to tick truncation, reads that straddle a charge, and its own rules.
The driver rewrites counters in carbontrack.sim's formats with a lean rename-over write
(the sim's writer costs several times more per file; at 1,000 containers a charge
rewrites 2,000 files).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from carbontrack.sim._atomic import write_atomic
from carbontrack.sim.cgroups import FakeCgroupTree, cpu_stat_v2_text
from carbontrack.sim.powercap import FakePowercap
from carbontrack.sim.procfs import (
    USER_HZ,
    Ticks,
    pid_stat_text,
    proc_stat_text,
    write_cpuinfo,
    write_meminfo,
)

GIB = 1 << 30
N_CPUS = 128
PACKAGE_W = (180.0, 150.0)  # two sockets
DRAM_W = (20.0, 18.0)
SYSTEM_CORES = 1.0  # a daemon outside every pod
SYSTEM_PID = 900


def uid(i: int) -> str:
    return f"{i:08x}-be4c-4000-8000-000000000000"


def cores_of(i: int) -> float:
    """Container i's steady CPU use: 0.01 to 0.10 cores, spread deterministically."""
    return 0.01 + 0.09 * ((i * 7919) % 1000) / 999


def put(path: str, text: str) -> None:
    """Replace a counter file whole (a reader sees the old or the new text)."""
    tmp = path + ".drv"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


class DrivenNode:
    # Containers charged between two writes of the aggregates (root cgroup, /proc/stat). A
    # kernel's aggregates always match their parts; a driver that wrote all 1,000
    # containers before the root would let an exporter read parts and aggregate from
    # different moments far more often than on a real node.
    CHUNK = 25

    def __init__(self, root: Path, containers: int) -> None:
        self.root = root
        self.sys, self.proc = root / "sys", root / "proc"
        self.pc = FakePowercap(self.sys)
        for s in range(len(PACKAGE_W)):
            self.pc.add_package(s, dram=True)
        write_cpuinfo(self.proc, model_name="Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz",
                      n_cpus=N_CPUS, sockets=len(PACKAGE_W))
        write_meminfo(self.proc, 1024 * GIB)
        tree = FakeCgroupTree(self.sys, version=2, driver="systemd", runtime="containerd",
                              procfs_root=self.proc)
        self.uids = [uid(i) for i in range(containers)]
        self.cores = {u: cores_of(i) for i, u in enumerate(self.uids)}
        self.cpu_us = dict.fromkeys(self.uids, 0)
        self.ids: dict[str, str] = {}
        self._files: dict[str, tuple[str, str, int]] = {}  # uid -> cpu.stat, pid stat, pid
        for u in self.uids:
            pod = tree.add_pod(u, "burstable", {"main": (0.1, GIB)})
            for name, c in pod.containers.items():
                comm = "pause" if c.pause else name
                write_atomic(self.proc / str(c.pid) / "comm", comm + "\n")
                put(str(self.proc / str(c.pid) / "stat"), pid_stat_text(c.pid, comm=comm))
            main = pod.containers["main"]
            self.ids[u] = main.id
            self._files[u] = (str(main.dirs[0] / "cpu.stat"), str(self.proc / str(main.pid) / "stat"),
                              main.pid)
        self._root_stat = str(tree.root / "cpu.stat")
        self._system_stat = str(tree.root / "system.slice" / "cpu.stat")
        self._system_pid_stat = str(self.proc / str(SYSTEM_PID) / "stat")
        self._proc_stat = str(self.proc / "stat")
        write_atomic(self.proc / str(SYSTEM_PID) / "comm", "containerd\n")
        write_atomic(self.proc / str(SYSTEM_PID) / "cmdline", "/usr/bin/containerd\0")
        write_atomic(self.proc / str(SYSTEM_PID) / "cgroup",
                     "0::/system.slice/containerd.service\n")
        put(self._system_pid_stat, pid_stat_text(SYSTEM_PID, comm="containerd"))
        self.system_us = 0
        self.containers_us = 0  # sum of cpu_us, kept with the aggregates
        self.total_us = 0  # all CPUs' time since the start, busy or idle
        self.truth_j = dict.fromkeys(self.uids, 0.0)  # package energy per container
        self.package_j = 0.0
        self._lock = threading.Lock()  # the aggregates: root cgroup, /proc/stat
        self._last = self._last_charge = time.monotonic()
        with self._lock:
            self._write_aggregates()

    def tick(self) -> None:
        """Advance the clock-driven counters to now: package and DRAM energy, the system
        daemon's CPU, /proc/stat's total ticks. Cheap (a few files), so the driver calls it
        often: between ticks an exporter sees time pass with no energy, which a real node
        never shows."""
        with self._lock:
            now = time.monotonic()
            dt, self._last = now - self._last, now
            self.system_us += round(SYSTEM_CORES * dt * 1e6)
            self.total_us += round(N_CPUS * dt * 1e6)
            put(self._system_stat, cpu_stat_v2_text(self.system_us))
            put(self._system_pid_stat, self._pid_stat(SYSTEM_PID, "containerd", self.system_us))
            self._write_aggregates()
        for s, (pkg_w, dram_w) in enumerate(zip(PACKAGE_W, DRAM_W, strict=True)):
            self.pc.advance(self.pc.package_zone(s), pkg_w * dt)
            self.pc.advance(self.pc.sub_zone(s, "dram"), dram_w * dt)
            self.package_j += pkg_w * dt

    def charge(self, running: bool) -> None:
        """Charge every container its CPU since the last charge (none when not ``running``):
        the process's ticks, cgroup ``cpu.stat``, the truth, and the aggregates after every
        ``CHUNK`` containers. With steady package power P, a container's truth is
        P x its CPU seconds / CPUs (the linear model above)."""
        now = time.monotonic()
        dt, self._last_charge = now - self._last_charge, now
        if not running:
            return
        per_cpu_second = sum(PACKAGE_W) / N_CPUS
        for k in range(0, len(self.uids), self.CHUNK):
            added = 0
            for u in self.uids[k:k + self.CHUNK]:
                us = round(self.cores[u] * dt * 1e6)
                total = self.cpu_us[u] = self.cpu_us[u] + us
                added += us
                self.truth_j[u] += us / 1e6 * per_cpu_second
                cgroup_file, pid_file, pid = self._files[u]
                put(pid_file, self._pid_stat(pid, "main", total))
                put(cgroup_file, cpu_stat_v2_text(total))
            with self._lock:
                self.containers_us += added
                self._write_aggregates()

    @staticmethod
    def _pid_stat(pid: int, comm: str, us: int) -> str:
        ticks = us * USER_HZ // 1_000_000
        return pid_stat_text(pid, comm=comm, utime=ticks * 7 // 10, stime=ticks - ticks * 7 // 10)

    def _write_aggregates(self) -> None:
        busy_us = self.containers_us + self.system_us
        put(self._root_stat, cpu_stat_v2_text(busy_us))
        busy = busy_us * USER_HZ // 1_000_000
        total = self.total_us * USER_HZ // 1_000_000
        put(self._proc_stat, proc_stat_text(Ticks(user=busy, idle=max(0, total - busy)), N_CPUS))


class Driver:
    """Advances a DrivenNode: ``tick`` every 0.1 s from one thread, ``charge`` every second
    from another (a slow charge at 1,000 containers must not stall the clock)."""

    TICK_S = 0.1
    CHARGE_S = 1.0

    def __init__(self, node: DrivenNode) -> None:
        self.node = node
        self.running = False  # the containers' workload
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._ticks, name="ticks", daemon=True),
                         threading.Thread(target=self._charges, name="charges", daemon=True)]
        self.charge_s: list[float] = []  # wall time of each charge while running

    def __enter__(self) -> Driver:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def set_running(self, running: bool) -> None:
        self.running = running

    def _ticks(self) -> None:
        while not self._stop.wait(self.TICK_S):
            self.node.tick()

    def _charges(self) -> None:
        wait = self.CHARGE_S
        while not self._stop.wait(wait):
            t0 = time.perf_counter()
            running = self.running
            self.node.charge(running)
            took = time.perf_counter() - t0
            if running:
                self.charge_s.append(took)
            wait = max(0.0, self.CHARGE_S - took)
