"""`carbontrack report deferrals`: the counterfactual and the avoided-CO2e estimate per Job."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from carbontrack.core.contract import DEFERRAL
from carbontrack.core.records import RecordEntry, build_entry
from carbontrack.reports.deferrals import ESTIMATE_BASIS, render_table, row_of, rows

T = datetime(2026, 12, 7, 1, tzinfo=timezone.utc)


def entry(name: str, plan: dict[str, object] | None, energy: float | None = 2.0) -> RecordEntry:
    annotations = {"carbontrack.io/method": "measured"}
    if plan is not None:
        annotations[DEFERRAL] = json.dumps(plan)
    data = build_entry(uid=f"uid-{name}", namespace="ml", name=name, kind="Job", outcome="Complete",
                       started_at=T, finished_at=T, accounted_at=T, co2e_grams=None if energy is None else 300.0,
                       energy_kwh=energy, labels={}, budgets=frozenset(), annotations=annotations,
                       inputs={}, template={}, parallelism=1, queries={})
    return RecordEntry.from_dict(f"uid-{name}", "ml", data)


def test_avoided_is_energy_times_the_forecast_difference_labelled_an_estimate() -> None:
    plan = {"state": "released", "submittedAt": "2026-12-07T01:00:00Z", "releasedAt": "2026-12-07T04:00:00Z",
            "deadline": "2026-12-07T06:00:00Z", "intensityAtSubmission": 400.0, "intensityAtRun": 150.0,
            "reason": "held until ...", "zone": "DE", "basis": "Electricity Maps forecast"}
    row = row_of(entry("a", plan))
    assert row is not None
    assert row.avoided_grams_estimate == pytest.approx(2.0 * 250.0)
    assert row.estimate_basis == ESTIMATE_BASIS and "estimate" in ESTIMATE_BASIS
    assert row.co2e_grams == 300.0  # the measured figure is kept apart, unchanged
    table = render_table([row])
    assert "500" in table and "AVOIDED is an estimate" in table


def test_no_forecast_has_no_estimate_and_plain_jobs_are_not_listed() -> None:
    no_forecast = {"state": "released", "submittedAt": "2026-12-07T01:00:00Z", "intensityAtSubmission": None,
                   "intensityAtRun": None, "reason": "no usable forecast for DE (...): runs at once"}
    found = rows([entry("b", no_forecast), entry("plain", None), entry("c", {"state": "released"}, None)])
    assert [r.job for r in found] == ["c", "b"] or [r.job for r in found] == ["b", "c"]
    b = next(r for r in found if r.job == "b")
    assert b.avoided_grams_estimate is None and "no usable forecast" in b.reason
    assert "-" in render_table([b])
    assert row_of(entry("bad", None)) is None
