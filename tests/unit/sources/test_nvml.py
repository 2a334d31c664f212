"""NvmlSource through the REAL pynvml bindings and the fake libnvidia-ml.so.1 (sim.fakenvml)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from carbontrack.core.errors import ConfigError, SourceUnavailable
from carbontrack.core.types import Component, EnergySource, Method, SourceHealth
from carbontrack.sim.fakenvml import STATE_ENV, FakeGpu, FakeGpuProcess, FakeMig, write_state
from carbontrack.sources.nvml import GpuDevice, GpuProcess, NvmlSource

GIB = 1024**3


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def two_gpus(**second: object) -> list[FakeGpu]:
    return [
        FakeGpu("GPU-aaaa-0000", energy_mj=1_000_000, power_mw=300_000),
        FakeGpu("GPU-bbbb-1111", name="NVIDIA A100-SXM4-40GB", memory_total_bytes=40 * GIB,
                energy_mj=2_000_000, **second),  # type: ignore[arg-type]
    ]  # fmt: skip


def joules(src: NvmlSource) -> dict[str, float]:
    return {r.device: r.joules for r in src.read()}


def test_energy_counter_path_is_measured_exactly(pynvml, nvml_state):
    gpus = two_gpus()
    nvml_state(gpus)
    src = NvmlSource.open(pynvml)
    assert isinstance(src, EnergySource)
    assert src.devices() == [
        GpuDevice(0, "GPU-aaaa-0000", "NVIDIA H100 80GB HBM3", 80 * GIB),
        GpuDevice(1, "GPU-bbbb-1111", "NVIDIA A100-SXM4-40GB", 40 * GIB),
    ]
    assert joules(src) == {"GPU-aaaa-0000": 0.0, "GPU-bbbb-1111": 0.0}
    gpus[0].energy_mj += 1_500
    gpus[1].energy_mj += 250_000
    nvml_state(gpus)
    readings = {r.device: r for r in src.read()}
    assert readings["GPU-aaaa-0000"].joules == 1.5
    assert readings["GPU-bbbb-1111"].joules == 250.0
    r = readings["GPU-bbbb-1111"]
    assert (r.component, r.method, r.model, r.uncertainty) == (
        Component.GPU, Method.MEASURED, "NVIDIA A100-SXM4-40GB", 0.05,
    )  # fmt: skip
    assert src.health().up
    src.close()


def test_fake_library_sees_every_rewrite_of_its_state_even_of_the_same_size(pynvml, nvml_state):
    """The fake library skips re-parsing unchanged state; a rewrite with the same length
    (and, within a clock tick, the same mtime) must still be seen at once."""
    gpus = [FakeGpu("GPU-aaaa-0000", energy_mj=1_000_000)]
    nvml_state(gpus)
    src = NvmlSource.open(pynvml)
    try:
        assert joules(src) == {"GPU-aaaa-0000": 0.0}
        for step in range(1, 6):  # 1_00x_000: every file has the same size
            gpus[0].energy_mj = 1_000_000 + step * 1_000
            nvml_state(gpus)
            assert joules(src) == {"GPU-aaaa-0000": float(step)}  # joules since open
            assert joules(src) == {"GPU-aaaa-0000": float(step)}  # unchanged file: no more
    finally:
        src.close()


def test_counter_going_backwards_is_a_driver_reload(pynvml, nvml_state):
    gpus = two_gpus()
    nvml_state(gpus)
    src = NvmlSource.open(pynvml, gpu_indices=[0])
    gpus[0].energy_mj += 10_000
    nvml_state(gpus)
    assert joules(src) == {"GPU-aaaa-0000": 10.0}
    gpus[0].energy_mj = 4_000  # driver reloaded: counter restarted and counted 4 J
    nvml_state(gpus)
    assert joules(src) == {"GPU-aaaa-0000": 14.0}
    src.close()


def test_not_supported_counter_falls_back_to_sampled_power(pynvml, nvml_state):
    gpus = two_gpus(energy_supported=False, power_mw=200_000)
    nvml_state(gpus)
    clock = FakeClock()
    src = NvmlSource.open(pynvml, sample_interval_s=0, clock=clock)  # sample on read only
    methods = {d.uuid: d.method for d in src.devices()}
    assert methods == {"GPU-aaaa-0000": Method.MEASURED, "GPU-bbbb-1111": Method.SAMPLED}
    assert joules(src)["GPU-bbbb-1111"] == 0.0  # first sample
    clock.now += 10.0
    got = {r.device: r for r in src.read()}
    assert got["GPU-bbbb-1111"].joules == 2000.0  # 200 W for 10 s
    assert got["GPU-bbbb-1111"].method is Method.SAMPLED
    assert got["GPU-bbbb-1111"].uncertainty == 0.15
    gpus[1].power_mw = 300_000
    nvml_state(gpus)
    clock.now += 10.0
    assert joules(src)["GPU-bbbb-1111"] == 2000.0 + 2500.0  # trapezoid 200 -> 300 W
    src.close()


def test_background_thread_samples_without_reads(pynvml, nvml_state):
    nvml_state([FakeGpu("GPU-old-p100", name="Tesla P100-PCIE-16GB", energy_supported=False,
                        power_mw=150_000)])  # fmt: skip
    t0 = time.monotonic()
    src = NvmlSource.open(pynvml, sample_interval_s=0.005)
    deadline = time.monotonic() + 30
    while src.samples < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert src.samples >= 5  # the thread sampled on its own
    (r,) = src.read()
    elapsed = time.monotonic() - t0
    src.close()
    # constant 150 W: integral is positive and cannot exceed 150 W x wall time
    assert 0.0 < r.joules <= 150.0 * elapsed
    assert r.method is Method.SAMPLED


def test_gpu_lost_mid_run_keeps_last_energy_and_reports(pynvml, nvml_state):
    gpus = two_gpus()
    nvml_state(gpus)
    src = NvmlSource.open(pynvml)
    gpus[0].energy_mj += 5_000
    gpus[1].energy_mj += 7_000
    nvml_state(gpus)
    assert joules(src) == {"GPU-aaaa-0000": 5.0, "GPU-bbbb-1111": 7.0}
    gpus[1].state = "lost"  # Xid 79: fallen off the bus
    gpus[0].energy_mj += 1_000
    gpus[1].energy_mj += 9_000_000  # never seen again
    nvml_state(gpus)
    assert joules(src) == {"GPU-aaaa-0000": 6.0, "GPU-bbbb-1111": 7.0}
    health = src.health()
    assert not health.up
    assert health.message == ("GPU 1 (GPU-bbbb-1111) failed: GPU is lost; its energy stays at the last reading 7.0 J")
    # processes() skips the lost GPU instead of raising
    assert [p.device_uuid for p in src.processes()] == []
    # the GPU vanishes from the device list altogether
    gpus[1].state = "gone"
    nvml_state(gpus)
    assert joules(src) == {"GPU-aaaa-0000": 6.0, "GPU-bbbb-1111": 7.0}
    assert not src.health().up
    src.close()


def test_sampled_gpu_lost_keeps_last_energy(pynvml, nvml_state):
    gpus = [FakeGpu("GPU-s", energy_supported=False, power_mw=100_000)]
    nvml_state(gpus)
    clock = FakeClock()
    src = NvmlSource.open(pynvml, sample_interval_s=0, clock=clock)
    clock.now += 5
    assert joules(src) == {"GPU-s": 500.0}
    gpus[0].state = "lost"
    nvml_state(gpus)
    clock.now += 5
    assert joules(src) == {"GPU-s": 500.0}
    assert "GPU is lost" in src.health().message
    src.close()


def test_processes_with_sm_util_vanished_pids_and_unsupported_queries(pynvml, nvml_state):
    gpus = [
        FakeGpu("GPU-a"),
        FakeGpu("GPU-b", procs_error=3),  # NotSupported for running processes (e.g. vGPU)
        FakeGpu("GPU-c", putil_error=3),  # NotSupported for per-process utilisation
    ]
    procs = [
        FakeGpuProcess(0, 4242, used_memory_bytes=3 * GIB, sm_util=61, timestamp_us=10),
        FakeGpuProcess(0, 4243, used_memory_bytes=GIB, sm_util=0, timestamp_us=0),  # no sample
        FakeGpuProcess(1, 5000, used_memory_bytes=GIB, sm_util=50),
        FakeGpuProcess(2, 6000, used_memory_bytes=2 * GIB, sm_util=70),
    ]
    nvml_state(gpus, procs)
    src = NvmlSource.open(pynvml)
    assert src.processes() == [
        GpuProcess("GPU-a", 4242, 3 * GIB, 61.0),
        GpuProcess("GPU-a", 4243, GIB, None),  # vanished before its utilisation sample
        GpuProcess("GPU-c", 6000, 2 * GIB, None),
    ]
    # all PIDs gone: NVML answers NotFound for utilisation, no processes, no error
    nvml_state(gpus, [])
    assert src.processes() == []
    assert src.health().up
    src.close()


def test_mig_instances_listed_and_estimated_by_slice(pynvml, nvml_state):
    gpus = [
        FakeGpu(
            "GPU-mig-parent",
            energy_mj=0,
            migs=[
                FakeMig("MIG-aaaa", "NVIDIA H100 80GB HBM3 MIG 3g.40gb", 40 * GIB),
                FakeMig("MIG-bbbb", "NVIDIA H100 80GB HBM3 MIG 1g.10gb", 10 * GIB),
            ],
        )
    ]
    procs = [
        FakeGpuProcess(0, 700, used_memory_bytes=GIB, sm_util=90, mig=0),
        FakeGpuProcess(0, 701, used_memory_bytes=GIB, sm_util=30, mig=1),
    ]
    nvml_state(gpus, procs)
    src = NvmlSource.open(pynvml)
    devs = src.devices()
    assert [(d.uuid, d.parent_uuid, d.method, d.mig_index) for d in devs] == [
        ("GPU-mig-parent", None, Method.MEASURED, None),
        ("MIG-aaaa", "GPU-mig-parent", Method.ESTIMATED, 0),
        ("MIG-bbbb", "GPU-mig-parent", Method.ESTIMATED, 1),
    ]
    gpus[0].energy_mj = 800_000
    nvml_state(gpus, procs)
    assert joules(src) == {"GPU-mig-parent": 800.0}  # physical energy only: no double count
    mig = {r.device: r for r in src.read_mig()}
    assert mig["MIG-aaaa"].joules == 400.0  # 40 of 80 GiB
    assert mig["MIG-bbbb"].joules == 100.0  # 10 of 80 GiB; 300 J stay unallocated
    assert {r.method for r in mig.values()} == {Method.ESTIMATED}
    # The fake holds SM samples for these processes, but real NVML gives no utilisation on
    # a MIG-enabled GPU (nvml.h nvmlDeviceGetProcessUtilization: "On MIG-enabled GPUs,
    # querying process utilization is not currently supported"): processes and their memory
    # per instance only. (This test expected 90.0 and 30.0 before the fake followed nvml.h.)
    assert src.processes() == [
        GpuProcess("MIG-aaaa", 700, GIB, None),
        GpuProcess("MIG-bbbb", 701, GIB, None),
    ]
    src.close()


def test_gpu_selection_by_index_uuid_and_mig_uuid(pynvml, nvml_state):
    gpus = two_gpus()
    gpus[1].migs = [FakeMig("MIG-in-b", memory_total_bytes=20 * GIB)]
    nvml_state(gpus)
    assert [d.uuid for d in NvmlSource.open(pynvml, gpu_indices=[1]).devices()] == [
        "GPU-bbbb-1111",
        "MIG-in-b",
    ]
    assert [d.index for d in NvmlSource.open(pynvml, gpu_indices=["GPU-bbbb-1111"]).devices()] == [1, 1]
    # a MIG UUID selects its physical parent (energy is per physical GPU)
    sel = NvmlSource.open(pynvml, gpu_indices=["MIG-in-b", "1"])
    assert [d.uuid for d in sel.devices()] == ["GPU-bbbb-1111", "MIG-in-b"]
    with pytest.raises(ConfigError, match="GPU index 2 does not exist: this machine has 2 GPU"):
        NvmlSource.open(pynvml, gpu_indices=[2])
    with pytest.raises(ConfigError, match="GPU 'GPU-nope' not found"):
        NvmlSource.open(pynvml, gpu_indices=["GPU-nope"])


def test_no_driver_no_gpus_and_failed_init_are_unavailable(pynvml, nvml_state, monkeypatch):
    nvml_state([])
    with pytest.raises(SourceUnavailable, match="NVML found no GPUs"):
        NvmlSource.open(pynvml)
    nvml_state([FakeGpu("GPU-x")], init_error=9)
    with pytest.raises(SourceUnavailable, match=r"NVML unavailable \(Driver Not Loaded\)"):
        NvmlSource.open(pynvml)
    monkeypatch.delenv(STATE_ENV)
    with pytest.raises(SourceUnavailable, match="no NVIDIA driver"):
        NvmlSource.open(pynvml)


def test_subprocess_loads_fake_by_soname_via_ld_library_path(fake_nvml_dir: Path, tmp_path: Path):
    """The other documented way: LD_LIBRARY_PATH in a child process, default pynvml import."""
    state = tmp_path / "state"
    write_state(state, [FakeGpu("GPU-child", energy_mj=42_000)])
    code = textwrap.dedent(
        """
        from carbontrack.sources.nvml import NvmlSource
        src = NvmlSource.open()  # imports pynvml itself
        print([(d.index, d.uuid, d.name) for d in src.devices()])
        src.close()
        """
    )
    env = dict(os.environ, LD_LIBRARY_PATH=str(fake_nvml_dir), **{STATE_ENV: str(state)})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[(0, 'GPU-child', 'NVIDIA H100 80GB HBM3')]"


def test_broken_gpu_at_open_is_skipped_when_all_are_wanted(pynvml, nvml_state):
    gpus = two_gpus(state="lost")
    nvml_state(gpus)
    src = NvmlSource.open(pynvml)
    assert [d.uuid for d in src.devices()] == ["GPU-aaaa-0000"]
    assert src.health() == SourceHealth(False, "GPU 1: GPU is lost; GPU skipped")
    gpus[0].energy_mj += 3_000
    nvml_state(gpus)
    assert joules(src) == {"GPU-aaaa-0000": 3.0}  # the healthy GPU is still measured
    src.close()
    # a GPU the user named must work
    with pytest.raises(SourceUnavailable, match="GPU 1: GPU is lost"):
        NvmlSource.open(pynvml, gpu_indices=[1])


def test_gpu_without_counter_or_power_is_never_a_silent_zero(pynvml, nvml_state):
    nvml_state([FakeGpu("GPU-vgpu", name="GRID T4-4Q", energy_supported=False, power_supported=False)])
    with pytest.raises(SourceUnavailable) as err:
        NvmlSource.open(pynvml)
    assert str(err.value) == (
        "no usable GPU: GPU 0 (GPU-vgpu): neither the energy counter nor power readings are "
        "supported (Not Supported); its energy cannot be measured"
    )
