"""AmdSmiSource through the REAL amdsmi bindings (PyPI amdsmi) and the fake libamd_smi.so
(carbontrack.sim.fakeamdsmi). Behaviours the fake follows are cited in fakeamdsmi.c."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import pytest

from carbontrack.core.errors import SourceUnavailable
from carbontrack.core.types import Component, Method
from carbontrack.sim.fakeamdsmi import (
    STATE_ENV,
    STATUS_FILE_ERROR,
    STATUS_INIT_ERROR,
    STATUS_NOT_SUPPORTED,
    FakeAmdGpu,
    FakeAmdProcess,
    FakePartition,
    build_fake_libamdsmi,
    counts_for_joules,
    load_in_process,
    write_state,
)
from carbontrack.sources.amdgpu import WRAP_32, AmdSmiSource

GIB = 1024**3
BDF0, BDF1 = "0000:c1:00.0", "0000:c2:00.0"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="session")
def fake_amdsmi_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fake_libamdsmi(tmp_path_factory.mktemp("fakeamdsmi-cache"))


@pytest.fixture
def amd_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[Callable[..., None]]:
    path = tmp_path / "amdsmi-state"
    monkeypatch.setenv(STATE_ENV, str(path))

    def set_state(gpus: Sequence[FakeAmdGpu], processes: Iterable[FakeAmdProcess] = (),
                  **kw: object) -> None:
        write_state(path, gpus, processes, **kw)  # type: ignore[arg-type]

    set_state([])
    yield set_state


@pytest.fixture
def smi(fake_amdsmi_root: Path, amd_state: Callable[..., None]) -> ModuleType:
    """The real amdsmi module, bound to the fake library (ROCM_PATH is searched first)."""
    amdsmi = load_in_process(fake_amdsmi_root)
    amd_state([FakeAmdGpu(BDF0, "probe")], lib_version="7.0.2")
    amdsmi.amdsmi_init()
    try:
        bdf = amdsmi.amdsmi_get_gpu_device_bdf(amdsmi.amdsmi_get_processor_handles()[0])
    finally:
        amdsmi.amdsmi_shut_down()
    assert bdf == BDF0
    return amdsmi


def open_source(smi: ModuleType, clock: Clock, **kw: float) -> AmdSmiSource:
    return AmdSmiSource.open(smi, sample_interval_s=0, clock=clock, **kw)


def test_discovery_lists_gpus_by_pci_address_with_partitions(smi, amd_state) -> None:
    amd_state([
        FakeAmdGpu(BDF0, "uuid-0", name="AMD Instinct MI300X", memory_total_bytes=192 * GIB),
        FakeAmdGpu(BDF1, "uuid-1", memory_total_bytes=96 * GIB, compute_partition="DPX",
                   partitions=[FakePartition("0000:c2:00.1", "uuid-1p1", 96 * GIB)]),
    ])
    src = open_source(smi, Clock())
    try:
        devs = src.devices()
        assert [(d.uuid, d.parent_uuid, d.method) for d in devs] == [
            (BDF0, None, Method.MEASURED),
            (BDF1, None, Method.MEASURED),
            (BDF1, BDF1, Method.ESTIMATED),  # partition 0: the GPU's own handle
            ("0000:c2:00.1", BDF1, Method.ESTIMATED),
        ]
        assert devs[0].name == "AMD Instinct MI300X"
        assert devs[0].memory_total_bytes == 192 * GIB
        assert devs[1].memory_total_bytes == 192 * GIB  # both partitions' memory
        assert [r.device for r in src.read()] == [BDF0, BDF1]  # energy per physical GPU only
        assert src.health().up
    finally:
        src.close()


def test_counter_is_ticks_times_microjoule_resolution(smi, amd_state) -> None:
    """The trap of CodeCarbon PR #1072 (12.5 MW on MI250s): ticks are not joules or mJ."""
    clock = Clock()
    gpu = FakeAmdGpu(BDF0, "u0", energy_counts=123_456_789)
    amd_state([gpu])
    src = open_source(smi, clock)
    try:
        assert src.read()[0].joules == 0.0  # counted from open
        clock.t += 10.0
        gpu.energy_counts += 65_536 * 5_000  # 5,000 x 65,536 ticks of 15.3 uJ
        amd_state([gpu])
        (r,) = src.read()
        assert r.component is Component.GPU and r.method is Method.MEASURED
        assert r.joules == pytest.approx(65_536 * 5_000 * 15.3e-6, rel=1e-6)  # 5,013.5 J
        assert r.joules / 10.0 == pytest.approx(501.35, rel=1e-4)  # W: an MI300X's, not MW
    finally:
        src.close()


