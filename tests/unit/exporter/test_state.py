"""Durable ledger: round trip, restart continuity, corrupt files, retention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from carbontrack.exporter.state import Ledger, Owner, StateStore


def filled() -> Ledger:
    led = Ledger()
    led.add_node("cpu", "package-0", "measured", 1234.5)
    led.add_unallocated("cpu", 200.25)
    o = Owner("ml", "train-x", "Job", "train", "job-uid")
    led.add_container(("uid-a", "train"), o, "cpu", "measured", 1000.0, 0.1)
    led.add_container(("uid-a", "train"), Owner(), "cpu", "measured", 34.25, None)
    led.add_container(("uid-a", "train"), o, "gpu", "estimated", 7.0, 0.002)
    return led


def test_round_trip_is_exact(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state", "node-1")
    led = filled()
    store.save(led)
    back = store.load()
    assert back == led
    t = back.containers[("uid-a", "train")]
    assert t.joules == {("cpu", "measured"): 1034.25, ("gpu", "estimated"): 7.0}
    assert t.grams == {("cpu", "measured"): 0.1, ("gpu", "estimated"): 0.002}
    assert t.owner == Owner("ml", "train-x", "Job", "train", "job-uid")  # empty never overwrites
    assert not list((tmp_path / "state").glob(".*.tmp"))  # the temp file was renamed away


def test_missing_file_is_an_empty_ledger(tmp_path: Path) -> None:
    assert StateStore(tmp_path, "n").load() == Ledger()


@pytest.mark.parametrize("content", ["{not json", json.dumps({"version": 99}),
                                     json.dumps({"version": 1, "node": "other-node"})])
def test_unusable_file_is_set_aside_not_fatal(tmp_path: Path, content: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "ledger.json").write_text(content)
    assert StateStore(tmp_path, "node-1").load() == Ledger()
    assert (tmp_path / "ledger.json.corrupt").read_text() == content
    assert "starting from zero" in caplog.text


def test_retention_marks_then_drops(tmp_path: Path) -> None:
    led = filled()
    key = ("uid-a", "train")
    # wall time 5000 is what gets saved; retention runs on the monotonic clock (second number)
    assert led.update_liveness(set(), now=5000.0, mono=100.0, retention_s=60.0) == 0
    assert led.containers[key].finished_at == 5000.0
    assert led.update_liveness(set(), now=9000.0, mono=160.0, retention_s=60.0) == 0  # edge
    assert led.update_liveness({key}, now=9001.0, mono=161.0, retention_s=60.0) == 0
    assert led.containers[key].finished_at is None  # came back (restarted)
    led.update_liveness(set(), now=9100.0, mono=200.0, retention_s=60.0)
    assert led.update_liveness(set(), now=1.0, mono=260.5, retention_s=60.0) == 1
    assert led.containers == {}
    assert led.node == {("cpu", "package-0", "measured"): 1234.5}  # node totals never drop


def test_retention_window_restarts_after_a_restart(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "node-1")
    led = filled()
    led.update_liveness(set(), now=5000.0, mono=100.0, retention_s=60.0)
    store.save(led)
    back = store.load()  # a new process: its monotonic clock has another origin
    assert back.containers[("uid-a", "train")].finished_at == 5000.0
    assert back.update_liveness(set(), now=5001.0, mono=7.0, retention_s=60.0) == 0
    assert back.update_liveness(set(), now=5060.0, mono=66.0, retention_s=60.0) == 0
    assert back.update_liveness(set(), now=5062.0, mono=68.0, retention_s=60.0) == 1


def test_structure_changes_between_saves_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "node-1")
    led = filled()
    store.save(led)
    led.add_container(("uid-b", "web"), Owner("apps", "web-1"), "dram", "measured", 5.5, None)
    led.add_node("gpu", "GPU-1", "sampled", 9.0)
    store.save(led)  # the cached structure line must be rebuilt
    assert store.load() == led
    led.add_node("gpu", "GPU-1", "sampled", 1.0)  # values only
    store.save(led)
    back = store.load()
    assert back.node[("gpu", "GPU-1", "sampled")] == 10.0 and back == led


def test_truncated_values_are_detected(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "node-1")
    store.save(filled())
    head, body, _ = store.path.read_bytes().split(b"\n")
    store.path.write_bytes(head + b"\n" + body[:8] + b"\n")
    assert store.load() == Ledger()


def test_move_merges_totals_and_keeps_the_later_finish() -> None:
    """Ledger.move (late pod metadata): values add up into the target, each joule once;
    the merged entry is live if either was, else finished at the later time."""
    led = Ledger()
    job = Owner("ns", "p", "Job", "j", "job-uid")
    led.add_container(("u", "abcdef012345"), Owner(), "cpu", "measured", 3.0, 0.3)
    led.add_container(("u", "main"), job, "cpu", "measured", 2.0, 0.2)
    led.add_container(("u", "main"), job, "dram", "measured", 1.0, None)
    led.containers[("u", "abcdef012345")].finished_at = 200.0
    led.containers[("u", "main")].finished_at = 100.0
    v = led.structure_version
    led.move(("u", "abcdef012345"), ("u", "main"), job)
    assert list(led.containers) == [("u", "main")]
    t = led.containers[("u", "main")]
    assert t.joules == {("cpu", "measured"): 5.0, ("dram", "measured"): 1.0}
    assert t.grams == {("cpu", "measured"): pytest.approx(0.5, rel=1e-12)}
    assert (t.owner, t.finished_at) == (job, 200.0)
    assert led.structure_version > v
    led.add_container(("u", "x"), Owner(), "cpu", "measured", 1.0, None)  # live
    led.move(("u", "x"), ("u", "main"), job)
    assert led.containers[("u", "main")].finished_at is None
    assert led.containers[("u", "main")].joules[("cpu", "measured")] == 6.0
