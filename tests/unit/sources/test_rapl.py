"""RaplSource against fake powercap trees (checked-in and written by sim.powercap)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from carbontrack.core.errors import SourceUnavailable
from carbontrack.core.types import Component, EnergyReading, Method
from carbontrack.sim.powercap import FakePowercap
from carbontrack.sources.rapl import RaplSettings, RaplSource, read_sysfs_file

FIXTURES = Path(__file__).parents[2] / "fixtures"


class FakeClock:
    """Injected monotonic clock: tests move time explicitly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


def by_device(readings: object) -> dict[str, EnergyReading]:
    assert isinstance(readings, list)
    return {r.device: r for r in readings}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_checked_in_two_socket_tree_counts_mmio_duplicate_once(tmp_path: Path, clock: FakeClock):
    root = tmp_path / "sys"
    shutil.copytree(FIXTURES / "simulated-sysfs-xeon-2s", root, symlinks=True)
    src = RaplSource(root, clock=clock)
    assert [z.device for z in src.zones] == ["dram-0", "package-0", "dram-1", "package-1"]
    assert [z.tdp_watts for z in src.zones if z.kind == "package"] == [205.0, 205.0]
    first = by_device(src.read())
    assert {d: r.joules for d, r in first.items()} == {
        "package-0": 0.0,
        "dram-0": 0.0,
        "package-1": 0.0,
        "dram-1": 0.0,
    }
    # The driver moves the package-0 counter, and the MMIO zone shows the same counter.
    pkg = root / "devices/virtual/powercap/intel-rapl/intel-rapl:0/energy_uj"
    mmio = root / "devices/virtual/powercap/intel-rapl-mmio/intel-rapl-mmio:0/energy_uj"
    pkg.write_text("173456789\n")
    mmio.write_text("173456789\n")
    (root / "devices/virtual/powercap/intel-rapl/intel-rapl:1/energy_uj").write_text("997654321\n")
    clock.tick(1.0)
    got = by_device(src.read())
    assert got["package-0"].joules == pytest.approx(50.0, abs=1e-9)
    assert got["package-1"].joules == pytest.approx(10.0, abs=1e-9)
    assert got["dram-0"].joules == 0.0
    assert got["package-0"].component is Component.CPU
    assert got["dram-1"].component is Component.DRAM
    assert got["package-0"].method is Method.MEASURED
    assert src.health().up, src.health().message


def test_mmio_duplicate_from_sim_is_counted_once(tmp_path: Path, clock: FakeClock):
    fake = FakePowercap(tmp_path)
    pkg = fake.add_package(0, dram=True, mmio_duplicate=True)
    src = RaplSource(tmp_path, clock=clock)
    fake.advance(pkg, 12.5)
    fake.advance(fake.sub_zone(0, "dram"), 3.0)
    clock.tick(1.0)
    got = by_device(src.read())
    assert got["package-0"].joules == 12.5
    assert got["dram-0"].joules == 3.0
    total = sum(r.joules for r in got.values())
    assert total == 15.5  # conservation: nothing counted twice


def test_mmio_only_zone_is_used_when_no_msr_zone(tmp_path: Path, clock: FakeClock):
    fake = FakePowercap(tmp_path)
    fake.add_package(0, dram=False, mmio_duplicate=True)
    (tmp_path / "class/powercap/intel-rapl:0/energy_uj").unlink()
    shutil.rmtree(tmp_path / "class/powercap/intel-rapl:0")
    src = RaplSource(tmp_path, clock=clock)
    assert [z.path.name for z in src.zones] == ["intel-rapl-mmio:0"]
    mmio = tmp_path / "class/powercap/intel-rapl-mmio:0/energy_uj"
    mmio.write_text("7000000\n")
    clock.tick(1.0)
    assert by_device(src.read())["package-0"].joules == 7.0