def test_resolution_is_read_from_the_library(smi, amd_state) -> None:
    clock = Clock()
    gpu = FakeAmdGpu(BDF0, "u0", resolution_uj=15.259)  # 2^-16 J, the gpu_metrics unit
    amd_state([gpu])
    src = open_source(smi, clock)
    try:
        gpu.energy_counts = counts_for_joules(700.0, 15.259)
        amd_state([gpu])
        clock.t += 2.0
        assert src.read()[0].joules == pytest.approx(700.0, abs=20e-6)
    finally:
        src.close()


def test_a_32bit_counter_wrap_is_counted_once(smi, amd_state) -> None:
    clock = Clock()
    gpu = FakeAmdGpu(BDF0, "u0", energy_counts=WRAP_32 - 1_000_000)
    amd_state([gpu])
    src = open_source(smi, clock)
    try:
        clock.t += 60.0
        gpu.energy_counts = 2_000_000  # passed 2^32: 3,000,000 ticks later
        amd_state([gpu])
        assert src.read()[0].joules == pytest.approx(3_000_000 * 15.3e-6, rel=1e-6)
    finally:
        src.close()


def test_a_restarted_64bit_counter_counts_from_zero(smi, amd_state) -> None:
    clock = Clock()
    gpu = FakeAmdGpu(BDF0, "u0", energy_counts=1 << 40)  # far beyond 32 bits: no wrap
    amd_state([gpu])
    src = open_source(smi, clock)
    try:
        clock.t += 5.0
        gpu.energy_counts = 100_000  # driver reloaded
        amd_state([gpu])
        assert src.read()[0].joules == pytest.approx(100_000 * 15.3e-6, rel=1e-6)
    finally:
        src.close()


def test_an_implausible_wrap_is_a_restart(smi, amd_state) -> None:
    """Below 2^32 a drop is ambiguous: a wrap that would mean > max_watts is a restart."""
    clock = Clock()
    gpu = FakeAmdGpu(BDF0, "u0", energy_counts=1_000_000)
    amd_state([gpu])
    src = open_source(smi, clock)
    try:
        clock.t += 1.0  # a wrap here would be ~65 kJ in 1 s
        gpu.energy_counts = 10
        amd_state([gpu])
        assert src.read()[0].joules == pytest.approx(10 * 15.3e-6)
    finally:
        src.close()


def test_sampled_fallback_integrates_watts(smi, amd_state) -> None:
    clock = Clock()
    gpu = FakeAmdGpu(BDF0, "u0", energy_error=STATUS_NOT_SUPPORTED, power_w=300)
    amd_state([gpu])
    src = open_source(smi, clock)
    try:
        assert src.devices()[0].method is Method.SAMPLED
        clock.t += 2.0
        gpu.power_w = 500
        amd_state([gpu])
        (r,) = src.read()
        assert r.method is Method.SAMPLED
        assert r.joules == pytest.approx((300 + 500) / 2 * 2.0)  # 800 J, trapezoid
    finally:
        src.close()


