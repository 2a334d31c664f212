"""RaplSource on powercap trees captured from real machines (tests/fixtures/captured,
provenance and licence in PROVENANCE.md there). Expected values are the published files'
contents; each test copies the tree before moving a counter."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from carbontrack.sources.rapl import RaplSource

CAPTURED = Path(__file__).parents[2] / "fixtures" / "captured"
# prometheus/procfs testdata/fixtures.ttar and node_exporter collector/fixtures/sys.ttar
PKG0_RAW_UJ = 240_422_366_267
CORE0_RAW_UJ = 118_821_284_256
RANGE_UJ = 262_143_328_850


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _copy(tree: str, tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    shutil.copytree(CAPTURED / tree / "sys", root)
    return root


def test_procfs_tree_zones_with_hex_index(tmp_path: Path):
    root = _copy("procfs-sysfs-powercap", tmp_path)
    src = RaplSource(root, clock=Clock())
    got = [(z.key, z.kind, z.socket, z.device, z.max_range_uj, z.tdp_watts) for z in src.zones]
    assert got == [
        ("intel-rapl:0:0", "core", 0, "core-0", RANGE_UJ, None),
        ("intel-rapl:0", "package", 0, "package-0", RANGE_UJ, 95.0),
        ("intel-rapl:a", "package", 10, "package-10", RANGE_UJ, 95.0),
    ]
    assert src.skipped == []
    assert src.health().up and src.health().message == ""


def test_procfs_tree_reads_energy_per_zone(tmp_path: Path):
    root = _copy("procfs-sysfs-powercap", tmp_path)
    clock = Clock()
    src = RaplSource(root, clock=clock)
    assert {r.device: r.joules for r in src.read()} == {"package-0": 0.0, "package-10": 0.0}
    pc = root / "class" / "powercap"
    (pc / "intel-rapl:0" / "energy_uj").write_text(f"{PKG0_RAW_UJ + 45_500_000}\n")
    (pc / "intel-rapl:a" / "energy_uj").write_text(f"{PKG0_RAW_UJ + 1_000_000}\n")
    (pc / "intel-rapl:0:0" / "energy_uj").write_text(f"{CORE0_RAW_UJ + 30_000_000}\n")
    clock.now = 1.0
    assert {r.device: r.joules for r in src.read()} == {"package-0": 45.5, "package-10": 1.0}
    assert {r.device: r.joules for r in src.read_detail()} == {"core-0": 30.0}


def test_node_exporter_tree_wraps_at_the_published_range(tmp_path: Path):
    root = _copy("node_exporter-sys-powercap", tmp_path)
    clock = Clock()
    src = RaplSource(root, clock=clock)
    assert [(z.key, z.device) for z in src.zones] == [("intel-rapl:0:0", "core-0"), ("intel-rapl:0", "package-0")]
    # 21,721 J more than the counter's headroom is past the range: it wraps to 0.0 + x.
    to_range_j = (RANGE_UJ - PKG0_RAW_UJ) / 1e6  # 21720.962583 J
    wrapped_uj = 1_234_567
    (root / "class/powercap/intel-rapl:0/energy_uj").write_text(f"{wrapped_uj}\n")
    clock.now = 60.0  # 362 W average: a wrap, not a reset
    got = {r.device: r.joules for r in src.read()}
    assert got["package-0"] == pytest.approx(to_range_j + wrapped_uj / 1e6, abs=1e-6)
    assert got["package-0"] == pytest.approx(21722.19715, abs=1e-5)
