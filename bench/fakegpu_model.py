"""The fake GPU behind the fake libnvidia-ml for bench/device_nvml_validation.py --load fake.

A thread that, every ``tick_s``, reads the jobs that bench/gpuload.py --backend fake
registered (one JSON file per process in ``jobs_dir``), works out which of them has a
"kernel" running now, and rewrites the fake library's state (carbontrack.sim.fakenvml):

* power = idle_w + (max_w - idle_w) x min(1, number of jobs running a kernel): time-sliced
  jobs share the GPU, they do not add up past full load;
* the energy counter integrates that power over each tick (what the driver's counter does);
* each job is a compute process; its SM utilisation is its share of the GPU (1/n of the
  time while n jobs run kernels) averaged over the last ``util_window_s``, as NVML's
  per-process samples average over their sampling period.

Power is instantaneous here; a real driver reports an average over a window (nvml.h,
nvmlDeviceGetPowerUsage), which is one of the things the device run measures.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path

from gpuload import fake_active

from carbontrack.sim.fakenvml import FakeGpu, FakeGpuProcess, write_state

FAKE_UUID = "GPU-fa4e0000-0000-4000-8000-000000000001"
FAKE_DRIVER = "550.54.15-carbontrack-fake"


class FakeGpuModel:
    """Owns the fake library's state file while it runs (start/stop)."""

    def __init__(self, state_path: Path, jobs_dir: Path, *, idle_w: float = 70.0, max_w: float = 700.0,
                 tick_s: float = 0.01, util_window_s: float = 1.0) -> None:  # fmt: skip
        self.state_path, self.jobs_dir = state_path, jobs_dir
        self.idle_w, self.max_w, self.tick_s, self.window = idle_w, max_w, tick_s, util_window_s
        self.energy_mj = 0.0
        self._shares: dict[int, deque[tuple[float, float]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fake-gpu-model", daemon=True)
        self._last = time.time()
        self._power_w = idle_w
        self._write(time.time(), {})

    def start(self) -> None:
        self._last = time.time()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _jobs(self) -> list[dict[str, float | str]]:
        out = []
        for f in self.jobs_dir.glob("*.json"):
            try:
                out.append(json.loads(f.read_text()))
            except (OSError, ValueError):
                continue  # removed or being replaced between glob and read
        return out

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.step(time.time())

    def step(self, now: float) -> None:
        """Advance the counter to ``now`` at the power of the previous tick, then set this
        tick's power and processes from the registered jobs."""
        dt = max(0.0, now - self._last)
        self.energy_mj += self._power_w * dt * 1000.0
        self._last = now
        jobs = self._jobs()
        active = {int(j["pid"]): fake_active(j, now) for j in jobs}
        running = sum(active.values())
        self._power_w = self.idle_w + (self.max_w - self.idle_w) * min(1.0, running)
        shares = {pid: (a / running if running else 0.0) for pid, a in active.items()}
        self._write(now, shares)

    def _write(self, now: float, shares: dict[int, float]) -> None:
        for pid in list(self._shares):
            if pid not in shares:
                del self._shares[pid]
        procs = []
        for pid, share in shares.items():
            hist = self._shares.setdefault(pid, deque())
            hist.append((now, share))
            while hist and hist[0][0] < now - self.window:
                hist.popleft()
            sm = round(100.0 * sum(s for _, s in hist) / len(hist))
            procs.append(FakeGpuProcess(0, pid, used_memory_bytes=512 * 1024**2, sm_util=sm,
                                        timestamp_us=int(now * 1e6)))  # fmt: skip
        util = min(100, round(100.0 * (self._power_w - self.idle_w) / (self.max_w - self.idle_w)))
        gpu = FakeGpu(FAKE_UUID, energy_mj=int(self.energy_mj), power_mw=int(self._power_w * 1000),
                      util_gpu=util, mig_mode=0,
                      memory_used_bytes=sum(p.used_memory_bytes for p in procs))  # fmt: skip
        write_state(self.state_path, [gpu], procs, driver_version=FAKE_DRIVER)
