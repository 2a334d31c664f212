"""Deferrable Jobs under Kueue (pure parts): the AdmissionCheck holds the Workload until the
deferral's window or deadline (kueue_checks.deferral_hold / decide), and the deferral never
writes the spec.suspend that Kueue owns (deferral.plan_patch)."""

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from carbontrack.operator.budgets import parse_spec
from carbontrack.operator.deferral import DEFERRABLE_UNTIL, DEFERRAL, plan_patch
from carbontrack.operator.enforcement import BudgetView
from carbontrack.operator.jobs import JobFacts, job_facts
from carbontrack.operator.kueue_checks import PLAN_WAIT, Decision, decide, deferral_hold, owner_from_object

CREATED = datetime(2026, 12, 7, 1, tzinfo=timezone.utc)
NOW = CREATED + timedelta(minutes=5)
START = "2026-12-07T03:00:00Z"
DEADLINE = "2026-12-07T06:00:00Z"


def plan(state: str = "held", start: str = START, deadline: str | None = DEADLINE) -> dict[str, Any]:
    body: dict[str, Any] = {"state": state, "plannedStart": start, "reason": "lowest of 12 windows",
                            "submittedAt": "2026-12-07T01:00:00Z"}
    if deadline is not None:
        body["deadline"] = deadline
    return body


def job_body(annotations: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"uid": "job-uid", "namespace": "ml", "name": "train", "labels": labels or {},
                         "creationTimestamp": "2026-12-07T01:00:00Z", "annotations": annotations},
            "spec": {"suspend": True}, "status": {}}


def owner_with(annotations: dict[str, str], kind: str = "Job") -> Any:
    body = job_body(annotations)
    body["kind"] = kind
    return owner_from_object(body)


def deferred(annotations_plan: dict[str, Any] | None, until: str = DEADLINE) -> Any:
    annotations = {DEFERRABLE_UNTIL: until}
    if annotations_plan is not None:
        annotations[DEFERRAL] = json.dumps(annotations_plan)
    return owner_with(annotations)


def window_message(end: str) -> str:
    return (f"Job ml/train deferred to its low-carbon window starting {end} (deadline {DEADLINE}): "
            "lowest of 12 windows; admitted then")


def test_a_held_plan_keeps_the_workload_pending_until_the_window_start() -> None:
    start = datetime(2026, 12, 7, 3, tzinfo=timezone.utc)
    assert deferral_hold(deferred(plan()), NOW) == Decision("Pending", window_message(START), until=start)
    assert deferral_hold(deferred(plan()), start - timedelta(seconds=1)) == Decision(
        "Pending", window_message(START), until=start)
    assert deferral_hold(deferred(plan()), start) is None  # the window has come: nothing holds
    assert decide(deferred(plan()), [], now=start) == Decision(
        "Ready", "no exceeded Suspend CarbonBudget holds Job ml/train")


def test_the_deadline_ends_the_hold_when_it_comes_before_the_planned_start() -> None:
    # a plan whose start lies past its deadline (never written so, but a Job must never
    # wait past its deadline whatever the annotation says)
    late = plan(start="2026-12-07T07:00:00Z")
    deadline = datetime(2026, 12, 7, 6, tzinfo=timezone.utc)
    assert deferral_hold(deferred(late), NOW) == Decision("Pending", window_message(DEADLINE), until=deadline)
    assert deferral_hold(deferred(late), deadline) is None


def test_a_released_plan_a_bad_plan_or_no_deferral_holds_nothing() -> None:
    assert deferral_hold(deferred(plan(state="released")), NOW) is None
    assert deferral_hold(deferred(plan(start="soon")), NOW) is None
    assert deferral_hold(owner_with({}), NOW) is None
    # deferral holds Jobs only (it writes a Job's annotation); another kind is not held
    assert deferral_hold(owner_with({DEFERRABLE_UNTIL: DEADLINE, DEFERRAL: json.dumps(plan())},
                                    kind="JobSet"), NOW) is None


def test_a_deferrable_job_waits_for_its_plan_but_never_past_its_deadline() -> None:
    waiting = deferral_hold(deferred(None, until="2h"), NOW)  # deadline: creation + 2h = 03:00
    assert waiting == Decision("Pending", (
        "Job ml/train is deferrable (deadline 2026-12-07T03:00:00Z): waiting for CarbonTrack to "
        "plan its low-carbon window"), until=NOW + PLAN_WAIT)
    deadline = CREATED + timedelta(hours=2)
    near = deadline - timedelta(seconds=3)
    assert deferral_hold(deferred(None, until="2h"), near) == Decision(
        "Pending", waiting.message, until=deadline)
    assert deferral_hold(deferred(None, until="2h"), deadline) is None
    # an invalid deadline: the operator runs that Job at once, so the check does not wait
    assert deferral_hold(deferred(None, until="tomorrow"), NOW) is None


def test_a_holding_budget_decides_before_the_deferral() -> None:
    spec = parse_spec({"limit": "1kg", "period": {"type": "Calendar", "calendar": "Month"},
                       "selector": {"matchLabels": {}}, "action": "Suspend"})
    budget = BudgetView("ml", "all", "b-uid", spec, True, None, "1.2kg", "2026-12")
    start = datetime(2026, 12, 7, 3, tzinfo=timezone.utc)
    assert decide(deferred(plan()), [budget], now=start).budget == "ml/all"  # still held
    assert decide(deferred(plan()), [budget], now=NOW).budget == "ml/all"
    assert decide(deferred(plan()), [], now=NOW).until == start
    assert decide(deferred(plan()), []).state == "Ready"  # without a time: budgets only


def job(labels: dict[str, str] | None = None) -> JobFacts:
    return job_facts(job_body({DEFERRABLE_UNTIL: DEADLINE}, labels))


def test_the_deferral_never_writes_suspend_of_a_job_kueue_manages() -> None:
    record = plan()
    annotation = {"metadata": {"annotations": {DEFERRAL: json.dumps(record, sort_keys=True)}}}
    assert plan_patch(job(), record, suspend=True) == {**annotation, "spec": {"suspend": True}}
    assert plan_patch(job(), record, suspend=False) == {**annotation, "spec": {"suspend": False}}
    assert plan_patch(job(), record, suspend=None) == annotation
    kueue = job({"kueue.x-k8s.io/queue-name": "user-queue"})
    for suspend in (True, False, None):
        assert plan_patch(kueue, record, suspend=suspend) == annotation
