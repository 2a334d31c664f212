"""cgroup path grammar and discovery details (caching, late containers, removal)."""

from __future__ import annotations

from pathlib import Path

import pytest
from carbontrack.exporter.cgroups import CgroupReader, container_from_cgroup_path

from carbontrack.sim.cgroups import FakeCgroupTree

UID = "0a0a0a0a-1111-2222-3333-444444444444"
CID = "ab" * 32


@pytest.mark.parametrize(("path", "want"), [
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
     f"{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope", (UID, CID)),
    (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-conmon-{CID}.scope",
     (UID, CID)),
    (f"/kubepods/besteffort/pod{UID}/{CID}", (UID, CID)),
    (f"/kubepods/pod{UID}/docker-{CID}.scope", (UID, CID)),
    (f"/system.slice/docker-{CID}.scope", None),  # a container, but not a pod's
    ("/user.slice/user-1000.slice/session-1.scope", None),
    (f"/kubepods/pod{UID}", None),  # the pod itself, no container
])
def test_container_from_cgroup_path(path: str, want: tuple[str, str] | None) -> None:
    assert container_from_cgroup_path(path) == want


def test_container_added_to_a_running_pod_is_found_within_rescan_cycles(tmp_path: Path) -> None:
    tree = FakeCgroupTree(tmp_path / "sys")
    tree.add_pod(UID, "burstable", {"a": (1.0, 0)})
    reader = CgroupReader(tmp_path / "sys" / "fs" / "cgroup", rescan_cycles=3)
    first = reader.discover()
    assert len(first) == 2  # sandbox + a
    again = reader.discover()
    assert [id(c) for c in again] == [id(c) for c in first]  # parsed once, then reused
    new_id = tree.add_container(UID, "b", 0.5, 0)  # a restart / sidecar added later
    seen = [any(c.id == new_id for c in reader.discover()) for _ in range(3)]
    assert any(seen)
    tree.remove_pod(UID)
    cgs = reader.discover()
    assert cgs == [] and reader.read(cgs).containers == {}


def test_young_pods_container_list_is_reread_every_call(tmp_path: Path) -> None:
    """The runtime makes the pod's directory (and sandbox) before its containers'; a short
    pod (a 2-s Job) must not wait for a staggered rescan to have its container found."""
    from carbontrack.exporter.cgroups import YOUNG_POD_CYCLES

    tree = FakeCgroupTree(tmp_path / "sys")
    tree.add_pod(UID, "burstable", {"x": (0.0, 0)})
    tree.remove_container(UID, "x")  # the pod directory with only its sandbox, so far
    reader = CgroupReader(tmp_path / "sys" / "fs" / "cgroup", rescan_cycles=1000)
    assert len(reader.discover()) == 1
    main = tree.add_container(UID, "main", 1.0, 0)
    assert main in {c.id for c in reader.discover()}  # the very next call
    for _ in range(YOUNG_POD_CYCLES):
        reader.discover()
    late = tree.add_container(UID, "late", 1.0, 0)  # the pod is no longer young
    assert late not in {c.id for c in reader.discover()}  # staggered (1 in 1000 calls)
