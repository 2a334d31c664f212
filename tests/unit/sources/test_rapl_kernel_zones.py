"""RaplSource on every zone name and index form the kernel writes.

Names: drivers/powercap/intel_rapl_common.c (``package-%d``, ``package-%d-die-%d``,
``core``/``uncore``/``dram``, ``psys``/``psys-%d``); directory indices:
drivers/powercap/powercap_sys.c ``dev_set_name("%s:%x")`` (hex). See rapl_zones.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from carbontrack.core.types import Component, EnergyReading
from carbontrack.sim.powercap import FakePowercap
from carbontrack.sources.rapl import RaplSource


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def joules(readings: object) -> dict[str, float]:
    assert isinstance(readings, list)
    out: dict[str, float] = {}
    for r in readings:
        assert isinstance(r, EnergyReading)
        out[r.device] = r.joules
    return out


def test_two_sockets_of_six_dies_sum_per_package_with_hex_zone_indices(tmp_path: Path):
    # 12 die zones take indices 0..b: the 11th and 12th are intel-rapl:a and intel-rapl:b.
    fake = FakePowercap(tmp_path)
    dies = {(s, d): fake.add_die(s, d, index=s * 6 + d) for s in (0, 1) for d in range(6)}
    assert dies[(1, 4)] == "intel-rapl:a" and dies[(1, 5)] == "intel-rapl:b"
    # Independent counters never coincide (and the kernel registers only domains whose
    # counter is non-zero, intel_rapl_common.c rapl_check_domain()).
    for n, zid in enumerate(dies.values()):
        fake.set_energy_uj(f"{zid}:0", 1_000_003 * (n + 1))
    clock = Clock()
    src = RaplSource(tmp_path, clock=clock)
    assert sorted({z.device for z in src.zones}) == ["dram-0", "dram-1", "package-0", "package-1"]
    assert len(src.zones) == 24  # 12 die counters and 12 dram counters, none dropped
    for (s, d), zid in dies.items():
        fake.advance(zid, 10.0 * s + d + 1)  # socket 0: 1..6 J, socket 1: 11..16 J
        fake.advance(f"{zid}:0", 0.5)
    clock.now += 1.0
    got = joules(src.read())
    assert got == {"package-0": 21.0, "dram-0": 3.0, "package-1": 81.0, "dram-1": 3.0}
    assert src.health().up and src.health().message == ""
    by_device = {r.device: r for r in src.read()}
    assert by_device["package-1"].component is Component.CPU
    assert by_device["dram-1"].component is Component.DRAM


def test_one_die_wrapping_adds_its_own_range(tmp_path: Path):
    fake = FakePowercap(tmp_path)
    d0 = fake.add_die(0, 0, index=0, dram=False, max_range_uj=1_000_000_000, energy_uj=999_000_000)
    d1 = fake.add_die(0, 1, index=1, dram=False, max_range_uj=1_000_000_000, energy_uj=5_000_000)
    clock = Clock()
    src = RaplSource(tmp_path, clock=clock)
    fake.advance(d0, 3.0)  # 999 J + 3 J wraps to 2 J on a 1000 J range
    fake.advance(d1, 4.0)
    assert fake.energy_uj(d0) == 2_000_000
    clock.now += 1.0
    assert joules(src.read()) == {"package-0": 7.0}


def test_dies_showing_one_package_counter_are_counted_once(tmp_path: Path):
    # Kernels before rapl_msrs_are_pkg_scope() named AMD dies package-N-die-M but read the
    # package-scoped MSR through each: every die zone shows the same counter.
    fake = FakePowercap(tmp_path)
    d0 = fake.add_die(0, 0, index=0, dram=False, energy_uj=7_000_000)
    d1 = fake.add_die(0, 1, index=1, dram=False, energy_uj=7_000_000)
    clock = Clock()
    src = RaplSource(tmp_path, clock=clock)
    for step_j in (12.0, 8.0):
        new = fake.advance(d0, step_j)
        fake.set_energy_uj(d1, new)
        clock.now += 1.0
        src.read()
    assert joules(src.read()) == {"package-0": 20.0}
    health = src.health()
    assert health.up
    assert health.message == "RAPL die zones of package-0 show one package counter; counted once"


def test_dies_at_equal_step_but_different_counters_are_both_counted(tmp_path: Path):
    fake = FakePowercap(tmp_path)
    d0 = fake.add_die(0, 0, index=0, dram=False, energy_uj=1_000_000)
    d1 = fake.add_die(0, 1, index=1, dram=False, energy_uj=9_000_000)
    clock = Clock()
    src = RaplSource(tmp_path, clock=clock)
    fake.advance(d0, 5.0)
    fake.advance(d1, 5.0)
    clock.now += 1.0
    assert joules(src.read()) == {"package-0": 10.0}


def test_numbered_psys_is_detail_and_never_added(tmp_path: Path):
    fake = FakePowercap(tmp_path)
    p0 = fake.add_package(0, dram=False)
    p1 = fake.add_package(1, dram=False)
    s0 = fake.add_psys(2, name="psys")
    s1 = fake.add_psys(3, name="psys-1")
    clock = Clock()
    src = RaplSource(tmp_path, clock=clock)
    for zid, j in ((p0, 40.0), (p1, 30.0), (s0, 100.0), (s1, 90.0)):
        fake.advance(zid, j)
    clock.now += 1.0
    assert joules(src.read()) == {"package-0": 40.0, "package-1": 30.0}
    assert joules(src.read_detail()) == {"psys": 100.0, "psys-1": 90.0}


def test_unparseable_zones_are_skipped_with_one_message(tmp_path: Path):
    fake = FakePowercap(tmp_path)
    pkg = fake.add_package(0, dram=True)
    root = tmp_path / "class/powercap"
    for name, zone_name in (
        ("intel-rapl:zz", "package-9"),  # not hex
        ("intel-rapl:5", "package-x"),  # no socket number
        ("intel-rapl:6", "gpu"),  # no kernel RAPL name
        ("intel-rapl:0:7", "weird"),  # unknown sub-zone
        ("intel-rapl:9:0", "dram"),  # sub-zone of no package
    ):
        (root / name).mkdir()
        (root / name / "name").write_text(zone_name + "\n")
        (root / name / "energy_uj").write_text("123\n")
    clock = Clock()
    src = RaplSource(tmp_path, clock=clock)
    fake.advance(pkg, 2.5)
    clock.now += 1.0
    assert joules(src.read()) == {"package-0": 2.5, "dram-0": 0.0}
    health = src.health()
    assert health.up
    assert health.message == (
        "RAPL zones skipped: intel-rapl:zz (zone index is not the kernel's hex form); "
        "intel-rapl:5 (name 'package-x' is no RAPL zone name the kernel writes); "
        "intel-rapl:6 (name 'gpu' is no RAPL zone name the kernel writes); "
        "intel-rapl:0:7 (name 'weird' is no RAPL sub-zone name the kernel writes); "
        "intel-rapl:9:0 (no package zone above it)"
    )


@pytest.mark.parametrize("content", [b"-5\n", b"abc\n", b"\xff\xfe\n", b"1_000\n", b"", b"9" * 5000])
def test_garbage_counter_turns_health_down_and_read_keeps_the_last_value(tmp_path: Path, content: bytes):
    fake = FakePowercap(tmp_path)
    pkg = fake.add_package(0, dram=False)
    clock = Clock()
    src = RaplSource(tmp_path, clock=clock)
    fake.advance(pkg, 4.0)
    clock.now += 1.0
    assert joules(src.read()) == {"package-0": 4.0}
    (tmp_path / "class/powercap" / pkg / "energy_uj").write_bytes(content)
    clock.now += 1.0
    assert joules(src.read()) == {"package-0": 4.0}
    assert not src.health().up
    assert src.health().message.startswith("RAPL zone package-0 unreadable: ")


def test_mmio_duplicate_of_a_die_zone_is_dropped_only_for_that_die(tmp_path: Path):
    fake = FakePowercap(tmp_path)
    d0 = fake.add_die(0, 0, index=0, dram=False)
    fake.add_die(0, 1, index=1, dram=False)
    mmio = tmp_path / "class/powercap/intel-rapl-mmio:0"
    mmio.mkdir()
    (mmio / "name").write_text("package-0-die-0\n")
    (mmio / "energy_uj").write_text("0\n")
    clock = Clock()
    src = RaplSource(tmp_path, clock=clock)
    assert [z.key for z in src.zones] == ["intel-rapl:0", "intel-rapl:1"]
    fake.advance(d0, 6.0)
    (mmio / "energy_uj").write_text("6000000\n")
    clock.now += 1.0
    assert joules(src.read()) == {"package-0": 6.0}
