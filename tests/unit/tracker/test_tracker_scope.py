"""Process-tree scope against a fake procfs tree (sim.procfs) and the real /proc."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from carbontrack.sim.procfs import Ticks, remove_pid, write_pid_stat, write_proc_stat
from carbontrack.tracker.scope import MachineScope, ProcessTreeScope


def _machine(root: Path, busy: int, idle: int) -> None:
    write_proc_stat(root, Ticks(user=busy, idle=idle), n_cpus=4)


def test_share_is_tree_cpu_over_machine_busy_cpu(tmp_path: Path) -> None:
    _machine(tmp_path, busy=1000, idle=5000)
    write_pid_stat(tmp_path, 100, ppid=1, utime=100)
    write_pid_stat(tmp_path, 101, ppid=100, utime=50)  # child of the root: in the tree
    write_pid_stat(tmp_path, 200, ppid=1, utime=900)  # not in the tree
    scope = ProcessTreeScope(tmp_path, 100, clk_tck=100)
    assert scope.share() == 0.0  # priming
    # machine busy +400 ticks; tree +100 (root) +100 (child) = 200 -> share 0.5
    _machine(tmp_path, busy=1400, idle=6000)
    write_pid_stat(tmp_path, 100, ppid=1, utime=200)
    write_pid_stat(tmp_path, 101, ppid=100, utime=150)
    write_pid_stat(tmp_path, 200, ppid=1, utime=1100)
    assert scope.share() == pytest.approx(0.5)


def test_reaped_child_time_moves_to_parent_and_is_counted_once(tmp_path: Path) -> None:
    _machine(tmp_path, busy=0, idle=0)
    write_pid_stat(tmp_path, 100, ppid=1, utime=10)
    write_pid_stat(tmp_path, 101, ppid=100, utime=40)
    scope = ProcessTreeScope(tmp_path, 100, clk_tck=100)
    scope.share()
    # the child used 20 more ticks, exited, and the root reaped it (cutime 60)
    remove_pid(tmp_path, 101)
    write_pid_stat(tmp_path, 100, ppid=1, utime=10, cutime=60)
    _machine(tmp_path, busy=80, idle=0)
    assert scope.share() == pytest.approx(20 / 80)


def test_share_is_clamped_and_final_rusage_covers_the_last_interval(tmp_path: Path) -> None:
    _machine(tmp_path, busy=0, idle=0)
    write_pid_stat(tmp_path, 100, ppid=1, utime=0)
    scope = ProcessTreeScope(tmp_path, 100, clk_tck=100)
    scope.share()
    _machine(tmp_path, busy=10, idle=0)
    write_pid_stat(tmp_path, 100, ppid=1, utime=50)  # reads skewed: tree > machine
    assert scope.share() == 1.0
    # the root exits and is reaped by `carbontrack run`: rusage says 1.0 s in total
    remove_pid(tmp_path, 100)
    _machine(tmp_path, busy=210, idle=0)
    scope.set_final_cpu_seconds(1.0)
    assert scope.share() == pytest.approx(0.5 / 2.0)


def test_machine_scope_is_everything() -> None:
    assert MachineScope().share() == 1.0


def test_real_proc_tree_of_a_busy_child_gets_a_share() -> None:
    # A child that burns CPU in a grandchild between two samples: the tree's share is > 0.
    code = (
        "import subprocess, sys\n"
        "sys.stdin.readline()\n"
        "subprocess.run([sys.executable, '-c', 'sum(range(3 * 10**7))'])\n"
        "print('done', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        scope = ProcessTreeScope(Path("/proc"), child.pid)
        scope.share()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "done\n"
        share = scope.share()
        assert 0.0 < share <= 1.0
    finally:
        child.kill()
        child.wait()


def test_fresh_root_starts_at_zero_and_the_final_rusage_closes_the_run(tmp_path: Path) -> None:
    # `carbontrack run`: the command was just spawned; after it is reaped only rusage is left
    _machine(tmp_path, busy=1000, idle=0)
    scope = ProcessTreeScope(tmp_path, 4242, clk_tck=100, fresh=True)  # pid 4242 never in procfs
    assert scope.share() == 0.0
    _machine(tmp_path, busy=1400, idle=0)
    scope.set_final_cpu_seconds(3.0)
    assert scope.share() == pytest.approx(3.0 / 4.0)
