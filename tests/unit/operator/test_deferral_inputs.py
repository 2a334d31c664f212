"""The deferrable Job's inputs (operator/deferral.py, pure parts): its deadline, its expected
duration and the operator's own plan annotation; bad input is a clear error, never a crash."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from carbontrack.operator.deferral import (
    DEFAULT_DURATION,
    DEFERRABLE_UNTIL,
    DEFERRAL,
    deadline_of,
    expected_duration,
    record_annotations,
    record_of,
)
from carbontrack.operator.jobs import JobFacts, job_facts

from carbontrack.core.errors import ConfigError

CREATED = datetime(2026, 12, 7, 1, tzinfo=timezone.utc)


def job(annotations: dict[str, str]) -> JobFacts:
    return job_facts({"metadata": {"uid": "u1", "namespace": "ml", "name": "train",
                                   "creationTimestamp": "2026-12-07T01:00:00Z", "annotations": annotations},
                      "spec": {"suspend": True}, "status": {}})


def test_deadline_is_a_time_or_a_duration_after_creation() -> None:
    assert deadline_of(job({DEFERRABLE_UNTIL: "2026-12-07T06:30:00Z"})) == CREATED + timedelta(hours=5.5)
    assert deadline_of(job({DEFERRABLE_UNTIL: "1h30m"})) == CREATED + timedelta(minutes=90)
    for bad in ("tomorrow", "", "-3h", "2026-13-01T00:00:00Z", "0s"):
        with pytest.raises(ConfigError, match="deferrable-until"):
            deadline_of(job({DEFERRABLE_UNTIL: bad}))


def test_expected_duration_defaults_to_an_hour_and_says_so() -> None:
    assert expected_duration(job({})) == (DEFAULT_DURATION, "no carbontrack.io/expected-duration: "
                                                            "a 1h window is assumed")
    assert expected_duration(job({"carbontrack.io/expected-duration": "45m"})) == (timedelta(minutes=45), "")
    with pytest.raises(ConfigError, match="expected-duration"):
        expected_duration(job({"carbontrack.io/expected-duration": "soon"}))


def test_only_a_plan_the_operator_could_have_written_is_read_and_recorded() -> None:
    plan = {"state": "released", "intensityAtSubmission": 400.0, "intensityAtRun": 100.0}
    ok = job({DEFERRAL: json.dumps(plan)})
    assert record_of(ok) == plan
    assert record_annotations(ok) == {DEFERRAL: json.dumps(plan)}
    for junk in ("", "[[[", json.dumps({"state": "whatever"}), json.dumps([1, 2])):
        assert record_of(job({DEFERRAL: junk})) is None
        assert record_annotations(job({DEFERRAL: junk})) == {}


def test_avoided_estimate_and_the_metrics_it_feeds() -> None:
    from carbontrack.operator.deferral import Deferral, DeferralConfig, DeferralMetrics, avoided_estimate
    from prometheus_client import CollectorRegistry

    from carbontrack.core import contract

    assert avoided_estimate({"intensityAtSubmission": 400.0, "intensityAtRun": 150.0}, 2.0) == 500.0
    assert avoided_estimate({"intensityAtSubmission": None, "intensityAtRun": 150.0}, 2.0) is None
    assert avoided_estimate({"intensityAtSubmission": 400.0, "intensityAtRun": True}, 2.0) is None
    assert avoided_estimate({"intensityAtSubmission": 400.0, "intensityAtRun": 150.0}, None) is None
    registry = CollectorRegistry()
    metrics = DeferralMetrics(registry)
    # exported at 0 from the start, as the contract describes them
    by_name = {f.name: f for f in contract.OPERATOR_FAMILIES}
    for fam in registry.collect():
        assert (fam.type, fam.documentation) == (by_name[fam.name].kind, by_name[fam.name].help)
    assert registry.get_sample_value("carbontrack_operator_jobs_deferred_total", {"decision": "held"}) == 0.0
    deferral = Deferral(None, lambda: CREATED, DeferralConfig(None, lambda: None), metrics)  # type: ignore[arg-type]
    deferral.recorded({DEFERRAL: json.dumps({"intensityAtSubmission": 400.0, "intensityAtRun": 150.0})}, 2.0)
    deferral.recorded({DEFERRAL: json.dumps({"intensityAtSubmission": 100.0, "intensityAtRun": 150.0})}, 2.0)
    deferral.recorded({DEFERRAL: "[[["}, 2.0)
    deferral.recorded({}, 2.0)
    assert registry.get_sample_value(
        "carbontrack_operator_deferral_avoided_co2e_grams_estimate_total") == 500.0


def test_out_of_range_deadlines_and_durations_are_clear_errors_not_crashes() -> None:
    # A user's annotation that overflows datetime must be a ConfigError (the Job runs at once
    # with the reason); an escaping OverflowError aborted the Job's handler before the budget
    # enforcer ran, so the annotation let the Job escape a Suspend budget.
    for bad in ("99999999h", "99999999999999999999s", "0001-01-01T00:00:00+14:00"):
        with pytest.raises(ConfigError, match="deferrable-until"):
            deadline_of(job({DEFERRABLE_UNTIL: bad}))
    with pytest.raises(ConfigError, match="expected-duration"):
        expected_duration(job({"carbontrack.io/expected-duration": "99999999999999999999h"}))
    assert deadline_of(job({DEFERRABLE_UNTIL: "9999-12-31T23:00:00Z"})).year == 9999


class FlakyJobsApi:
    """The two KubeApi calls the deferral makes, held in memory; the first ``fail`` patches
    answer as an unavailable API server does (TemporaryError)."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.patches: list[dict[str, object]] = []
        self.events: list[str] = []
        self.warnings: list[str] = []

    async def patch_job(self, namespace: str, name: str, uid: str, body: dict[str, object]) -> None:
        from carbontrack.core.errors import TemporaryError

        if self.fail:
            self.fail -= 1
            raise TemporaryError("HTTP 503 from the API server")
        self.patches.append(body)

    async def post_event(self, involved: object, reason: str, message: str, warning: bool,
                         at: datetime) -> None:
        self.events.append(reason)
        if warning:
            self.warnings.append(f"{reason}: {message}")


