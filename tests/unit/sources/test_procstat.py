"""procfs readers and the process-tree CPU meter (tracker --scope process)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from carbontrack.core.errors import SourceUnavailable
from carbontrack.sim.procfs import Ticks, remove_pid, write_meminfo, write_pid_stat, write_proc_stat
from carbontrack.sources.procstat import (
    CpuTimes,
    ProcessTreeCpuMeter,
    parse_pid_stat,
    read_memtotal_bytes,
    read_pid_stat,
    read_proc_stat,
)


def test_comm_with_spaces_and_parentheses():
    st = parse_pid_stat("4242 (my (odd) proc) S 17 4242 4242 0 -1 0 0 0 0 0 31 9 2 1 20 0 1 0 777 0 0")
    assert (st.pid, st.comm, st.state, st.ppid) == (4242, "my (odd) proc", "S", 17)
    assert (st.utime, st.stime, st.cutime, st.cstime, st.starttime) == (31, 9, 2, 1, 777)


def test_reads_this_real_process(tmp_path: Path):
    # the real /proc of this test process: parser and kernel format agree
    st = read_pid_stat(Path("/proc"), os.getpid())
    assert st is not None
    assert st.pid == os.getpid()
    assert st.ppid == os.getppid()
    assert read_pid_stat(tmp_path, 12345) is None  # gone: None, not an exception


def test_proc_stat_aggregate_and_online_cpus(tmp_path: Path):
    write_proc_stat(tmp_path, Ticks(user=300, system=100, idle=500, steal=100), n_cpus=3)
    st = read_proc_stat(tmp_path)
    assert st.online_cpus == 3
    assert st.cpu == CpuTimes(user=300, system=100, idle=500, steal=100)
    assert st.cpu.busy == 400
    assert st.cpu.total == 1000
    assert st.cpu.utilisation_since(CpuTimes()) == 0.4
    assert st.cpu.utilisation_since(st.cpu) == 0.0  # no ticks passed


def test_missing_files_are_source_unavailable(tmp_path: Path):
    with pytest.raises(SourceUnavailable, match=r"cannot read .*stat"):
        read_proc_stat(tmp_path)
    with pytest.raises(SourceUnavailable, match=r"cannot read .*meminfo"):
        read_memtotal_bytes(tmp_path)
    write_meminfo(tmp_path, 3 * 1024**3)
    assert read_memtotal_bytes(tmp_path) == 3 * 1024**3


def test_tree_meter_counts_each_tick_once_through_exits(tmp_path: Path):
    p = tmp_path
    write_pid_stat(p, 1, comm="init", ppid=0, utime=9999)
    write_pid_stat(p, 100, ppid=1, utime=50, stime=10)  # the tracked command
    write_pid_stat(p, 101, ppid=100, utime=30, stime=5)  # its worker
    write_pid_stat(p, 102, ppid=101, utime=7, stime=3)  # grandchild
    write_pid_stat(p, 200, ppid=1, utime=500)  # unrelated
    meter = ProcessTreeCpuMeter(p, 100, clk_tck=100)
    assert meter.read() == pytest.approx((60 + 35 + 10) / 100)
    # grandchild exits and its parent reaps it: time moves into 101's cutime/cstime
    remove_pid(p, 102)
    write_pid_stat(p, 101, ppid=100, utime=30, stime=5, cutime=8, cstime=3)
    assert meter.read() == pytest.approx((60 + 35 + 11) / 100)
    # a worker whose parent dies is adopted by init: still the run's work
    write_pid_stat(p, 103, ppid=101, utime=20)
    assert meter.read() == pytest.approx((60 + 46 + 20) / 100)
    write_pid_stat(p, 103, ppid=1, utime=25)
    assert meter.read() == pytest.approx((60 + 46 + 25) / 100)
    remove_pid(p, 103)  # ...and exits, reaped by init: its time stays counted
    assert meter.read() == pytest.approx((60 + 46 + 25) / 100)
    # the tree goes on: 10 more ticks on 101 add to everything seen so far
    write_pid_stat(p, 101, ppid=100, utime=40, stime=5, cutime=8, cstime=3)
    assert meter.read() == pytest.approx((60 + 56 + 25) / 100)
    # unrelated processes never count
    write_pid_stat(p, 200, ppid=1, utime=900)
    assert meter.read() == pytest.approx((60 + 56 + 25) / 100)


def test_tree_meter_survives_root_exit(tmp_path: Path):
    write_pid_stat(tmp_path, 100, ppid=1, utime=40, stime=10)
    meter = ProcessTreeCpuMeter(tmp_path, 100, clk_tck=100)
    assert meter.read() == 0.5
    remove_pid(tmp_path, 100)
    assert meter.read() == 0.5
