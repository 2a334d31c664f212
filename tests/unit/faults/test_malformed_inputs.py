"""Malformed CarbonBudgets, ledgers and Job annotations: the operator answers with a clear
one-line ConfigError (or ignores what is not its own) and never crashes, under- or
double-counts. The budget specs here are random mutations of a valid one: whatever a user
(or a broken client bypassing the CRD schema, e.g. an older CRD) writes."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Any

import pytest
from carbontrack.operator.budgets import compute_status, parse_spec
from carbontrack.operator.jobs import job_facts
from carbontrack.operator.ledger import Ledger

from carbontrack.core.errors import ConfigError

VALID: dict[str, Any] = {
    "limit": "250kg",
    "period": {"type": "Calendar", "calendar": "Month", "timeZone": "Europe/Berlin"},
    "selector": {"matchLabels": {"team": "nlp"},
                 "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]},
    "thresholds": [50, 80],
    "action": "Suspend",
}
NOW = datetime(2026, 3, 15, 12, tzinfo=timezone.utc)

HOSTILE_VALUES: list[Any] = [
    None, True, 0, -1, 1e400, float("nan"), "", " ", "NaNkg", "infkg", "1e400kg", "-0kg",
    "0.0000000001mg", "9" * 400 + "t", "250 kg", "250KG", "\u0662\u0665\u0660kg", "kg",
    "250kg\n", "Month", "Decade", "Rolling", "Calendar", "1d", "-1d", "0s", "P1D",
    "Mars/Olympus", "UTC\x00", [], [None], [50, 50], [0], [101], [50.5], ["50"], {}, {"x": 1},
    {"matchLabels": None}, {"matchLabels": {"a": 1}}, {"matchLabels": {"": "x"}},
    {"matchExpressions": [{"key": "a", "operator": "Near"}]},
    {"matchExpressions": [{"key": "a", "operator": "In"}]},
    {"matchExpressions": "tier in (a)"}, "x" * 300, "Warn", "suspend", "Delete",
]


def mutate(rng: random.Random) -> dict[str, Any]:
    spec: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in VALID.items()}
    for _ in range(rng.randint(1, 3)):
        where = rng.choice(["limit", "period", "period.type", "period.calendar",
                            "period.window", "period.timeZone", "selector", "thresholds",
                            "action", "drop"])
        value = rng.choice(HOSTILE_VALUES)
        if where == "drop":
            spec.pop(rng.choice(list(VALID)), None)
        elif where.startswith("period."):
            period = spec.get("period")
            if isinstance(period, dict):
                if where == "period.timeZone" and isinstance(value, str) and len(value) > 64:
                    value = value[:64]  # longer ones: test_overlong_time_zone_... below
                period[where.split(".", 1)[1]] = value
        else:
            spec[where] = value
    return spec


def test_random_hostile_budget_specs_give_one_line_config_errors() -> None:
    rng = random.Random(20261130)
    rejected = accepted = 0
    for _ in range(3000):
        spec = mutate(rng)
        try:
            parsed = parse_spec(spec)
        except ConfigError as err:
            text = str(err)
            assert text and "\n" not in text and len(text) < 1000, (spec, text)
            rejected += 1
            continue
        # whatever is accepted must be usable: a positive finite limit, a status computable
        assert parsed.limit_grams > 0 and parsed.limit_grams != float("inf")
        status = compute_status(parsed, Ledger(), {}, NOW)
        assert status.status["usedGrams"] == 0
        accepted += 1
    assert rejected > 2000 and accepted > 0  # the generator exercises both paths


def test_overlong_time_zone_is_a_config_error() -> None:
    spec = {**VALID, "period": {"type": "Calendar", "calendar": "Month", "timeZone": "9" * 400}}
    with pytest.raises(ConfigError):
        parse_spec(spec)


LEDGER_OK = {"name": "j", "finishedAt": "2026-03-01T00:00:00Z",
             "accountedAt": "2026-03-01T00:01:00Z", "co2eGrams": 12.5, "energyKwh": 0.05}


@pytest.mark.parametrize("bad", [
    {"name": "j"},
    {**LEDGER_OK, "co2eGrams": "lots"},
    {**LEDGER_OK, "finishedAt": "yesterday"},
    {**LEDGER_OK, "co2eGrams": -5},
    {**LEDGER_OK, "energyKwh": "NaN"},
], ids=["missing-times", "grams-not-a-number", "bad-time", "negative", "nan"])
def test_malformed_ledger_entry_is_a_config_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="uid-bad"):
        Ledger.from_status({"uid-ok": LEDGER_OK, "uid-bad": bad})


def test_ledger_ignores_non_mapping_entries_and_counts_each_uid_once() -> None:
    led = Ledger.from_status({"uid-ok": LEDGER_OK, "uid-str": "12 kg", "uid-list": [1, 2]})
    assert [e.uid for e in led.entries()] == ["uid-ok"]
    twice = led.merge(Ledger.from_status({"uid-ok": {**LEDGER_OK, "co2eGrams": 99.0}}))
    assert [e.co2e_grams for e in twice.entries()] == [12.5]  # first accounting wins


def finished_job(uid: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"uid": uid, "namespace": "ml", "name": "train",
                     "creationTimestamp": "2026-03-02T10:00:00Z", "annotations": annotations},
        "spec": {"template": {"spec": {"containers": [{"name": "t"}]}}},
        "status": {"startTime": "2026-03-02T10:00:00Z",
                   "completionTime": "2026-03-02T12:00:00Z",
                   "conditions": [{"type": "Complete", "status": "True",
                                   "lastTransitionTime": "2026-03-02T12:00:00Z"}]},
    }


def test_hostile_accounting_annotations_do_not_crash_job_facts() -> None:
    for value in ["", "garbage", "\n", "x" * 100_000, "2026-13-45T99:99:99Z", "{"]:
        facts = job_facts(finished_job("u-1", {
            "carbontrack.io/energy-kwh": value, "carbontrack.io/co2e-grams": value,
            "carbontrack.io/report": value, "carbontrack.io/expected-duration": value}))
        assert facts.finished and not facts.accounted


def test_job_cloned_with_old_accounting_annotations_is_still_accounted() -> None:
    old = {"carbontrack.io/accounted-at": "2026-03-01T12:01:00Z",
           "carbontrack.io/energy-kwh": "3", "carbontrack.io/co2e-grams": "1440",
           "carbontrack.io/report": '{"job":{"uid":"u-old","name":"train","namespace":"ml"}}'}
    facts = job_facts(finished_job("u-new", old))
    assert facts.finished
    assert not facts.accounted