def test_sampled_falls_back_to_average_power_where_current_is_na(smi, amd_state) -> None:
    clock = Clock()
    # 0xFFFF is amdsmi's N/A (the bindings turn it into the string "N/A")
    gpu = FakeAmdGpu(BDF0, "u0", energy_error=STATUS_NOT_SUPPORTED, power_w=0xFFFF,
                     avg_power_w=250)
    amd_state([gpu])
    src = open_source(smi, clock)
    try:
        clock.t += 4.0
        assert src.read()[0].joules == pytest.approx(1000.0)
    finally:
        src.close()


def test_no_counter_and_no_power_is_never_a_silent_zero(smi, amd_state) -> None:
    amd_state([FakeAmdGpu(BDF0, "u0", energy_error=STATUS_NOT_SUPPORTED,
                          power_error=STATUS_NOT_SUPPORTED),
               FakeAmdGpu(BDF1, "u1")])
    src = open_source(smi, Clock())
    try:
        assert [r.device for r in src.read()] == [BDF1]
        h = src.health()
        assert not h.up
        assert "AMD GPU 0 (0000:c1:00.0): neither the energy counter nor power" in h.message
    finally:
        src.close()


def test_per_process_vram_and_engine_busy_share(smi, amd_state) -> None:
    clock = Clock()
    gpus = [FakeAmdGpu(BDF0, "u0")]
    procs = [FakeAmdProcess(0, 101, vram_bytes=8 * GIB, gfx_ns=1_000_000_000),
             FakeAmdProcess(0, 202, vram_bytes=2 * GIB, gfx_ns=0)]
    amd_state(gpus, procs)
    src = open_source(smi, clock)
    try:
        first = src.processes()
        assert [(p.device_uuid, p.pid, p.used_memory_bytes, p.sm_util_percent) for p in first] \
            == [(BDF0, 101, 8 * GIB, None), (BDF0, 202, 2 * GIB, None)]  # no interval yet
        clock.t += 2.0
        procs[0].gfx_ns += 1_500_000_000  # 1.5 s busy of 2 s
        procs[1].gfx_ns += 200_000_000
        amd_state(gpus, procs)
        util = {p.pid: p.sm_util_percent for p in src.processes()}
        assert util == {101: pytest.approx(75.0), 202: pytest.approx(10.0)}
    finally:
        src.close()


def test_processes_on_a_partition_carry_its_address(smi, amd_state) -> None:
    gpus = [FakeAmdGpu(BDF1, "u1", compute_partition="CPX",
                       partitions=[FakePartition("0000:c2:00.1", "u1p1")])]
    amd_state(gpus, [FakeAmdProcess(0, 7, vram_bytes=GIB, partition=1),
                     FakeAmdProcess(0, 8, vram_bytes=GIB, partition=0)])
    src = open_source(smi, Clock())
    try:
        assert {(p.device_uuid, p.pid) for p in src.processes()} == {
            ("0000:c2:00.1", 7), (BDF1, 8)}
    finally:
        src.close()


def test_a_gpu_lost_mid_run_keeps_its_energy_and_says_so(smi, amd_state) -> None:
    clock = Clock()
    gpus = [FakeAmdGpu(BDF0, "u0"), FakeAmdGpu(BDF1, "u1")]
    amd_state(gpus)
    src = open_source(smi, clock)
    try:
        clock.t += 10.0
        for g in gpus:
            g.energy_counts += counts_for_joules(4000.0)
        amd_state(gpus)
        before = {r.device: r.joules for r in src.read()}
        gpus[0].state = "lost"
        gpus[1].energy_counts += counts_for_joules(1000.0)
        amd_state(gpus)
        clock.t += 10.0
        after = {r.device: r.joules for r in src.read()}
        assert after[BDF0] == before[BDF0]  # kept, not reset to zero
        assert after[BDF1] == pytest.approx(before[BDF1] + 1000.0, abs=1e-4)
        h = src.health()
        assert not h.up and "AMD GPU 0 (0000:c1:00.0) failed: AMDSMI_STATUS_FILE_ERROR" in h.message
        assert f"{before[BDF0]:.1f} J" in h.message
        gpus[0].state = "ok"  # back: counting resumes from where the counter is
        gpus[0].energy_counts += counts_for_joules(10.0)
        amd_state(gpus)
        assert src.read()[0].joules == pytest.approx(before[BDF0] + 10.0, abs=1e-4)
        assert src.health().up
    finally:
        src.close()


