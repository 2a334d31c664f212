"""Pods churning by the hundreds per minute: conservation holds in every interval, each
pod's exported total is exactly what the intervals gave it (no double count), and memory is
bounded by live + recently finished pods, not by how many ever ran."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from carbontrack.exporter.state import ContainerKey

from carbontrack.devcluster.exporter_process import ExporterProcess

from .conftest import (
    GIB,
    Node,
    assert_interval_conserved,
    totals,
)

PER_SECOND = 5  # 300 pods a minute started and finished
LIVE = 10
RETENTION_S = 10.0


def uid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-000000000000"


def test_churn_conserves_energy_and_bounds_memory(make_node: Callable[[], Node]) -> None:
    node = make_node()
    engine = node.engine(retention_s=RETENTION_S)
    live: list[int] = []
    born = 0
    for _ in range(LIVE):
        node.add_pod(uid(born), {"main": (0.5, GIB)})
        live.append(born)
        born += 1
    engine.collect()
    node_sum = 0.0
    given: dict[ContainerKey, float] = {}
    unalloc = 0.0
    peak_ledger = 0
    for cycle in range(60):  # a simulated minute at one cycle per second
        node.tick(1.0)
        node.package_joules(150.0 + cycle % 7, 120.0 + cycle % 5)
        for n in live:
            node.tree.advance_cpu(uid(n), "main", 0.3)
        node.tree.advance_system(0.5)
        r = engine.collect()
        assert r is not None
        assert_interval_conserved(r)
        node_sum += sum(r.node.values())
        unalloc += sum(r.unallocated.values())
        for key, per in r.containers.items():
            given[key] = given.get(key, 0.0) + sum(per.values())
        # exported totals are exactly the sum of what the intervals gave (no double count)
        for key, t in engine.ledger.containers.items():
            assert math.fsum(t.joules.values()) == pytest.approx(given[key], rel=1e-9)
        peak_ledger = max(peak_ledger, len(engine.ledger.containers))
        for n in live[:PER_SECOND]:
            node.remove_pod(uid(n))
        live = live[PER_SECOND:]
        for _ in range(PER_SECOND):
            node.add_pod(uid(born), {"main": (0.5, GIB)})
            live.append(born)
            born += 1
    print(f"[figures] churn: {born} pods, peak ledger {peak_ledger} containers, "
          f"final {len(engine.ledger.containers)}")
    assert born >= 300
    assert math.fsum(given.values()) + unalloc == pytest.approx(node_sum, rel=1e-9)
    assert math.fsum(engine.ledger.node.values()) == pytest.approx(node_sum, rel=1e-9)
    # live pods plus those finished within the retention window (one cycle of slack)
    bound = LIVE + PER_SECOND * (RETENTION_S + 2)
    assert peak_ledger <= bound
    assert len(engine.ledger.containers) <= bound


@pytest.mark.slow
def test_exporter_process_rss_is_bounded_under_sustained_churn(
        exporter_node: tuple[Path, object, object]) -> None:
    """Soak: a real exporter process, pods started and finished at ~300/min for 10 minutes
    (3,000 pods); RSS after the first minute may not grow by more than 30 %."""
    from carbontrack.sim.cgroups import FakeCgroupTree
    from carbontrack.sim.powercap import FakePowercap

    root, pc_, tree_ = exporter_node
    pc: FakePowercap = pc_  # type: ignore[assignment]
    tree: FakeCgroupTree = tree_  # type: ignore[assignment]
    ex = ExporterProcess(root, "--interval", "1", "--retention", "30")
    try:
        live: list[str] = []
        n = 0
        rss_after_warmup = 0
        last: dict[tuple[str, str, str, str], float] = {}
        gone = 0.0
        start = time.monotonic()
        soak_s = float(os.environ.get("CARBONTRACK_SOAK_S", "600"))
        while time.monotonic() - start < soak_s:
            for _ in range(PER_SECOND):
                u = uid(n)
                tree.add_pod(u, "besteffort", {"main": (0.0, 0)})
                live.append(u)
                n += 1
            for u in live[:-LIVE]:
                tree.remove_pod(u)
            live = live[-LIVE:]
            for u in live:
                tree.advance_cpu(u, "main", 0.05)
            pc.advance(pc.package_zone(0), 100.0)
            pc.advance(pc.package_zone(1), 80.0)
            time.sleep(1.0)
            if rss_after_warmup == 0 and time.monotonic() - start > 60:
                rss_after_warmup = ex.rss_bytes()
            m = ex.scrape()
            # containers dropped after the retention window leave the exposition with their
            # final value (scraped every second while retained): they still count
            cur = {(lab["pod_uid"], lab["container"], lab["component"], lab["method"]): v
                   for lab, v in m.get("carbontrack_container_energy_joules_total", [])}
            gone += sum(v for k, v in last.items() if k not in cur)
            last = cur
            node_j = totals(m, "carbontrack_node_energy_joules_total", "component")
            un = totals(m, "carbontrack_unallocated_energy_joules_total", "component")
            assert sum(cur.values()) + gone + sum(un.values()) == pytest.approx(
                sum(node_j.values()), rel=1e-9, abs=1e-6)
            assert len({k[0] for k in cur}) <= LIVE + PER_SECOND * 35 + 1
        assert ex.rss_bytes() <= rss_after_warmup * 1.3
        assert totals(ex.scrape(), "carbontrack_node_energy_joules_total", "component")["cpu"] > 0
    finally:
        assert ex.stop() == 0
