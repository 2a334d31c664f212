"""The operator's record (pure part): names, sharding, entries, parsing of corrupt input."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from carbontrack.operator.jobs import USER_ANNOTATIONS, job_facts, operator_owned

from carbontrack.core.errors import ConfigError
from carbontrack.core.records import (
    SHARDS,
    RecordEntry,
    build_entry,
    days_between,
    entry_as_job,
    new_object,
    object_name,
    parse_object,
    record_day,
    shard_of,
)
from carbontrack.reports.sources_cluster import IdentityKeys, job_to_line

T0 = datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc)
T1 = datetime(2027, 1, 1, 0, 15, tzinfo=timezone.utc)


def entry(uid: str = "u-1", **changes: Any) -> dict[str, Any]:
    data = build_entry(
        uid=uid, namespace="ml", name="train", kind="Job", outcome="Complete",
        started_at=T0, finished_at=T1, accounted_at=T1, co2e_grams=12.5, energy_kwh=0.05,
        labels={"team": "nlp", "carbontrack.io/model": "bert"}, budgets=frozenset({"ml/b"}),
        annotations={"carbontrack.io/co2e-grams": "12.5", "carbontrack.io/energy-kwh": "0.05",
                     "carbontrack.io/method": "estimated", "carbontrack.io/grid-zone": "DE",
                     "carbontrack.io/intensity-g-per-kwh": "250",
                     "carbontrack.io/accounted-at": "2027-01-01T00:15:00Z",
                     "carbontrack.io/report": json.dumps({
                         "job": {"uid": uid, "outcome": "Complete"},
                         "energyKwhByComponent": {"cpu": 0.04, "dram": 0.01},
                         "pue": {"n1": 1.0}, "window": {"start": "2026-12-31T23:30:00Z",
                                                         "end": "2027-01-01T00:15:00Z"}})},
        inputs={"carbontrack.io/mlflow-run-id": "run-7"},
        template={"nodeSelector": {"node.kubernetes.io/instance-type": "m5.large"},
                  "containers": [{"resources": {"requests": {"cpu": "2"}}}]},
        parallelism=2, queries={"energy": "sum(x)"},
    )
    data.update(changes)
    return data


def test_names_labels_and_days_are_utc_and_dns_safe() -> None:
    assert record_day(T1) == "2027-01-01"
    assert record_day(datetime(2027, 1, 1, 0, 30, tzinfo=timezone.utc).astimezone()) == "2027-01-01"
    assert object_name("2027-01-01", 3) == "jobs-2027-01-01-s03"
    assert object_name("2027-01-01", 3, 2) == "jobs-2027-01-01-s03-2"
    assert days_between(T0, T1) == ["2026-12-31", "2027-01-01"]
    obj = new_object("ml", "2027-01-01", 3, 0, {"u-1": entry()})
    assert obj["metadata"] == {"name": "jobs-2027-01-01-s03", "namespace": "ml",
                               "labels": {"carbontrack.io/record": "jobs", "carbontrack.io/day": "2027-01-01",
                                          "carbontrack.io/month": "2027-01"}}
    assert obj["spec"]["day"] == "2027-01-01" and obj["spec"]["entries"]["u-1"]["co2eGrams"] == 12.5


def test_shards_spread_uids_evenly_and_stably() -> None:
    uids = [f"0000{i:04x}-1111-2222-3333-444455556666" for i in range(3200)]
    counts = [0] * SHARDS
    for uid in uids:
        counts[shard_of(uid)] += 1
    assert shard_of(uids[0]) == shard_of(uids[0])
    assert min(counts) > 3200 / SHARDS * 0.7 and max(counts) < 3200 / SHARDS * 1.3


def test_entry_round_trips_and_rebuilds_a_report_line() -> None:
    parsed = parse_object(new_object("ml", "2027-01-01", 3, 0, {"u-1": entry()}))
    assert parsed.errors == []
    rec = parsed.entries["u-1"]
    assert (rec.name, rec.co2e_grams, rec.energy_kwh, rec.finished_at) == ("train", 12.5, 0.05, T1)
    assert rec.budgets == frozenset({"ml/b"}) and rec.labels["team"] == "nlp"
    line = job_to_line(entry_as_job(rec), IdentityKeys())
    assert not hasattr(line, "reason"), line
    assert line.job_uid == "u-1" and line.model == "bert" and line.team == "nlp"  # type: ignore[union-attr]
    assert line.cpu_kwh == 0.04 and line.dram_kwh == 0.01 and line.location_kgco2e == 0.0125  # type: ignore[union-attr]
    assert line.mlflow_run_id == "run-7" and line.cpu_cores_reserved == 4.0  # type: ignore[union-attr]
    assert line.instance_type == "m5.large" and line.status == "Complete"  # type: ignore[union-attr]


@pytest.mark.parametrize(("changes", "message"), [
    ({"co2eGrams": -1}, "co2eGrams -1"),
    ({"co2eGrams": "12"}, "co2eGrams '12'"),
    ({"energyKwh": float("nan")}, "energyKwh nan"),
    ({"finishedAt": "yesterday"}, "finishedAt 'yesterday'"),
    ({"accountedAt": None}, "accountedAt is missing"),
    ({"job": {"uid": "other"}}, "job.uid does not match"),
    ({"labels": ["team"]}, "labels/annotations must be maps"),
])
def test_a_corrupted_entry_is_reported_by_uid_and_the_rest_still_count(
        changes: dict[str, Any], message: str) -> None:
    obj = new_object("ml", "2027-01-01", 3, 0, {"u-1": entry(**changes), "u-2": entry("u-2")})
    parsed = parse_object(obj)
    assert list(parsed.entries) == ["u-2"]
    assert len(parsed.errors) == 1
    text = str(parsed.errors[0])
    assert "'u-1'" in text and message in text and "written only by the operator" in text


def test_entries_that_are_not_a_map_are_an_error_not_a_crash() -> None:
    obj = new_object("ml", "2027-01-01", 3, 0, {})
    obj["spec"]["entries"] = ["u-1"]
    parsed = parse_object(obj)
    assert parsed.entries == {} and "spec.entries is not a map" in str(parsed.errors[0])
    with pytest.raises(ConfigError, match="entry is not an object"):
        RecordEntry.from_dict("u-1", "ml", "nope")  # type: ignore[arg-type]


def test_only_user_input_annotations_are_users_to_write() -> None:
    assert not operator_owned("carbontrack.io/expected-duration")
    assert not operator_owned("example.com/anything")
    for key in ("carbontrack.io/accounted-at", "carbontrack.io/accounted-uid", "carbontrack.io/co2e-grams",
                "carbontrack.io/report", "carbontrack.io/suspended-by", "carbontrack.io/budgets",
                "carbontrack.io/anything-new"):
        assert operator_owned(key), key
    assert all(k.startswith("carbontrack.io/") for k in USER_ANNOTATIONS)


def test_job_facts_keep_the_template_summary_for_the_record() -> None:
    facts = job_facts({"metadata": {"uid": "j", "name": "t", "namespace": "ml",
                                    "creationTimestamp": "2026-12-01T00:00:00Z",
                                    "annotations": {"carbontrack.io/budgets": "ml/a,other/b,bad"}},
                       "spec": {"template": {"spec": {
                           "nodeSelector": {"pool": "gpu"},
                           "containers": [{"name": "c", "image": "x",
                                           "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}},
                       "status": {}})
    assert facts.template == {"nodeSelector": {"pool": "gpu"},
                              "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}
    assert facts.remembered_budgets == frozenset({"ml/a", "other/b"})


def test_a_record_mark_tells_the_genuine_copy_from_a_changed_one() -> None:
    from carbontrack.operator.record_store import RecordMark

    rec = parse_object(new_object("ml", "2027-01-01", 3, 0, {"u-1": entry()})).entries["u-1"]
    mark = RecordMark.of(rec)
    job_annotations = {**rec.annotations, "carbontrack.io/expected-duration": "1h",
                       "carbontrack.io/co2e-grams-so-far": "3"}  # keys not in the record: ignored
    assert mark.matches(job_annotations)
    assert not mark.matches({**job_annotations, "carbontrack.io/co2e-grams": "0"})
    assert not mark.matches({k: v for k, v in job_annotations.items() if k != "carbontrack.io/report"})
