"""cgroup path grammar and discovery details (caching, late containers, removal)."""

from __future__ import annotations

from pathlib import Path

import pytest
from carbontrack.exporter.cgroups import CgroupReader, container_from_cgroup_path

from carbontrack.sim.cgroups import FakeCgroupTree

UID = "0a0a0a0a-1111-2222-3333-444444444444"
CID = "ab" * 32
STATIC = "6f1c2b9e0d8a4c7f9e3b5a1d2c4e6f80"  # a static pod's UID (kubelet config hash)


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
    # a static pod: the kubelet's UID is an MD5 of the manifest, 32 hex digits, no dashes
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC}.slice/"
     f"cri-containerd-{CID}.scope", (STATIC, CID)),
    (f"/kubepods.slice/kubepods-pod{STATIC}.slice/crio-{CID}.scope", (STATIC, CID)),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{STATIC}.slice/"
     f"docker-{CID}.scope", (STATIC, CID)),
    (f"/kubepods/burstable/pod{STATIC}/{CID}", (STATIC, CID)),
    (f"/kubepods/pod{STATIC}/crio-conmon-{CID}", (STATIC, CID)),
    (f"/kubepods/besteffort/pod{STATIC.upper()}/{CID}", (STATIC, CID)),  # lower-cased
    # neither a UUID nor 32 hex digits: not a pod directory
    (f"/kubepods/burstable/pod{STATIC[:31]}/{CID}", None),
    (f"/kubepods/burstable/pod{STATIC}0/{CID}", None),
    (f"/kubepods/burstable/pod{'g' * 32}/{CID}", None),
])
def test_container_from_cgroup_path(path: str, want: tuple[str, str] | None) -> None:
    assert container_from_cgroup_path(path) == want


LAYOUTS = [(v, d, r) for v in (1, 2) for d in ("systemd", "cgroupfs")
           for r in ("containerd", "crio", "docker")]


@pytest.mark.parametrize(("version", "driver", "runtime"), LAYOUTS)
@pytest.mark.parametrize("qos", ["guaranteed", "burstable", "besteffort"])
def test_static_and_api_pods_are_found_in_every_layout(
        tmp_path: Path, version: int, driver: str, runtime: str, qos: str) -> None:
    """A static pod's 32-digit UID and an API pod's UUID side by side, in the tree walk and in
    /proc/<pid>/cgroup, for every cgroup version, driver and runtime the tree writer knows."""
    proc = tmp_path / "proc"
    tree = FakeCgroupTree(tmp_path / "sys", version=version, driver=driver, runtime=runtime,
                          procfs_root=proc)
    tree.add_pod(STATIC, qos, {"etcd": (0.1, 0)})
    tree.add_pod(UID, qos, {"main": (0.1, 0)})
    reader = CgroupReader(tmp_path / "sys" / "fs" / "cgroup")
    found = reader.discover()
    want = {(uid, c.id) for uid in (STATIC, UID) for c in tree.pods[uid].containers.values()}
    assert {(c.pod_uid, c.id) for c in found} == want  # sandboxes included
    assert {c.qos for c in found} == {qos}
    etcd = tree.pods[STATIC].containers["etcd"]
    paths = [line.split(":", 2)[-1] for line in
             (proc / str(etcd.pid) / "cgroup").read_text().splitlines()]
    assert (STATIC, etcd.id) in [container_from_cgroup_path(p) for p in paths]


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
