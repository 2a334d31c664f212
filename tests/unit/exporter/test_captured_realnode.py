"""The exporter's cgroup and /proc readers on files captured from the harness's REAL node
(kubelet + containerd + runc on a cgroup v1 host whose kernel mounts cpu and cpuacct apart),
checked against what the API server said about the same pods at capture time
(``capture.json``), not against anything CarbonTrack wrote. Captured by
scripts/capture_realnode_tree.py; provenance in tests/fixtures/captured/PROVENANCE.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from carbontrack.exporter.cgroups import CgroupReader, container_from_cgroup_path

TREE = Path(__file__).resolve().parents[2] / "fixtures" / "captured" / "realnode-v1-cgroupfs-containerd"


@pytest.fixture(scope="module")
def capture() -> dict[str, Any]:
    return dict(json.loads((TREE / "capture.json").read_text()))


def _ids(capture: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """container id -> (pod uid, QoS) as the API server reported them."""
    out = {}
    for pod in capture["pods"].values():
        for cid in pod["containers"].values():
            out[cid.split("://", 1)[1]] = (pod["uid"], pod["qos"].lower())
    return out


def test_discovery_finds_exactly_the_api_servers_pods_and_containers(capture: dict[str, Any]) -> None:
    reader = CgroupReader(TREE / "sys" / "fs" / "cgroup")
    assert reader.version == 1
    found = {c.id: (c.pod_uid, c.qos) for c in reader.discover() if c.id in _ids(capture)}
    assert found == _ids(capture)
    # the sandboxes (pause containers) are found too, one per pod
    pods = {c.pod_uid for c in reader.discover()}
    assert pods == {p["uid"] for p in capture["pods"].values()}


def test_cpu_time_is_the_kernels_counter_and_the_burner_burned(capture: dict[str, Any]) -> None:
    reader = CgroupReader(TREE / "sys" / "fs" / "cgroup")
    cgs = reader.discover()
    usage = reader.read(cgs)
    by_id = {c.id: c for c in cgs}
    burn = capture["pods"]["burn"]["containers"]["main"].split("://", 1)[1]
    idle = capture["pods"]["idle"]["containers"]["main"].split("://", 1)[1]
    for cid in (burn, idle):
        raw = Path(os.fsdecode(by_id[cid].dir)) / "cpuacct.usage"
        assert usage.containers[by_id[cid]] == int(raw.read_text()) / 1e9
    assert usage.containers[by_id[burn]] > 1.0  # seconds of a busy loop
    assert usage.containers[by_id[idle]] < 0.5  # sleep
    root = TREE / "sys" / "fs" / "cgroup" / "cpuacct" / "cpuacct.usage"
    assert usage.root_cpu_s == int(root.read_text()) / 1e9


def test_the_request_comes_from_the_cpu_hierarchy_where_cpuacct_is_mounted_apart(
        capture: dict[str, Any]) -> None:
    reader = CgroupReader(TREE / "sys" / "fs" / "cgroup")
    by_id = {c.id: c for c in reader.discover()}
    burn = capture["pods"]["burn"]["containers"]["main"].split("://", 1)[1]
    idle = capture["pods"]["idle"]["containers"]["main"].split("://", 1)[1]
    assert reader.cpu_request_cores(by_id[burn]) == 1.0  # requests.cpu: "1" -> shares 1024
    # best effort: the kubelet writes its minimum shares (2), which is no request at all
    assert (TREE / "sys/fs/cgroup/cpu" / Path(os.fsdecode(by_id[idle].dir)).relative_to(
        TREE / "sys/fs/cgroup/cpuacct") / "cpu.shares").read_text().strip() == "2"
    assert reader.cpu_request_cores(by_id[idle]) == 0.0


def test_every_captured_process_maps_to_its_pod_and_container(capture: dict[str, Any]) -> None:
    ids = _ids(capture)
    seen = set()
    for cgroup_file in sorted((TREE / "proc").glob("*/cgroup")):
        mapped = {container_from_cgroup_path(line.split(":", 2)[2])
                  for line in cgroup_file.read_text().splitlines() if line.count(":") >= 2}
        mapped.discard(None)
        assert len(mapped) == 1, (cgroup_file, mapped)  # every hierarchy agrees
        uid, cid = mapped.pop()  # type: ignore[misc]
        if cid in ids:
            assert ids[cid][0] == uid
            seen.add(cid)
    assert seen == set(ids)  # each container's process was captured and recognised