def test_a_release_the_api_refused_is_tried_again_at_the_next_tick() -> None:
    import asyncio

    from carbontrack.operator.deferral import Deferral, DeferralConfig

    now = [CREATED]
    api = FlakyJobsApi(fail=0)
    deferral = Deferral(api, lambda: now[0], DeferralConfig("DE", lambda: None))  # type: ignore[arg-type]
    planned = {"state": "held", "plannedStart": "2026-12-07T02:00:00Z", "submittedAt": "2026-12-07T01:00:00Z"}
    held = job({DEFERRABLE_UNTIL: "2h", DEFERRAL: json.dumps(planned)})
    asyncio.run(deferral.on_job(held))  # as after a restart: the plan is resumed from the annotation
    api.fail = 1
    now[0] = CREATED + timedelta(hours=1)
    asyncio.run(deferral.tick())  # the window came; the API server refused the patch
    assert api.patches == [] and api.events == []
    now[0] += timedelta(seconds=1)
    asyncio.run(deferral.tick())
    assert len(api.patches) == 1 and api.events == ["ReleasedForLowCarbon"]
    assert api.patches[0]["spec"] == {"suspend": False}
    asyncio.run(deferral.tick())  # released once
    assert len(api.patches) == 1


def test_releases_run_in_their_own_loop_that_survives_a_failing_tick() -> None:
    import asyncio
    from types import SimpleNamespace

    from carbontrack.operator.handlers import Operator

    calls: list[float] = []

    async def main() -> None:
        stop = asyncio.Event()

        async def tick() -> None:
            calls.append(asyncio.get_running_loop().time())
            if len(calls) == 1:
                raise RuntimeError("one bad tick")
            if len(calls) == 3:
                stop.set()

        op = SimpleNamespace(deferral=SimpleNamespace(tick=tick))
        await asyncio.wait_for(Operator.run_deferral(op, stop), timeout=10)  # type: ignore[arg-type]

    asyncio.run(main())
    assert len(calls) == 3  # the failing tick did not end the loop
    assert min(calls[1] - calls[0], calls[2] - calls[1]) >= 0.9  # once a second, not a busy loop