def test_errors_on_one_device_at_open_skip_only_that_device(smi, amd_state) -> None:
    amd_state([FakeAmdGpu(BDF0, "u0", energy_error=STATUS_FILE_ERROR), FakeAmdGpu(BDF1, "u1")])
    src = open_source(smi, Clock())
    try:
        assert [d.uuid for d in src.devices()] == [BDF1]
        h = src.health()
        assert not h.up
        assert h.message == ("AMD GPU 0 (0000:c1:00.0): energy counter: AMDSMI_STATUS_FILE_ERROR; "
                             "GPU skipped")
    finally:
        src.close()


def test_init_failure_and_no_gpu_are_unavailable(smi, amd_state) -> None:
    amd_state([FakeAmdGpu(BDF0, "u0")], init_error=STATUS_INIT_ERROR)
    with pytest.raises(SourceUnavailable, match=r"amdsmi_init failed .*AMDSMI_STATUS_INIT_ERROR"):
        open_source(smi, Clock())
    amd_state([])
    with pytest.raises(SourceUnavailable, match="amdsmi found no usable AMD GPU"):
        open_source(smi, Clock())


def test_a_library_older_than_rocm6_is_refused(smi, amd_state) -> None:
    amd_state([FakeAmdGpu(BDF0, "u0")], lib_version="5.7.0")
    with pytest.raises(SourceUnavailable, match=r"libamd_smi 5\.7\.0 is too old: ROCm 6\.0"):
        open_source(smi, Clock())


def _open_in_subprocess(rocm_path: Path, state: Path) -> dict[str, str]:
    code = ("import json\nfrom carbontrack.core.errors import SourceUnavailable\n"
            "from carbontrack.sources.amdgpu import AmdSmiSource\n"
            "try:\n    AmdSmiSource.open(sample_interval_s=0)\n    out = {'ok': 'opened'}\n"
            "except SourceUnavailable as e:\n    out = {'error': str(e)}\n"
            "print('RESULT ' + json.dumps(out))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("ROCM_HOME", "LD_LIBRARY_PATH")}
    env.update(ROCM_PATH=str(rocm_path), **{STATE_ENV: str(state)})
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    result: dict[str, str] = json.loads(line[len("RESULT "):])
    return result


def test_missing_library_says_how_to_install_it(tmp_path: Path) -> None:
    if Path("/opt/rocm/lib/libamd_smi.so").exists():
        pytest.skip("a real ROCm is installed: the bindings would find it")
    out = _open_in_subprocess(tmp_path / "no-rocm", tmp_path / "state")
    assert out == {"error": "libamd_smi.so not found: install the ROCm amd-smi-lib package "
                            "or set ROCM_PATH to the ROCm directory holding lib/libamd_smi.so"}


def test_library_older_than_the_bindings_is_named(tmp_path: Path) -> None:
    old = build_fake_libamdsmi(tmp_path / "cache", old=True)
    write_state(tmp_path / "state", [FakeAmdGpu(BDF0, "u0")])
    out = _open_in_subprocess(old, tmp_path / "state")
    assert out["error"].startswith("libamd_smi.so is older than the amdsmi bindings (")
    assert "undefined symbol: amdsmi_get_gpu_enumeration_info" in out["error"]
    # the same state through a current library opens
    cur = build_fake_libamdsmi(tmp_path / "cache")
    assert _open_in_subprocess(cur, tmp_path / "state") == {"ok": "opened"}
