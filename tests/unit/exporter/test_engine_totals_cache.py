"""The engine keeps each container's ledger totals from cycle to cycle (a cost measure); a
container dropped after retention that comes back, or owner labels that change in the pod
cache, must still land in the ledger exactly. Also the relative-path CPU reads."""

from __future__ import annotations

import os
from typing import Any

import pytest
from carbontrack.exporter.attribution import IdlePolicy
from carbontrack.exporter.pods import PodMeta
from carbontrack.exporter.state import Owner

GIB = 1 << 30
A = "0a0a0a0a-1111-2222-3333-444444444444"
D = "0d0d0d0d-1111-2222-3333-444444444444"
CK = ("cpu", "measured")


def test_container_back_after_its_retention_drop_is_counted_in_the_ledger(
        make_node: Any) -> None:
    node = make_node()
    node.add_pod(A, "guaranteed", {"train": (4.0, 8 * GIB)})
    node.add_pod(D, "burstable", {"new": (1.0, GIB)})
    eng = node.engine(retention_s=30.0, policy=IdlePolicy.NONE)
    eng.collect()
    node.now += 10
    node.rapl(100.0, 0.0, 0.0, 0.0)
    node.tree.advance_cpu(D, "new", 4.0)
    assert eng.collect() is not None
    assert (D, "new") in eng.ledger.containers
    node.tree.remove_pod(D)
    for step in (10, 31):  # finished, then dropped after the 30 s window
        node.now += step
        eng.collect()
    assert (D, "new") not in eng.ledger.containers
    # the same pod UID and container name again (same ledger key, a new cgroup)
    node.add_pod(D, "burstable", {"new": (1.0, GIB)})
    node.tree.advance_cpu(D, "new", 8.0)
    node.tree.advance_cpu(A, "train", 8.0)
    node.now += 10
    node.rapl(160.0, 0.0, 0.0, 0.0)
    r = eng.collect()
    assert r is not None
    # busy 16 s of 8 CPUs x 10 s: 32 J active, half of it D's (idle policy none)
    assert r.containers[(D, "new")]["cpu"] == pytest.approx(16.0, rel=1e-12)
    assert eng.ledger.containers[(D, "new")].joules[CK] == r.containers[(D, "new")]["cpu"]
    # conservation on the ledger: containers + unallocated == node, over all intervals
    led = eng.ledger
    node_j = sum(v for k, v in led.node.items() if k[0] == "cpu")
    gone = 100.0 * 4 / 80  # D's first interval (4 busy s of 80), dropped with its old series
    ctr = sum(t.joules.get(CK, 0.0) for t in led.containers.values())
    assert ctr + led.unallocated["cpu"] + gone == pytest.approx(node_j, rel=1e-12)


def test_owner_labels_changed_in_the_pod_cache_reach_the_ledger(make_node: Any) -> None:
    node = make_node()
    node.add_pod(A, "guaranteed", {"train": (4.0, 8 * GIB)}, owner=("Job", "a", "uid-a"))
    eng = node.engine()
    eng.collect()
    for _ in range(2):
        node.now += 10
        node.rapl(100.0, 0.0, 0.0, 0.0)
        node.tree.advance_cpu(A, "train", 5.0)
        eng.collect()
    old = eng.ledger.containers[(A, "train")].owner
    assert old.owner_name == "a"
    pod = node.tree.pods[A]
    node.pods.put(PodMeta(A, Owner("ml", "train-b", "Job", "b", "uid-b"),
                          {c.id: c.name for c in pod.containers.values() if not c.pause},
                          {"train": (4.0, 8 * GIB)}))
    node.now += 10
    node.rapl(100.0, 0.0, 0.0, 0.0)
    node.tree.advance_cpu(A, "train", 5.0)
    eng.collect()
    t = eng.ledger.containers[(A, "train")]
    assert (t.owner.pod, t.owner.owner_name, t.owner.owner_uid) == ("train-b", "b", "uid-b")


def test_pod_cache_generation_moves_on_every_change(make_node: Any) -> None:
    node = make_node()
    cache = node.pods
    g0 = cache.generation
    meta = PodMeta(A, Owner("ml", "p"), {}, {})
    cache.put(meta)
    assert cache.generation == g0 + 1
    cache.replace_all([meta])
    assert cache.generation == g0 + 2
    cache.delete(A)
    assert cache.generation == g0 + 3
    cache.delete(A)  # nothing to delete: nothing changed
    assert cache.generation == g0 + 3


@pytest.mark.parametrize("version", [1, 2])
def test_cpu_files_are_relative_to_the_hierarchy_root(make_node: Any, version: int) -> None:
    node = make_node(version=version, driver="cgroupfs", runtime="crio")
    node.add_pod(A, "guaranteed", {"train": (4.0, 8 * GIB)})
    eng = node.engine()
    cgs = eng.cgroups.discover()
    assert cgs
    root = os.fsencode(eng.cgroups._cpu_root)
    for cg in cgs:
        assert not cg.cpu_rel.startswith(b"/")
        assert root + b"/" + cg.cpu_rel == cg.cpu_file
    node.tree.advance_cpu(A, "train", 3.0)
    usage = eng.cgroups.read(cgs)
    train = next(c for c in cgs if c.id == node.tree.pods[A].containers["train"].id
                 and not c.conmon)
    assert usage.containers[train] == pytest.approx(3.0, abs=1e-6)