def test_a_passed_deadline_or_no_covered_window_is_a_warning_not_a_lowest_carbon_start() -> None:
    # docs/methodology.md: without a usable forecast (a deadline already passed among the
    # reasons) the Job is released at once with a Warning NotDeferred Event
    import asyncio

    from carbontrack.operator.deferral import Deferral, DeferralConfig

    from carbontrack.core.types import Basis
    from carbontrack.intensity.forecast import build_forecast
    from carbontrack.intensity.series import Point

    now = CREATED + timedelta(hours=3)

    class Source:
        name = "test"

        def forecast(self, zone: str) -> object:
            points = [Point(now + timedelta(hours=i), now + timedelta(hours=i + 1), v)
                      for i, v in enumerate([400.0, 100.0])]
            return build_forecast(zone, points, now=now, source="test forecast", basis=Basis())

    cases = {"passed": {DEFERRABLE_UNTIL: "2h"},  # created 3 h ago
             "uncovered": {DEFERRABLE_UNTIL: "6h", "carbontrack.io/expected-duration": "5h"},
             "lowest-now": {DEFERRABLE_UNTIL: "6h", "carbontrack.io/expected-duration": "2h"}}
    outcome = {}
    for name, given in cases.items():
        api = FlakyJobsApi(fail=0)
        deferral = Deferral(api, lambda: now, DeferralConfig("DE", Source))  # type: ignore[arg-type]
        asyncio.run(deferral.on_job(job(given)))
        plan = json.loads(api.patches[0]["metadata"]["annotations"][DEFERRAL])  # type: ignore[index]
        outcome[name] = (api.events, bool(api.warnings), plan["state"])
    assert outcome["passed"] == (["NotDeferred"], True, "released")
    assert outcome["uncovered"] == (["NotDeferred"], True, "released")
    # 0-2 h (250) is the only covered 2 h window: starting now is the forecast's choice
    assert outcome["lowest-now"] == (["RunsNowLowestCarbon"], False, "released")


def test_a_job_a_budget_still_holds_at_its_window_claims_no_avoided_estimate() -> None:
    # it runs when the budget lets it go, not in the planned window: the window's forecast is
    # not the intensity it ran at, so no estimate is claimed (the report shows a blank)
    import asyncio

    from carbontrack.operator.deferral import Deferral, DeferralConfig, avoided_estimate

    now = [CREATED]
    api = FlakyJobsApi(fail=0)
    deferral = Deferral(api, lambda: now[0], DeferralConfig("DE", lambda: None))  # type: ignore[arg-type]
    planned = {"state": "held", "plannedStart": "2026-12-07T02:00:00Z", "submittedAt": "2026-12-07T01:00:00Z",
               "intensityAtSubmission": 400.0, "intensityAtRun": 100.0, "reason": "held until 02:00"}
    held = job({DEFERRABLE_UNTIL: "2h", DEFERRAL: json.dumps(planned),
                "carbontrack.io/suspended-by": "ml/team-budget"})
    asyncio.run(deferral.on_job(held))
    now[0] = CREATED + timedelta(hours=1)
    asyncio.run(deferral.tick())
    assert len(api.patches) == 1 and "spec" not in api.patches[0]  # the budget's hold stands
    record = json.loads(api.patches[0]["metadata"]["annotations"][DEFERRAL])  # type: ignore[index]
    assert record["state"] == "released" and record["intensityAtSubmission"] == 400.0
    assert record["intensityAtRun"] is None and "CarbonBudget" in record["reason"]
    assert avoided_estimate(record, 2.0) is None


def test_a_job_released_under_a_budget_hold_runs_once_the_budget_lets_go() -> None:
    # the window comes while a budget holds the Job (suspend stays); the enforcer then lifts
    # the budget's hold on facts that still show the deferral's hold, so it leaves spec.suspend
    # alone: the deferral, seeing the Job suspended with neither hold left, resumes it
    import asyncio

    from carbontrack.operator.deferral import Deferral, DeferralConfig

    now = [CREATED]
    api = FlakyJobsApi(fail=0)
    deferral = Deferral(api, lambda: now[0], DeferralConfig("DE", lambda: None))  # type: ignore[arg-type]
    planned = {"state": "held", "plannedStart": "2026-12-07T02:00:00Z", "submittedAt": "2026-12-07T01:00:00Z"}
    budget = {"carbontrack.io/suspended-by": "ml/team-budget"}
    asyncio.run(deferral.on_job(job({DEFERRABLE_UNTIL: "2h", DEFERRAL: json.dumps(planned), **budget})))
    now[0] = CREATED + timedelta(hours=1)
    asyncio.run(deferral.tick())
    released = api.patches[0]["metadata"]["annotations"][DEFERRAL]  # type: ignore[index]
    assert "spec" not in api.patches[0]
    asyncio.run(deferral.on_job(job({DEFERRABLE_UNTIL: "2h", DEFERRAL: released, **budget})))
    assert len(api.patches) == 1  # the budget still holds it
    asyncio.run(deferral.on_job(job({DEFERRABLE_UNTIL: "2h", DEFERRAL: released})))
    assert api.patches[1] == {"spec": {"suspend": False}}
    asyncio.run(deferral.on_job(job({DEFERRABLE_UNTIL: "2h", DEFERRAL: released})))
    assert len(api.patches) == 2  # once