def test_core_uncore_psys_are_detail_never_added(tmp_path: Path, clock: FakeClock):
    fake = FakePowercap(tmp_path)
    pkg = fake.add_package(0, dram=True, core=True, uncore=True)
    psys = fake.add_psys(1)
    src = RaplSource(tmp_path, clock=clock)
    fake.advance(pkg, 30.0)
    fake.advance(fake.sub_zone(0, "core"), 20.0)  # core is inside the package's 30 J
    fake.advance(fake.sub_zone(0, "uncore"), 4.0)
    fake.advance(fake.sub_zone(0, "dram"), 6.0)
    fake.advance(psys, 50.0)
    clock.tick(1.0)
    main = by_device(src.read())
    assert {d: r.joules for d, r in main.items()} == {"package-0": 30.0, "dram-0": 6.0}
    detail = by_device(src.read_detail())
    assert {d: r.joules for d, r in detail.items()} == {
        "core-0": 20.0,
        "uncore-0": 4.0,
        "psys": 50.0,
    }
    assert all(r.component is Component.OTHER for r in detail.values())


def test_counter_wrap_adds_the_range(tmp_path: Path, clock: FakeClock):
    fake = FakePowercap(tmp_path)
    pkg = fake.add_package(0, dram=False, max_range_uj=1_000_000_000, energy_uj=995_000_000)
    src = RaplSource(tmp_path, clock=clock)
    assert fake.advance(pkg, 10.0) == 5_000_000  # the raw counter wrapped past 1000 J
    clock.tick(1.0)
    assert by_device(src.read())["package-0"].joules == 10.0
    # many wraps in a row stay monotonic and exact
    for _ in range(7):
        fake.advance(pkg, 400.0)
        clock.tick(2.0)
        src.read()
    assert by_device(src.read())["package-0"].joules == 10.0 + 7 * 400.0
    assert src.health().up


def test_counter_reset_is_not_taken_for_a_wrap(tmp_path: Path, clock: FakeClock):
    fake = FakePowercap(tmp_path)
    pkg = fake.add_package(0, dram=False, energy_uj=100_000_000_000)  # 100 kJ, range 262 kJ
    src = RaplSource(tmp_path, clock=clock)
    fake.advance(pkg, 40.0)
    clock.tick(1.0)
    assert by_device(src.read())["package-0"].joules == 40.0
    # Driver reload: counter restarts at 0 and has counted 5 J since. A wrap would mean
    # ~162 kJ in one second (162 kW), so this is a reset.
    fake.set_energy_uj(pkg, 5_000_000)
    clock.tick(1.0)
    assert by_device(src.read())["package-0"].joules == 45.0


def test_wrap_after_long_gap_is_a_wrap(tmp_path: Path, clock: FakeClock):
    fake = FakePowercap(tmp_path)
    pkg = fake.add_package(0, dram=False, energy_uj=200_000_000_000)
    src = RaplSource(tmp_path, clock=clock, settings=RaplSettings(max_plausible_zone_watts=500))
    fake.advance(pkg, 100_000.0)  # 100 kJ: wraps past 262 kJ
    clock.tick(600.0)  # 167 W average over ten minutes: plausible
    assert by_device(src.read())["package-0"].joules == 100_000.0


def test_no_powercap_tree_is_source_unavailable(tmp_path: Path):
    with pytest.raises(SourceUnavailable, match="estimate source"):
        RaplSource(tmp_path)
    (tmp_path / "class/powercap").mkdir(parents=True)
    with pytest.raises(SourceUnavailable, match="no RAPL package zones"):
        RaplSource(tmp_path)


def test_unreadable_zone_injected_reader_gives_one_actionable_message(tmp_path: Path, clock: FakeClock):
    fake = FakePowercap(tmp_path)
    pkg = fake.add_package(0, dram=True)
    denied: set[str] = set()

    def reader(path: Path) -> str:
        if path.name == "energy_uj" and path.parent.name in denied:
            raise PermissionError(13, "Permission denied", str(path))
        return read_sysfs_file(path)

    src = RaplSource(tmp_path, clock=clock, reader=reader)
    fake.advance(pkg, 8.0)
    clock.tick(1.0)
    assert by_device(src.read())["package-0"].joules == 8.0
    denied.add(pkg)
    fake.advance(pkg, 8.0)
    fake.advance(fake.sub_zone(0, "dram"), 2.0)
    clock.tick(1.0)
    got = by_device(src.read())  # does not raise
    assert got["package-0"].joules == 8.0  # last cumulative kept, never negative
    assert got["dram-0"].joules == 2.0  # readable zones go on
    health = src.health()
    assert not health.up
    assert "\n" not in health.message
    assert "CVE-2020-8694" in health.message
    assert "run carbontrack as root" in health.message
    assert "udev rule" in health.message
    assert "CAP_SYS_RAWIO is not enough" in health.message
    assert health.message.endswith("unreadable zones: package-0")
    # access restored: health recovers and the counter resumes from the new value
    denied.clear()
    clock.tick(1.0)
    assert by_device(src.read())["package-0"].joules == 16.0
    assert src.health().up


