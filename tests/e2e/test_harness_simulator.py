"""The node simulator without a cluster: pod states in, fake hardware trees out.

Runs by default (no binaries needed). Drives ``NodeSimulator.observe``/``tick`` with a
fake clock and reads the trees back with the real readers (RaplSource, /proc/stat parser,
pynvml through the fake library in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from carbontrack.devcluster.binaries import cache_dir
from carbontrack.devcluster.nodes import FakeNode
from carbontrack.devcluster.simulator import AmdGpuBackend, GpuBackend, NodeSimulator
from carbontrack.sources.procstat import read_proc_stat
from carbontrack.sources.rapl import RaplSource

NODE = FakeNode("n1", "eu-west-1", "eu-west-1a", "p4d.24xlarge", "aws:///x/i-1", cpu_cores=8,
                memory="32Gi", gpus=2, idle_cpu_watts=20.0, watts_per_busy_core=5.0,
                idle_gpu_watts=50.0)


def pod(uid: str, phase: str, *, cores: str = "2", gpus: int = 0, node: str = "n1") -> dict[str, Any]:
    ann = {"sim.carbontrack.io/cpu-cores": cores}
    limits = {}
    if gpus:
        ann.update({"sim.carbontrack.io/gpu-watts": "300", "sim.carbontrack.io/gpu-util": "90"})
        limits = {"nvidia.com/gpu": str(gpus)}
    return {"metadata": {"uid": uid, "name": f"p-{uid}", "namespace": "ns", "annotations": ann},
            "spec": {"nodeName": node, "containers": [
                {"name": "train", "resources": {"requests": {"cpu": cores, "memory": "1Gi"},
                                                "limits": limits}}]},
            "status": {"phase": phase, "qosClass": "Burstable"}}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def sim(tmp_path: Path) -> tuple[NodeSimulator, Clock]:
    clock = Clock()
    backend = GpuBackend.build(cache_dir())  # compiled once per machine, like the harness
    s = NodeSimulator(Path("/unused"), [NODE], tmp_path / "nodes", gpu_backend=backend,
                      clock=clock)
    return s, clock


def test_pod_cgroup_follows_phase_and_energy_is_conserved(sim: tuple[NodeSimulator, Clock]) -> None:
    s, clock = sim
    ns = s.nodes["n1"]
    rapl = RaplSource(ns.sysfs)
    before = sum(r.joules for r in rapl.read() if r.component == "cpu")
    s.observe(pod("a", "Pending"))
    assert "a" not in ns.cgroups.pods  # not running yet: no cgroup
    s.observe(pod("a", "Running"))
    s.observe(pod("b", "Running", cores="3"))
    pod_dir = ns.cgroups.container_dir("a", "train")
    assert pod_dir.is_dir()
    for _ in range(10):
        clock.t += 0.5
        s.tick()
    s.observe(pod("a", "Succeeded"))
    clock.t += 1.0
    s.tick()
    # the pod's cgroup stays a little (kubelet cleanup lag) with no new CPU time, then goes
    assert pod_dir.is_dir() and ns.cgroups.pods["a"].containers["train"].cpu_usec == 10_000_000
    a, b = s.joules("a"), s.joules("b")
    assert a["cpu"] == pytest.approx(5.0 * 2 * 5.0)
    assert b["cpu"] == pytest.approx(5.0 * 3 * 6.0)
    after = sum(r.joules for r in rapl.read() if r.component == "cpu")
    # conservation: the RAPL counter moved by idle + what every pod was given, no more
    assert after - before == pytest.approx(ns.idle_joules["cpu"] + a["cpu"] + b["cpu"], abs=1e-3)
    assert ns.idle_joules["cpu"] == pytest.approx(20.0 * 6.0)
    stat = read_proc_stat(ns.procfs)
    assert stat.online_cpus == 8
    rec = s.record("a")
    assert rec is not None and rec.ended is not None and rec.ended - rec.started == pytest.approx(5.0)
    clock.t += 1.5
    s.tick()
    assert not pod_dir.exists()
    assert s.joules("a")["cpu"] == pytest.approx(5.0 * 2 * 5.0)  # nothing charged while lingering


def test_busy_cores_are_capped_at_the_node(sim: tuple[NodeSimulator, Clock]) -> None:
    s, clock = sim
    s.observe(pod("a", "Running", cores="6"))
    s.observe(pod("b", "Running", cores="6"))
    clock.t += 1.0
    s.tick()
    assert s.joules("a")["cpu"] + s.joules("b")["cpu"] == pytest.approx(5.0 * 8)


def test_pods_on_other_nodes_are_ignored(sim: tuple[NodeSimulator, Clock]) -> None:
    s, _ = sim
    s.observe(pod("x", "Running", node="elsewhere"))
    assert s.record("x") is None and s.joules("x") == {}


def test_deleted_pod_ends(sim: tuple[NodeSimulator, Clock]) -> None:
    s, clock = sim
    s.observe(pod("a", "Running"))
    clock.t += 1
    s.forget("a")
    rec = s.record("a")
    assert rec is not None and rec.ended == clock.t


def test_gpu_energy_of_allocated_gpu_goes_to_its_pod_via_real_pynvml(
    sim: tuple[NodeSimulator, Clock],
) -> None:
    s, clock = sim
    ns = s.nodes["n1"]
    if ns.gpu_backend is None:
        pytest.skip("no C compiler for the fake libnvidia-ml")
    s.observe(pod("g", "Running", gpus=1))
    for _ in range(4):
        clock.t += 0.5
        s.tick()
    assert s.joules("g")["gpu"] == pytest.approx(300.0 * 2.0)
    assert ns.idle_joules["gpu"] == pytest.approx(50.0 * 2.0)
    ran = s.joules("g")["gpu"]
    # what an exporter on this node sees through the real bindings
    script = (
        "import json, pynvml\n"
        "pynvml.nvmlInit()\n"
        "out = []\n"
        "for i in range(pynvml.nvmlDeviceGetCount()):\n"
        "    h = pynvml.nvmlDeviceGetHandleByIndex(i)\n"
        "    procs = [p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)]\n"
        "    out.append([pynvml.nvmlDeviceGetTotalEnergyConsumption(h), procs])\n"
        "print(json.dumps(out))\n"
    )
    env = {"LD_LIBRARY_PATH": str(ns.gpu_backend.lib_dir),
           "CARBONTRACK_FAKE_NVML_STATE": str(ns.nvml_state), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (e0, p0), (e1, p1) = json.loads(r.stdout)
    assert (e0, e1) == (600_000, 100_000)  # mJ: pod's GPU at 300 W, idle one at 50 W, 2 s
    main = ns.cgroups.pods["g"].containers["train"]
    assert p0 == [main.pid] and p1 == []
    cgroup_line = (ns.procfs / str(main.pid) / "cgroup").read_text().strip()
    assert cgroup_line.startswith("0::/kubepods.slice/") and cgroup_line.endswith(".scope")
    # after the pod ends its GPU stays allocated (idle power, still the pod's) until cleanup
    s.observe(pod("g", "Succeeded", gpus=1))
    clock.t += 1.0
    s.tick()
    assert s.joules("g")["gpu"] == pytest.approx(ran + 50.0 * 1.0)
    assert ns.gpus[0].pod == "g"
    clock.t += 1.5
    s.tick()
    assert ns.gpus[0].pod is None and "g" not in ns.cgroups.pods
    assert not (ns.procfs / str(main.pid)).exists()


AMD_NODE = FakeNode("a1", "eu-west-1", "eu-west-1b", "mi300x.8gpu", "aws:///x/i-4", cpu_cores=8,
                    memory="32Gi", gpus=2, idle_cpu_watts=20.0, watts_per_busy_core=5.0,
                    idle_gpu_watts=90.0, gpu_model="AMD Instinct MI300X", gpu_vendor="amd")


def test_amd_gpu_energy_goes_to_its_pod_via_real_amdsmi(tmp_path: Path) -> None:
    """An AMD node: the pod asks for amd.com/gpu; an exporter's amdsmi bindings on the fake
    libamd_smi.so see the GPU's energy (ticks x 15.3 uJ) and the pod's process."""
    clock = Clock()
    backend = AmdGpuBackend.build(cache_dir())
    if backend is None:
        pytest.skip("no C compiler for the fake libamd_smi.so")
    s = NodeSimulator(Path("/unused"), [AMD_NODE], tmp_path / "nodes", amd_backend=backend,
                      clock=clock)
    ns = s.nodes["a1"]
    p = pod("g", "Running", gpus=0, node="a1")
    p["metadata"]["annotations"].update({"sim.carbontrack.io/gpu-watts": "500",
                                         "sim.carbontrack.io/gpu-util": "80"})
    p["spec"]["containers"][0]["resources"]["limits"] = {"amd.com/gpu": "1"}
    s.observe(p)
    for _ in range(4):
        clock.t += 0.5
        s.tick()
    assert s.joules("g")["gpu"] == pytest.approx(500.0 * 2.0)
    script = (
        "import json, amdsmi\n"
        "amdsmi.amdsmi_init()\n"
        "out = []\n"
        "for h in amdsmi.amdsmi_get_processor_handles():\n"
        "    e = amdsmi.amdsmi_get_energy_count(h)\n"
        "    procs = [(p['pid'], p['engine_usage']['gfx']) for p in amdsmi.amdsmi_get_gpu_process_list(h)]\n"
        "    out.append([amdsmi.amdsmi_get_gpu_device_bdf(h),\n"
        "                e['energy_accumulator'] * e['counter_resolution'] * 1e-6, procs])\n"
        "print(json.dumps(out))\n"
    )
    env = {**backend.env(ns.gpu_state, {}), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (b0, j0, p0), (b1, j1, p1) = json.loads(r.stdout)
    assert (b0, b1) == ("0000:c1:00.0", "0000:c2:00.0")  # PCI addresses, as AMD's plugin
    assert j0 == pytest.approx(1000.0, abs=1e-3) and j1 == pytest.approx(180.0, abs=1e-3)
    main = ns.cgroups.pods["g"].containers["train"]
    assert p0 == [[main.pid, int(0.8 * 2.0 * 1e9)]] and p1 == []  # 80 % of 2 s busy
