"""FakeCgroupTree.advance_cpu_many leaves the same files as one advance_cpu per container."""

from __future__ import annotations

from pathlib import Path

from carbontrack.sim.cgroups import FakeCgroupTree

UIDS = ("0000aaaa-0000-4000-8000-000000000001", "0000aaaa-0000-4000-8000-000000000002")


def _tree(root: Path) -> FakeCgroupTree:
    tree = FakeCgroupTree(root, version=2, driver="systemd", runtime="containerd")
    for uid in UIDS:
        tree.add_pod(uid, "burstable", {"main": (0.5, 1 << 30), "side": (0.1, 1 << 20)})
    return tree


def _cpu_files(tree: FakeCgroupTree) -> dict[str, str]:
    return {str(p.relative_to(tree.root)): p.read_text() for p in sorted(tree.root.rglob("cpu.stat"))}


def test_batch_charge_writes_what_single_charges_write(tmp_path: Path) -> None:
    one, many = _tree(tmp_path / "one"), _tree(tmp_path / "many")
    charges = {(UIDS[0], "main"): 1.25, (UIDS[1], "side"): 0.000_5, (UIDS[1], "main"): 3.0}
    for (uid, name), seconds in charges.items():
        one.advance_cpu(uid, name, seconds)
    many.advance_cpu_many(charges)
    assert _cpu_files(many) == _cpu_files(one)
    assert many.root_cpu_seconds == one.root_cpu_seconds == 1.25 + 0.000_5 + 3.0
    assert "usage_usec 1250000\n" in many.container_dir(UIDS[0], "main").joinpath("cpu.stat").read_text()
