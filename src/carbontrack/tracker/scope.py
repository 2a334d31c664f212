"""What share of the machine's CPU and DRAM energy a run is charged.

* machine scope: everything the machine drew (share 1.0).
* process scope: the process tree's share of the machine's *busy* CPU time over each
  interval, ``share = d(tree CPU s) / d(machine busy CPU s)`` clamped to [0, 1]. The
  tree's CPU time comes from ``sources.procstat.ProcessTreeCpuMeter`` (live members plus
  reaped children, never decreasing); busy time from the ``cpu`` line of /proc/stat.
  The machine's idle floor goes with the busy share: the tree is charged what the
  machine drew while it worked for the tree. That is an upper bound on its marginal
  energy, chosen so a lone job on an otherwise idle machine is charged the whole machine
  (docs/tracker.md).

GPU energy is never scaled here: the selected GPUs (``--gpus``) are charged whole.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

from ..core.types import Component
from ..sources.procstat import CLK_TCK, ProcessTreeCpuMeter, read_proc_stat

# Components whose energy follows the CPU-time share; the rest (GPU) is charged whole.
SHARED_COMPONENTS = frozenset({Component.CPU, Component.DRAM, Component.OTHER})


class Scope(Protocol):
    name: str

    def share(self) -> float:
        """Share in [0, 1] of machine CPU/DRAM energy since the previous call (first call primes)."""
        ...


class MachineScope:
    name = "machine"

    def share(self) -> float:
        return 1.0


class ProcessTreeScope:
    """Share of the machine's busy CPU time used by one process tree."""

    name = "process"

    def __init__(self, procfs_root: Path, root_pid: int, clk_tck: int = CLK_TCK, *, fresh: bool = False) -> None:
        """``fresh``: the root was just spawned (`carbontrack run`), so its tree has used no
        CPU yet and the first call need not scan /proc for it."""
        self._procfs = procfs_root
        self._clk_tck = clk_tck
        self._meter = ProcessTreeCpuMeter(procfs_root, root_pid, clk_tck)
        self._lock = threading.Lock()
        self._fresh = fresh
        self._tree: float | None = None
        self._busy: float | None = None
        self._final: float | None = None

    def set_final_cpu_seconds(self, seconds: float) -> None:
        """The root was reaped and its rusage (itself plus reaped descendants) is exact:
        the last interval uses it, since the tree is gone from procfs by then."""
        with self._lock:
            self._final = seconds

    def share(self) -> float:
        with self._lock:
            busy = read_proc_stat(self._procfs).cpu.busy / self._clk_tck
            if self._final is not None:
                # The root is reaped: its rusage is the tree's exact total, no scan needed
                # (descendants it left behind were reparented out of the tree anyway).
                tree = self._final
            elif self._fresh and self._tree is None:
                tree = 0.0
            else:
                tree = self._meter.read()
            tree = max(tree, self._tree or 0.0)
            prev_tree, prev_busy = self._tree, self._busy
            self._tree, self._busy = tree, busy
            if prev_tree is None or prev_busy is None:
                return 0.0
            d_busy, d_tree = busy - prev_busy, tree - prev_tree
            if d_busy <= 0:  # tick granularity: the tree ran but the machine line did not move
                return 1.0 if d_tree > 0 else 0.0
            return min(1.0, max(0.0, d_tree / d_busy))
