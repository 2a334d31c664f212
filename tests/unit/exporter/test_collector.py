"""Exposition: golden file (checked with promtool), names/labels of the contract, and
conservation on the exported values themselves."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from carbontrack.exporter.engine import Engine
from carbontrack.exporter.server import ExpositionCache
from prometheus_client.parser import text_string_to_metric_families

GIB = 1 << 30
GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "exporter-golden" / "metrics.prom"
A = "0a0a0a0a-1111-2222-3333-444444444444"
B = "0b0b0b0b-1111-2222-3333-444444444444"


def scenario(make_node: Any) -> Engine:
    node = make_node(version=2, driver="systemd", runtime="containerd")
    node.add_pod(A, "guaranteed", {"train": (4.0, 8 * GIB)}, name="train-x",
                 owner=("Job", "train", "job-uid-1"))
    node.add_pod(B, "burstable", {"web": (1.0, 4 * GIB)}, namespace="apps", name="web-1",
                 owner=("ReplicaSet", "web-7d9", "rs-uid-2"))
    eng = node.engine(pue=1.2)
    eng.perf = lambda: 0.0  # durations are wall time; pin them for a byte-exact golden file
    eng.collect()
    node.now += 10
    node.rapl(1000.0, 600.0, 100.0, 60.0)
    node.tree.advance_cpu(A, "train", 20.0)
    node.tree.advance_cpu(B, "web", 10.0)
    node.tree.advance_system(10.0)
    eng.collect()
    return eng


def test_golden_exposition(make_node: Any) -> None:
    body = ExpositionCache(lambda: scenario(make_node).snapshot).render().decode()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(body)
    assert body == GOLDEN.read_text()


def test_golden_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing: apt-get install -y prometheus")
        pytest.skip("promtool missing: apt-get install -y prometheus")
    out = subprocess.run([promtool, "check", "metrics"], input=GOLDEN.read_bytes(),
                         capture_output=True, check=False)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    assert out.stdout == b"" and out.stderr == b""  # no lint warnings either


def test_exported_values_conserve_and_carry_contract_labels(make_node: Any) -> None:
    body = ExpositionCache(lambda: scenario(make_node).snapshot).render().decode()
    fams = {f.name: f for f in text_string_to_metric_families(body)}
    node = {c: 0.0 for c in ("cpu", "dram")}
    for s in fams["carbontrack_node_energy_joules"].samples:
        assert set(s.labels) == {"node", "component", "device", "method"}
        node[s.labels["component"]] += s.value
    ctr = {c: 0.0 for c in node}
    for s in fams["carbontrack_container_energy_joules"].samples:
        assert set(s.labels) == {"node", "namespace", "pod", "pod_uid", "container", "component",
                                 "method", "owner_kind", "owner_name", "owner_uid"}
        ctr[s.labels["component"]] += s.value
    un = {s.labels["component"]: s.value
          for s in fams["carbontrack_unallocated_energy_joules"].samples}
    assert node == {"cpu": 1600.0, "dram": 160.0}
    for comp in node:
        assert ctr[comp] + un[comp] == pytest.approx(node[comp], rel=1e-12)
    train = [s for s in fams["carbontrack_container_energy_joules"].samples
             if s.labels["container"] == "train" and s.labels["component"] == "cpu"]
    assert [(s.labels["owner_kind"], s.labels["owner_name"], s.labels["owner_uid"], s.value)
            for s in train] == [("Job", "train", "job-uid-1", 800 * 20 / 40 + 800 * 4 / 8)]
    assert {s.labels["source"]: s.value for s in fams["carbontrack_source_up"].samples} == {
        "rapl": 1.0, "cgroups": 1.0, "intensity": 1.0}
    assert [s.value for s in fams["carbontrack_pue"].samples] == [1.2]
    assert next(s.labels for s in fams["carbontrack_build_info"].samples)["version"]


def test_scrapes_between_cycles_reuse_one_render(make_node: Any) -> None:
    eng = scenario(make_node)
    cache = ExpositionCache(lambda: eng.snapshot)
    first = cache.render()
    assert cache.render() is first  # same bytes object: nothing recomputed per scrape
    eng.collect()
    assert cache.render() is not first


def test_fast_renderer_matches_generate_latest_byte_for_byte(make_node: Any) -> None:
    from carbontrack.exporter.collector import TextRenderer
    from carbontrack.exporter.server import registry_for
    from prometheus_client import generate_latest

    node = make_node(version=1, driver="cgroupfs", runtime="crio")
    node.add_pod(A, "burstable", {"train": (1.0, GIB)}, namespace='we"ird\\ns', name="p\nq",
                 owner=("Job", "j", "u"))
    node.add_pod(B, "besteffort", {"x": (0.0, 0)}, kube=False)
    eng = node.engine(pue=1.1)
    renderer = TextRenderer()
    for i in range(3):
        node.now += 7
        node.rapl(1234.5678 * (i + 1), 1e7, 0.1, 3.0)  # large and small values
        node.tree.advance_cpu(A, "train", 3.3)
        node.tree.advance_cpu(B, "x", 1.7)
        eng.collect()
        snap = eng.snapshot
        assert renderer.render(snap) == generate_latest(registry_for(lambda s=snap: s))
