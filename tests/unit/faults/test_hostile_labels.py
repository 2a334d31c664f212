"""Oversized and hostile label values (quotes, backslashes, newlines, unicode, 63+ chars):
the exposition stays valid for promtool and Prometheus' own parser, and every value round-
trips exactly, so a hostile name can neither break a scrape nor forge another pod's series."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from carbontrack.exporter.pods import PodMeta
from carbontrack.exporter.server import ExpositionCache
from carbontrack.exporter.state import Owner

from carbontrack.devcluster.exporter_process import parse

from .conftest import GIB, Node, assert_scrape_conserved, promtool

HOSTILE = [
    'quote"} carbontrack_node_energy_joules_total{node="forged"} 1e9 #',
    "back\\slash\\",
    "new\nline\r\nand\ttab",
    "ünïcödé-训练-🔥-\u200b-zero-width",
    "x" * 253,  # DNS subdomain maximum; far past the 63-char label limit of names
    "",
    "# HELP fake\n# TYPE fake counter",
]


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_hostile_pod_names_keep_exposition_valid(make_node: Callable[[], Node], i: int) -> None:
    node = make_node()
    value = HOSTILE[i]
    uid = f"{i:08x}-1111-2222-3333-444444444444"
    other = f"{i:08x}-9999-2222-3333-444444444444"
    node.tree.add_pod(uid, "burstable", {"main": (1.0, GIB)})
    node.tree.add_pod(other, "burstable", {"main": (1.0, GIB)})
    pod = node.tree.pods[uid]
    node.pods.put(PodMeta(uid, Owner(value, value, "Job", value, value),
                          {c.id: value for c in pod.containers.values() if not c.pause},
                          {value: (1.0, GIB)}))
    node.pods.put(PodMeta(other, Owner("ml", "honest", "Job", "honest", "honest-uid"),
                          {c.id: "main" for c in node.tree.pods[other].containers.values()
                           if not c.pause}, {"main": (1.0, GIB)}))
    engine = node.engine()
    engine.collect()
    node.tick(10)
    node.package_joules(300.0, 100.0)
    node.tree.advance_cpu(uid, "main", 4.0)
    node.tree.advance_cpu(other, "main", 4.0)
    assert engine.collect() is not None

    body = ExpositionCache(lambda: engine.snapshot).render()
    check = subprocess.run([promtool(), "check", "metrics"], input=body, capture_output=True,
                           timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr  # parse errors and lint

    m = parse(body.decode())
    assert_scrape_conserved(m)
    series = m["carbontrack_container_energy_joules_total"]
    hostile = [lab for lab, _ in series if lab["pod_uid"] == uid]
    assert hostile and all(lab["pod"] == value and lab["namespace"] == value
                           and lab["owner_name"] == value and lab["owner_uid"] == value
                           for lab in hostile)
    assert {lab["container"] for lab in hostile} == {value}
    # no forged series: exactly the two pods, one node name
    assert {lab["pod_uid"] for lab, _ in series} == {uid, other}
    assert {lab["node"] for lab, _ in m["carbontrack_node_energy_joules_total"]} == {"node-1"}
    honest = sum(v for lab, v in series if lab["pod_uid"] == other)
    assert honest == pytest.approx(sum(v for lab, v in series if lab["pod_uid"] == uid))
