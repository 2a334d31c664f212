"""Clock skew and steps on the exporter side (the operator side is in
test_prometheus_faults.py): a wall clock stepped back or forward by NTP must not lose,
invent or double count energy."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from .conftest import GIB, Node, assert_interval_conserved

A = "0a0a0a0a-1111-2222-3333-444444444444"
B = "0b0b0b0b-1111-2222-3333-444444444444"


@pytest.mark.parametrize("step_s", [-3600.0, -1.0, 0.0, 3600.0, 86400.0 * 365])
def test_wall_clock_steps_keep_energy_exact(make_node: Callable[[], Node], step_s: float) -> None:
    node = make_node()
    node.add_pod(A, {"train": (4.0, 8 * GIB)})
    node.add_pod(B, {"web": (1.0, 2 * GIB)})
    engine = node.engine()
    engine.collect()
    total = 0.0
    for i in range(6):
        node.mono += 10.0  # ten seconds really pass each cycle
        node.now += 10.0 if i != 3 else step_s  # cycle 3: NTP steps the wall clock
        node.package_joules(200.0 + i, 100.0)
        node.tree.advance_cpu(A, "train", 30.0)
        node.tree.advance_cpu(B, "web", 10.0)
        r = engine.collect()
        assert r is not None
        assert_interval_conserved(r)
        assert all(v >= 0 and math.isfinite(v) for v in r.node.values())
        total += 300.0 + i
    led = engine.ledger
    assert math.fsum(j for (c, _d, _m), j in led.node.items() if c == "cpu") == pytest.approx(total)
    ctr = math.fsum(math.fsum(t.joules.values()) for t in led.containers.values())
    assert ctr + math.fsum(led.unallocated.values()) == pytest.approx(total)
    g_per_kwh = node.catalogue.get("DE").g_per_kwh
    for t in led.containers.values():  # CO2e follows energy at the fixed DE factor, PUE 1
        for ck, j in t.joules.items():
            assert t.grams[ck] == pytest.approx(j / 3.6e6 * g_per_kwh, rel=1e-9)


def test_forward_clock_step_does_not_cut_the_retention_window(
        make_node: Callable[[], Node]) -> None:
    node = make_node()
    node.add_pod(A, {"train": (4.0, 8 * GIB)})
    node.add_pod(B, {"web": (1.0, 2 * GIB)})
    engine = node.engine(retention_s=600.0)
    engine.collect()
    node.tick(10)
    node.package_joules(200.0, 100.0)
    node.tree.advance_cpu(A, "train", 30.0)
    node.tree.advance_cpu(B, "web", 10.0)
    engine.collect()
    node.remove_pod(B)  # B finishes
    node.tick(10)
    engine.collect()
    node.now += 3600  # NTP steps the wall clock an hour forward; 5 real seconds pass
    node.mono += 5
    engine.collect()
    assert any(key[0] == B for key, _o, _v in engine.snapshot.containers)