def test_unreadable_zone_real_eacces_without_dac_override(tmp_path: Path):
    """Root bypasses mode 000, so run the reader with CAP_DAC_OVERRIDE/READ_SEARCH dropped:
    the kernel then returns a real EACCES, as for a non-root user after CVE-2020-8694."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("util-linux setpriv not installed")
    fake = FakePowercap(tmp_path)
    fake.add_package(0, dram=True)
    fake.set_unreadable(fake.package_zone(0))
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from carbontrack.sources.rapl import RaplSource
        src = RaplSource(Path({str(tmp_path)!r}))
        print(sorted((r.device, r.joules) for r in src.read()))
        print(src.health().up)
        print(src.health().message)
        """
    )
    proc = subprocess.run(
        [setpriv, "--bounding-set", "-dac_override,-dac_read_search", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 and "setpriv" in proc.stderr:
        pytest.skip(f"cannot drop capabilities here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "[('dram-0', 0.0), ('package-0', 0.0)]"
    assert lines[1] == "False"
    assert "CVE-2020-8694" in lines[2]
    assert lines[2].endswith("unreadable zones: package-0")


def test_zone_removed_mid_run_keeps_last_value(tmp_path: Path, clock: FakeClock):
    fake = FakePowercap(tmp_path)
    pkg = fake.add_package(0, dram=False)
    src = RaplSource(tmp_path, clock=clock)
    fake.advance(pkg, 3.0)
    clock.tick(1.0)
    src.read()
    fake.remove(pkg)
    clock.tick(1.0)
    assert by_device(src.read())["package-0"].joules == 3.0
    assert not src.health().up
    assert "package-0" in src.health().message


def test_packages_showing_one_counter_are_flagged_as_mirrored(tmp_path: Path, clock: FakeClock):
    fake = FakePowercap(tmp_path)
    p0 = fake.add_package(0, dram=False, energy_uj=5_000_000)
    p1 = fake.add_package(1, dram=False, energy_uj=9_000_000)
    src = RaplSource(tmp_path, clock=clock)
    for _ in range(4):  # equal steps on different counters: two real sockets, equally loaded
        fake.advance(p0, 80.0)
        fake.advance(p1, 80.0)
        clock.tick(1.0)
        src.read()
    assert src.health().up
    fake.set_energy_uj(p1, fake.energy_uj(p0))  # from now on both zones show one counter
    clock.tick(1.0)
    src.read()
    for i in range(3):
        fake.advance(p0, 80.0)
        fake.advance(p1, 80.0)
        clock.tick(1.0)
        got = by_device(src.read())
        assert src.health().up is (i < 2)  # flagged on the third interval in a row
    assert got["package-0"].joules == 7 * 80.0  # readings still reported, but flagged
    assert "mirror one counter" in src.health().message


def test_power_above_twice_tdp_is_flagged(tmp_path: Path, clock: FakeClock):
    fake = FakePowercap(tmp_path)
    pkg = fake.add_package(0, dram=False, tdp_watts=100.0)
    src = RaplSource(tmp_path, clock=clock)
    fake.advance(pkg, 150.0)
    clock.tick(1.0)
    src.read()
    assert src.health().up  # 150 W on a 100 W part: turbo, plausible
    fake.advance(pkg, 450.0)
    clock.tick(2.0)
    src.read()  # 225 W > 2 x 100 W
    assert not src.health().up
    assert "225 W exceeds 2x TDP (200 W)" in src.health().message
    # the TDP override replaces the sysfs PL1 value
    src2 = RaplSource(tmp_path, clock=clock, settings=RaplSettings(tdp_watts=300.0))
    fake.advance(pkg, 450.0)
    clock.tick(2.0)
    src2.read()
    assert src2.health().up
