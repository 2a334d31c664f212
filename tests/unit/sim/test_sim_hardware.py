"""The simulated-hardware writers: powercap, procfs and the fake NVML library/state file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from carbontrack.sim.fakenvml import (
    FakeGpu,
    FakeGpuProcess,
    FakeMig,
    FakeNvmlBuildError,
    build_fake_libnvml,
    render_state,
)
from carbontrack.sim.powercap import FakePowercap
from carbontrack.sim.procfs import (
    FakeProcStat,
    Ticks,
    remove_pid,
    write_cpuinfo,
    write_pid_cgroup,
    write_pid_stat,
)
from carbontrack.sources.procstat import read_cpuinfo, read_pid_stat, read_proc_stat


def test_powercap_tree_layout_and_wrap(tmp_path: Path):
    pc = FakePowercap(tmp_path)
    pkg = pc.add_package(1, max_range_uj=1_000, dram=True, core=True, mmio_duplicate=True, tdp_watts=95)
    root = tmp_path / "class" / "powercap"
    assert sorted(p.name for p in root.iterdir()) == [
        "intel-rapl-mmio:1", "intel-rapl:1", "intel-rapl:1:0", "intel-rapl:1:2",
    ]  # fmt: skip
    assert (root / "intel-rapl:1" / "name").read_text() == "package-1\n"
    assert (root / "intel-rapl:1:2" / "name").read_text() == "dram\n"
    assert (root / "intel-rapl:1" / "constraint_0_max_power_uw").read_text() == "95000000\n"
    assert pc.advance(pkg, 0.0009) == 900
    assert pc.advance(pkg, 0.0002) == 100  # wrapped at 1000 uJ
    for zone in ("intel-rapl:1", "intel-rapl-mmio:1"):  # the duplicate mirrors the counter
        assert (root / zone / "energy_uj").read_text() == "100\n"
    # atomic writes leave no temporary files behind
    assert not [p for p in root.rglob(".*")]


def test_powercap_unreadable_sets_mode_and_survives_rewrites(tmp_path: Path):
    pc = FakePowercap(tmp_path)
    pkg = pc.add_package(0, dram=False)
    f = tmp_path / "class/powercap/intel-rapl:0/energy_uj"
    pc.set_unreadable(pkg)
    assert stat.S_IMODE(f.stat().st_mode) == 0
    pc.advance(pkg, 1.0)  # a rewrite keeps the file unreadable
    assert stat.S_IMODE(f.stat().st_mode) == 0
    pc.set_unreadable(pkg, False)
    assert stat.S_IMODE(f.stat().st_mode) == 0o444
    assert f.read_text() == "1000000\n"
    with pytest.raises(KeyError, match="no fake powercap zone 'intel-rapl:7'"):
        pc.advance("intel-rapl:7", 1.0)


def test_fake_proc_stat_ticks(tmp_path: Path):
    fs = FakeProcStat(tmp_path, 4, ticks=Ticks(idle=1000))
    fs.advance(2.0, busy_cpus=1.5, steal_cpus=0.5)
    st = read_proc_stat(tmp_path)
    assert st.online_cpus == 4
    assert (st.cpu.user, st.cpu.steal, st.cpu.idle) == (300, 100, 1000 + 400)
    with pytest.raises(ValueError, match=r"busy\+steal 5.0 not in 0..4 CPUs"):
        fs.advance(1.0, busy_cpus=5.0)


def test_pid_files_and_cgroup_lines(tmp_path: Path):
    write_pid_stat(tmp_path, 77, comm="train (rank 0)", ppid=5, utime=12, stime=3, starttime=999)
    st = read_pid_stat(tmp_path, 77)
    assert st is not None
    assert (st.comm, st.ppid, st.utime, st.stime, st.starttime) == ("train (rank 0)", 5, 12, 3, 999)
    write_pid_cgroup(tmp_path, 77, "/kubepods.slice/x.scope")
    assert (tmp_path / "77" / "cgroup").read_text() == "0::/kubepods.slice/x.scope\n"
    write_pid_cgroup(tmp_path, 78, "/kubepods/pod1/c1", v1_controllers=["cpu,cpuacct", "memory"])
    assert (tmp_path / "78" / "cgroup").read_text() == ("1:cpu,cpuacct:/kubepods/pod1/c1\n2:memory:/kubepods/pod1/c1\n")
    remove_pid(tmp_path, 77)
    assert not (tmp_path / "77").exists()
    assert read_pid_stat(tmp_path, 77) is None


def test_cpuinfo_writer_round_trips(tmp_path: Path):
    write_cpuinfo(tmp_path, model_name="Intel(R) Xeon(R) Gold 6148", n_cpus=8, sockets=2, model=0x55, stepping=4)
    info = read_cpuinfo(tmp_path)
    assert (info.model_name, info.vendor, info.family, info.model, info.stepping) == (
        "Intel(R) Xeon(R) Gold 6148", "GenuineIntel", 6, 0x55, 4,
    )  # fmt: skip
    assert (info.sockets, info.smt) == (2, True)


def test_nvml_state_file_format():
    text = render_state(
        [FakeGpu("GPU-1", energy_mj=5, migs=[FakeMig("MIG-1", memory_total_bytes=7)])],
        [FakeGpuProcess(0, 42, used_memory_bytes=9, sm_util=50, mig=0, timestamp_us=3)],
        driver_version="1.2",
    )
    assert text.splitlines() == [
        "driver\tversion=1.2",
        "gpu\tuuid=GPU-1\tname=NVIDIA H100 80GB HBM3\tmem_total=85899345920\tmem_used=0"
        "\tenergy_mj=5\tenergy_supported=1\tpower_supported=1\tpower_mw=0\tutil_gpu=0\tutil_mem=0\tstate=ok"
        "\tmig_mode=1\tprocs_error=0\tputil_error=0",
        "mig\tgpu=0\tuuid=MIG-1\tname=NVIDIA H100 80GB HBM3 MIG 3g.40gb\tmem_total=7\tgi=1\tci=0",
        "proc\tgpu=0\tmig=0\tpid=42\tused_mem=9\tsm=50\tmem=0\tts=3",
    ]
    with pytest.raises(ValueError, match="must not contain tabs"):
        render_state([FakeGpu("GPU-\t")])
    with pytest.raises(ValueError, match="gpu 3 is not in gpus"):
        render_state([FakeGpu("GPU-1")], [FakeGpuProcess(3, 1)])
    with pytest.raises(ValueError, match="state must be ok, lost or gone"):
        render_state([FakeGpu("GPU-1", state="melted")])


def test_build_is_cached_by_source_hash(tmp_path: Path):
    d1 = build_fake_libnvml(tmp_path)
    lib = d1 / "libnvidia-ml.so.1"
    mtime = lib.stat().st_mtime_ns
    assert build_fake_libnvml(tmp_path) == d1
    assert lib.stat().st_mtime_ns == mtime  # not rebuilt
    assert d1.name.startswith("fakenvml-")
    assert b"libnvidia-ml.so.1" in lib.read_bytes()  # the soname the loader matches


def test_build_without_compiler_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FakeNvmlBuildError, match=r"no C compiler \(gcc\) on PATH: install one"):
        build_fake_libnvml(tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.so.1"))
