"""The collection cycle against fake node trees, with the real RAPL and cgroup readers.

Every layout the kubelet produces (cgroup v1/v2 x systemd/cgroupfs x containerd/CRI-O/Docker)
must give the same exact joules per container; the invariant sum(containers) + unallocated
== node holds per component and interval.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from carbontrack.exporter.attribution import IdlePolicy
from carbontrack.exporter.engine import POD_SANDBOX, IntervalResult

GIB = 1 << 30

A = "0a0a0a0a-1111-2222-3333-444444444444"  # guaranteed training pod
B = "0b0b0b0b-1111-2222-3333-444444444444"  # burstable
C = "0c0c0c0c-1111-2222-3333-444444444444"  # besteffort
D = "0d0d0d0d-1111-2222-3333-444444444444"  # appears mid-interval

LAYOUTS = [(v, d, r) for v in (1, 2) for d in ("systemd", "cgroupfs")
           for r in ("containerd", "crio", "docker")]


def assert_conserved(r: IntervalResult) -> None:
    for comp, node_j in r.node.items():
        ctr = sum(v.get(comp, 0.0) for v in r.containers.values())
        assert ctr + r.unallocated.get(comp, 0.0) == pytest.approx(node_j, rel=1e-12, abs=1e-9)


def three_pods(node: Any) -> None:
    node.add_pod(A, "guaranteed", {"train": (4.0, 8 * GIB)}, name="train-x",
                 owner=("Job", "train", "job-uid-1"))
    node.add_pod(B, "burstable", {"web": (1.0, 4 * GIB), "sidecar": (0.0, 0)})
    node.add_pod(C, "besteffort", {"batch": (0.0, 0)})


@pytest.mark.parametrize(("version", "driver", "runtime"), LAYOUTS)
def test_exact_joules_in_every_cgroup_layout(make_node: Any, version: int, driver: str,
                                             runtime: str) -> None:
    node = make_node(version=version, driver=driver, runtime=runtime)
    three_pods(node)
    eng = node.engine()
    assert eng.collect() is None  # baseline
    node.now += 10
    node.rapl(1000.0, 600.0, 100.0, 60.0)
    conmon = 1.0 if runtime == "crio" else 0.0  # CRI-O's monitor of "train" is charged to it
    node.tree.advance_cpu(A, "train", 20.0 - conmon, conmon_seconds=conmon)
    node.tree.advance_cpu(B, "web", 10.0)
    node.tree.advance_cpu(C, "batch", 6.0)
    node.tree.advance_system(4.0)  # root busy = 40 s of 8 CPUs x 10 s: 50 %
    r = eng.collect()
    assert r is not None
    assert r.node == {"cpu": 1600.0, "dram": 160.0}
    # cpu: 800 J active by CPU share of the 40 busy seconds, 800 J idle by requests of 8 CPUs
    # dram: 80 J active by CPU share, 80 J idle by memory requests of 64 GiB
    assert r.containers == {
        (A, "train"): {"cpu": 800 * 20 / 40 + 800 * 4 / 8, "dram": 80 * 20 / 40 + 80 * 8 / 64},
        (B, "web"): {"cpu": 800 * 10 / 40 + 800 * 1 / 8, "dram": 80 * 10 / 40 + 80 * 4 / 64},
        (C, "batch"): {"cpu": 800 * 6 / 40, "dram": 80 * 6 / 40},
    }
    assert r.containers[(A, "train")]["cpu"] == 800.0
    assert r.unallocated == pytest.approx({"cpu": 380.0, "dram": 73.0}, rel=1e-12)
    assert_conserved(r)
    # the ledger carries the owner labels for the operator
    t = eng.ledger.containers[(A, "train")]
    assert (t.owner.namespace, t.owner.pod, t.owner.owner_kind, t.owner.owner_name,
            t.owner.owner_uid) == ("ml", "train-x", "Job", "train", "job-uid-1")
    # the sandbox and system.slice (incl. a Docker container outside Kubernetes) get nothing
    assert {k[1] for k in eng.ledger.containers} == {"train", "web", "batch"}


@pytest.mark.parametrize(("version", "driver", "runtime"),
                         [(1, "cgroupfs", "docker"), (2, "systemd", "crio")])
def test_without_kube_pods_are_uid_only_and_pause_is_pod(make_node: Any, version: int,
                                                          driver: str, runtime: str) -> None:
    node = make_node(version=version, driver=driver, runtime=runtime)
    node.add_pod(A, "guaranteed", {"train": (2.0, 8 * GIB)}, kube=False)
    eng = node.engine(kube=False, policy=IdlePolicy.NONE, sandbox_read_cycles=1)
    eng.collect()
    node.now += 5
    node.rapl(400.0, 0.0, 0.0, 0.0)
    node.tree.advance_cpu(A, "train", 8.0)
    node.tree.advance_cpu(A, "POD", 0.5)  # the pause process
    node.tree.advance_system(11.5)  # 20 busy s of 40: 50 %
    r = eng.collect()
    assert r is not None
    short = node.tree.pods[A].containers["train"].id[:12]
    assert r.containers == {(A, short): {"cpu": 200 * 8 / 20}, (A, POD_SANDBOX): {"cpu": 5.0}}
    assert eng.ledger.containers[(A, short)].owner.namespace == ""
    assert_conserved(r)


def test_sandbox_usage_read_rarely_is_attributed_later_not_lost(make_node: Any) -> None:
    node = make_node()
    node.add_pod(A, "guaranteed", {"train": (0.0, 0)})
    eng = node.engine(policy=IdlePolicy.NONE, sandbox_read_cycles=3)
    eng.collect()
    pause_j = 0.0
    for _ in range(3):  # one of three cycles reads the sandbox
        node.now += 10
        node.rapl(80.0, 0.0, 0.0, 0.0)
        node.tree.advance_cpu(A, "POD", 1.0)
        node.tree.advance_cpu(A, "train", 7.0)
        r = eng.collect()
        assert r is not None
        assert_conserved(r)
        pause_j += r.containers.get((A, POD_SANDBOX), {}).get("cpu", 0.0)
    assert pause_j > 0.0  # its 3 s were charged when read


def test_no_kube_reads_cpu_requests_from_v1_shares(make_node: Any) -> None:
    node = make_node(version=1, driver="systemd", runtime="containerd")
    node.add_pod(A, "guaranteed", {"train": (2.0, 8 * GIB)}, kube=False)
    eng = node.engine(kube=False)
    eng.collect()
    node.now += 10
    node.rapl(800.0, 0.0, 0.0, 0.0)  # idle node: all 800 J idle
    r = eng.collect()
    assert r is not None
    short = node.tree.pods[A].containers["train"].id[:12]
    assert r.containers == {(A, short): {"cpu": 800 * 2 / 8}}  # 2 of 8 CPUs reserved


def test_pods_appearing_and_disappearing_mid_interval(make_node: Any) -> None:
    node = make_node()
    three_pods(node)
    eng = node.engine(retention_s=30.0)
    eng.collect()
    node.tree.advance_cpu(C, "batch", 6.0)
    node.tree.remove_pod(C)  # C ran 6 s, then finished before the cycle: its cgroup is gone
    node.add_pod(D, "burstable", {"new": (0.0, 0)})
    node.tree.advance_cpu(D, "new", 4.0)  # D started after the baseline: all 4 s are this interval's
    node.tree.advance_cpu(A, "train", 10.0)
    node.now += 10
    node.rapl(800.0, 0.0, 0.0, 0.0)
    r = eng.collect()
    assert r is not None
    # root busy = 20 s of 80: 200 J active; idle 600 J by requests (A 4 cores, B 1 core)
    assert r.containers == {
        (A, "train"): {"cpu": 200 * 10 / 20 + 600 * 4 / 8},
        (B, "web"): {"cpu": 600 * 1 / 8},
        (D, "new"): {"cpu": 200 * 4 / 20},
    }
    assert r.unallocated["cpu"] == pytest.approx(200 * 6 / 20 + 600 * 3 / 8)  # C's share + spare
    assert_conserved(r)
    # C never got energy, so no series; D's series exists from its first interval
    assert (C, "batch") not in eng.ledger.containers
    # a finished pod's series stay for the retention window, then go
    node.tree.remove_pod(D)
    node.now += 10
    eng.collect()
    assert eng.ledger.containers[(D, "new")].finished_at == node.now
    node.now += 31
    eng.collect()
    assert (D, "new") not in eng.ledger.containers
    assert (A, "train") in eng.ledger.containers


def test_rapl_wrap_and_duplicate_mmio_zone_count_once(make_node: Any) -> None:
    node = make_node(mmio_duplicate=True)
    three_pods(node)
    p = node.powercap
    rng = 262_143_328_850
    p.set_energy_uj(p.package_zone(1), rng - 100_000_000)  # 100 J before the wrap
    eng = node.engine()
    eng.collect()
    node.now += 10
    node.rapl(0.0, 300.0, 0.0, 0.0)  # wraps through max_energy_range_uj
    assert p.energy_uj(p.package_zone(1)) == 200_000_000
    r = eng.collect()
    assert r is not None
    assert r.node == {"cpu": 300.0, "dram": 0.0}
    assert eng.ledger.node[("cpu", "package-1", "measured")] == 300.0
    assert not any("mmio" in dev for (_, dev, _) in eng.ledger.node)
    assert_conserved(r)


def test_emissions_integrate_per_interval(make_node: Any, catalogue: Any) -> None:
    node = make_node()
    node.add_pod(A, "guaranteed", {"train": (8.0, 0)})
    eng = node.engine(policy=IdlePolicy.RESERVED, pue=1.5, zone="DE")
    eng.collect()
    node.now += 10
    node.rapl(3600.0, 0.0, 0.0, 0.0)  # 1 Wh, an idle node fully reserved by A
    eng.collect()
    g = catalogue.get("DE").g_per_kwh
    t = eng.ledger.containers[(A, "train")]
    assert t.joules == {("cpu", "measured"): 3600.0}
    assert t.grams[("cpu", "measured")] == pytest.approx(g * 1.5 / 1000, rel=1e-12)
    assert eng.snapshot.intensity is not None and eng.snapshot.intensity[3] == g


def test_failing_source_is_missing_series_and_up_zero(make_node: Any) -> None:
    node = make_node()
    three_pods(node)
    eng = node.engine()
    eng.collect()
    node.powercap.remove(node.powercap.sub_zone(1, "dram"))  # driver unload mid-run
    node.now += 10
    node.powercap.advance(node.powercap.package_zone(0), 100.0)
    node.powercap.advance(node.powercap.package_zone(1), 150.0)
    r = eng.collect()
    assert r is not None
    status = dict(eng.snapshot.sources)
    assert status["rapl"].up is False and "dram-1" in status["rapl"].message
    assert status["cgroups"].up is True
    assert r.node == {"cpu": 250.0, "dram": 0.0}  # the other zones still count
    assert_conserved(r)


@pytest.mark.parametrize("seed", range(12))
def test_conservation_property_over_random_trees(make_node: Any, seed: int) -> None:
    """INVARIANT over random layouts, pods, usage, churn and energy: per interval and
    component, sum(containers) + unallocated == node; ledger totals likewise."""
    rng = random.Random(seed)
    v, d, rt = rng.choice(LAYOUTS)
    node = make_node(version=v, driver=d, runtime=rt)
    policy = rng.choice(list(IdlePolicy))
    uids: list[str] = []

    def new_pod() -> None:
        uid = f"{rng.getrandbits(32):08x}-0000-4000-8000-{rng.getrandbits(48):012x}"
        qos = rng.choice(["guaranteed", "burstable", "besteffort"])
        ctrs = {f"c{i}": (rng.choice([0.0, 0.5, 2.0]), rng.choice([0, GIB]))
                for i in range(rng.randint(1, 3))}
        node.add_pod(uid, qos, ctrs, kube=rng.random() < 0.7)
        uids.append(uid)

    for _ in range(rng.randint(0, 8)):
        new_pod()
    eng = node.engine(policy=policy, kube=rng.random() < 0.5)
    eng.collect()
    for _ in range(4):
        for _ in range(rng.randint(0, 2)):
            new_pod()
        if uids and rng.random() < 0.4:
            node.tree.remove_pod(uids.pop(rng.randrange(len(uids))))
        for uid in uids:
            for name in list(node.tree.pods[uid].containers):
                node.tree.advance_cpu(uid, name, rng.uniform(0, 5))
        node.tree.advance_system(rng.uniform(0, 3))
        node.now += rng.uniform(1, 10)
        node.rapl(*(rng.uniform(0, 2000) for _ in range(4)))
        r = eng.collect()
        assert r is not None
        assert_conserved(r)
        assert all(j >= 0 for v in r.containers.values() for j in v.values())
    led = eng.ledger
    for comp in ("cpu", "dram"):
        node_j = sum(j for (c, _, _), j in led.node.items() if c == comp)
        ctr_j = sum(j for t in led.containers.values() for (c, _), j in t.joules.items()
                    if c == comp)
        assert ctr_j + led.unallocated.get(comp, 0.0) == pytest.approx(node_j, rel=1e-9)


STATIC = "6f1c2b9e0d8a4c7f9e3b5a1d2c4e6f80"  # a static pod's UID: 32 hex digits, no dashes


@pytest.mark.parametrize(("version", "driver", "runtime"), LAYOUTS)
def test_static_pod_is_attributed_with_its_mirror_pods_labels(
        make_node: Any, version: int, driver: str, runtime: str) -> None:
    """The kubelet names a static pod's cgroups by its own UID; the API's mirror pod has
    another metadata.uid and the static one in kubernetes.io/config.mirror. The container
    gets the mirror's namespace/pod/owner labels and its energy."""
    from carbontrack.exporter.pods import pod_meta

    node = make_node(version=version, driver=driver, runtime=runtime)
    node.tree.add_pod(STATIC, "burstable", {"etcd": (1.0, 0)})
    etcd = node.tree.pods[STATIC].containers["etcd"]
    node.pods.put(pod_meta({
        "metadata": {"uid": "0b7f8c1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e", "namespace": "kube-system",
                     "name": "etcd-node-1",
                     "annotations": {"kubernetes.io/config.mirror": STATIC},
                     "ownerReferences": [{"kind": "Node", "name": "node-1", "uid": "n-1",
                                          "controller": True}]},
        "spec": {"containers": [{"name": "etcd", "resources": {"requests": {"cpu": "1"}}}]},
        "status": {"containerStatuses": [{"name": "etcd",
                                          "containerID": f"containerd://{etcd.id}"}]},
    }))
    eng = node.engine(policy=IdlePolicy.NONE)
    eng.collect()
    node.now += 10
    node.rapl(800.0, 0.0, 0.0, 0.0)
    node.tree.advance_cpu(STATIC, "etcd", 10.0)
    node.tree.advance_system(30.0)  # 40 busy s of 80: 50 %
    r = eng.collect()
    assert r is not None
    assert r.containers == {(STATIC, "etcd"): {"cpu": 400 * 10 / 40}}
    t = eng.ledger.containers[(STATIC, "etcd")]
    assert (t.owner.namespace, t.owner.pod, t.owner.owner_kind, t.owner.owner_name) == (
        "kube-system", "etcd-node-1", "Node", "node-1")
    assert_conserved(r)
