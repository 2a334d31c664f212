"""Slice boundaries (operator/slices.py) and the functional-unit selector rule
(operator/functional_unit.py): pure functions, by equality."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from carbontrack.operator.functional_unit import (
    FunctionalUnitError,
    from_annotations,
    increase,
    parse_selector,
)
from carbontrack.operator.long_running_kinds import KINDS, descendant_uids, workload_facts
from carbontrack.operator.prometheus import Sample
from carbontrack.operator.slice_accounting import owner_selector, slice_samples
from carbontrack.operator.slices import (
    Slice,
    contiguous,
    due_slices,
    grid_slice,
    parse_slice_key,
    slice_key,
    slice_start,
)

UTC = timezone.utc
H = 3600.0


def at(h: int, m: int = 0, s: int = 0) -> datetime:
    return datetime(2026, 12, 7, h, m, s, tzinfo=UTC)


def test_slices_lie_on_a_utc_grid_and_hold_their_start_not_their_end() -> None:
    assert slice_start(at(10, 59, 59), H) == at(10)
    assert slice_start(at(11), H) == at(11)  # a boundary opens the next slice
    assert grid_slice(at(11, 30), H) == Slice(at(11), at(12))
    assert slice_start(at(11, 0, 7), 5) == at(11, 0, 5)
    # any other zone's clock gives the same slice (UTC grid)
    cet = timezone(timedelta(hours=1))
    assert slice_start(datetime(2026, 12, 7, 12, 30, tzinfo=cet), H) == at(11)
    with pytest.raises(ValueError):
        slice_start(at(1), 0.5)


def test_a_slice_key_is_the_workload_uid_and_the_start() -> None:
    key = slice_key("6c1d-uid", at(11))
    assert key == f"6c1d-uid@{int(at(11).timestamp())}"
    assert parse_slice_key(key) == ("6c1d-uid", at(11))
    assert parse_slice_key("no-at-sign") is None


def test_due_slices_are_contiguous_from_creation_and_wait_for_the_final_scrape() -> None:
    created = at(9, 20)
    due = due_slices(created, None, at(12, 0, 30), H, settle_s=35)
    assert due == [Slice(at(9), at(10)), Slice(at(10), at(11))]  # 11-12 settles at 12:00:35
    assert due_slices(created, None, at(12, 0, 35), H, settle_s=35)[-1] == Slice(at(11), at(12))
    # from the end of the latest recorded slice: the next ones only, never it again
    assert due_slices(created, at(11), at(12, 0, 35), H, 35) == [Slice(at(11), at(12))]
    assert due_slices(created, at(12), at(12, 0, 35), H, 35) == []
    assert contiguous(due_slices(created, None, at(20), H, 0))
    assert len(due_slices(created, None, at(20), H, 0, limit=3)) == 3


def test_catch_up_starts_at_the_bound_also_from_an_older_record() -> None:
    # the operator was down past --slice-catchup: first = now - catch-up (13:20). With or
    # without the latest record (its end 10:00) found, the same slices are due
    bounded = at(13, 20)
    assert due_slices(bounded, at(10), at(16), H, 0) == due_slices(bounded, None, at(16), H, 0) \
        == [Slice(at(13), at(14)), Slice(at(14), at(15)), Slice(at(15), at(16))]


def test_a_deleted_workloads_last_slice_ends_at_the_deletion() -> None:
    due = due_slices(at(9, 20), None, at(11, 0, 10), H, 5, ended_at=at(10, 40))
    assert due == [Slice(at(9), at(10)), Slice(at(10), at(10, 40))]
    assert due_slices(at(9, 20), at(10, 40), at(11), H, 5, ended_at=at(10, 40)) == []
    # not before its own final scrape
    assert due_slices(at(9, 20), at(10), at(10, 40, 3), H, 5, ended_at=at(10, 40)) == []
    # deleted exactly on a boundary: the slice before is the last
    assert due_slices(at(9, 20), at(10), at(12), H, 5, ended_at=at(10)) == []


def test_a_new_slice_length_continues_from_the_old_slices_end() -> None:
    # hourly slices up to 10:00, then 40-minute slices (a grid of 40 min from the epoch)
    due = due_slices(at(9, 20), at(10), at(12, 1), 2400, 5)
    assert due[0].start == at(10) and contiguous(due)
    assert all(s.end.timestamp() % 2400 == 0 for s in due)
    assert not contiguous([Slice(at(9), at(10)), Slice(at(11), at(12))])


def sample(uid: str, value: float, **labels: str) -> Sample:
    return Sample({"pod_uid": uid, "node": "n1", "component": "cpu", "method": "measured",
                   **labels}, value)


def test_slice_energy_is_end_minus_start_per_series_and_telescopes() -> None:
    # pod a runs throughout, pod b starts inside the slice, pod c ended before it
    end = [sample("a", 50.0), sample("b", 7.0)]
    start = [sample("a", 20.0), sample("c", 99.0)]
    assert slice_samples(end, start) == [
        Sample({"node": "n1", "component": "cpu", "method": "measured"}, 37.0)]
    # three slices of one counter add up to its value at the end
    values = [0.0, 12.5, 30.25, 44.0]
    parts = [slice_samples([sample("a", v1)], [sample("a", v0)])[0].value
             for v0, v1 in itertools.pairwise(values)]
    assert sum(parts) == values[-1]
    with pytest.raises(Exception, match="went down"):
        slice_samples([sample("a", 1.0)], [sample("a", 2.0)])


def test_owner_selector_escapes_and_names_the_namespace() -> None:
    assert owner_selector("ns", ["u2", "u.1"]) == 'namespace="ns",owner_uid=~"u\\\\.1|u2"'


def test_functional_unit_selector_gets_the_workloads_namespace_forced_in() -> None:
    unit = from_annotations({"carbontrack.io/functional-unit": "token",
                             "carbontrack.io/functional-unit-query":
                                 'vllm:generation_tokens_total{model_name="llama", code=~"2.."}'},
                            "team-a")
    assert unit is not None and unit.unit == "token"
    assert unit.selector("team-a") == \
        'vllm:generation_tokens_total{namespace="team-a",model_name="llama",code=~"2.."}'
    assert unit.at_end("team-a", 60) == f"last_over_time({unit.selector('team-a')}[60s])"
    # its own namespace may be named; it is written once
    own = from_annotations({"carbontrack.io/functional-unit-query": 'reqs{namespace="team-a"}'}, "team-a")
    assert own is not None and own.selector("team-a") == 'reqs{namespace="team-a"}'
    assert from_annotations({}, "team-a") is None


@pytest.mark.parametrize("query", [
    'reqs{namespace="team-b"}', 'reqs{namespace=~"team-.*"}', 'reqs{namespace!="team-a"}',
    'reqs{__name__="x"}', 'sum(reqs)', 'reqs or other{namespace="x"}', 'reqs[5m]',
    'reqs{a="1"} + 1', 'reqs{a="1"', '{a="1"}', 'reqs{a=1}', 'reqs{a="\\q"}', "x" * 600,
])
def test_functional_unit_queries_that_could_read_elsewhere_are_refused(query: str) -> None:
    with pytest.raises(FunctionalUnitError, match="functional-unit-query"):
        from_annotations({"carbontrack.io/functional-unit-query": query}, "team-a")


def test_a_unit_name_is_checked_too() -> None:
    with pytest.raises(FunctionalUnitError, match="not a unit name"):
        from_annotations({"carbontrack.io/functional-unit": "<script>",
                          "carbontrack.io/functional-unit-query": "reqs"}, "ns")


def test_parse_selector_reads_escapes() -> None:
    assert parse_selector('m{a="x\\"y",b!~"z"}') == ("m", [("a", "=", 'x"y'), ("b", "!~", "z")])
    assert parse_selector("m") == ("m", [])


def test_units_increase_series_by_series_and_a_restarted_counter_counts_from_zero() -> None:
    a, b, c = {"pod": "a"}, {"pod": "b"}, {"pod": "c"}
    assert increase([(a, 150.0), (b, 30.0), (c, 5.0)], [(a, 100.0), (c, 40.0)]) == 50.0 + 30.0 + 5.0


def test_workload_facts_and_descendants() -> None:
    deploy = next(k for k in KINDS if k.kind == "Deployment")
    body = {"metadata": {"uid": "d1", "namespace": "ns", "name": "llm", "labels": {"team": "a"},
                         "annotations": {"carbontrack.io/functional-unit": "token", "other": "x"},
                         "creationTimestamp": "2026-12-07T09:20:00Z"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "s", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}}
    facts = workload_facts(deploy, body)
    assert (facts.uid, facts.replicas, facts.gpus_per_pod, facts.created_at) == ("d1", 2, 1, at(9, 20))
    assert facts.annotations == {"carbontrack.io/functional-unit": "token"}

    def obj(uid: str, owner: str | None) -> dict[str, object]:
        refs = [{"uid": owner, "controller": True}] if owner else []
        return {"metadata": {"uid": uid, "ownerReferences": refs}}

    objects = [obj("rs1", "d1"), obj("rs0", "d1"), obj("pod1", "rs1"), obj("other", "d2"),
               obj("x", "y"), obj("y", "x")]  # a cycle never reaches the root
    assert descendant_uids(objects, "d1") == {"d1", "rs0", "rs1", "pod1"}


def test_a_leaderworkersets_worker_sets_are_found_by_its_name_label() -> None:
    leader_sts = {"kind": "StatefulSet", "metadata": {"uid": "sts-l", "labels": {
        "leaderworkerset.sigs.k8s.io/name": "vllm"}, "ownerReferences": [{"uid": "lws-1", "controller": True}]}}
    worker_sts = {"kind": "StatefulSet", "metadata": {"uid": "sts-w", "labels": {
        "leaderworkerset.sigs.k8s.io/name": "vllm"}, "ownerReferences": [{"uid": "pod-l", "controller": True}]}}
    other = {"kind": "StatefulSet", "metadata": {"uid": "sts-x", "labels": {
        "leaderworkerset.sigs.k8s.io/name": "other"}}}
    objects = [leader_sts, worker_sts, other]
    assert descendant_uids(objects, "lws-1", lws_name="vllm") == {"lws-1", "sts-l", "sts-w"}
    assert descendant_uids(objects, "lws-1") == {"lws-1", "sts-l"}
