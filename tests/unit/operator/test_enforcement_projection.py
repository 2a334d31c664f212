from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from carbontrack.operator.budgets import parse_spec
from carbontrack.operator.enforcement import BudgetView, to_resume, to_suspend
from carbontrack.operator.jobs import SUSPENDED_BY, JobFacts, job_facts
from carbontrack.operator.projection import parse_duration, project

from carbontrack.core.errors import ConfigError

EXCEEDED_AT = datetime(2026, 3, 10, 8, tzinfo=timezone.utc)


def budget(action: str = "Suspend", exceeded: bool = True, team: str = "nlp") -> BudgetView:
    spec = parse_spec({"limit": "1kg", "period": {"type": "Calendar", "calendar": "Month"},
                       "selector": {"matchLabels": {"team": team}}, "action": action})
    return BudgetView("ml", "nlp-budget", "b-uid", spec, exceeded,
                      EXCEEDED_AT if exceeded else None, "1.2kg", "2026-03")


def job(created: datetime, **changes: Any) -> JobFacts:
    facts = job_facts({"metadata": {"uid": "j", "name": "train", "namespace": "ml",
                                    "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                    "labels": {"team": "nlp"}},
                       "spec": {}, "status": {}})
    return replace(facts, **changes)


LATER = EXCEEDED_AT + timedelta(minutes=5)
EARLIER = EXCEEDED_AT - timedelta(minutes=5)


def test_new_matching_job_is_suspended() -> None:
    assert to_suspend(job(LATER), [budget()]) == budget()


@pytest.mark.parametrize(
    ("facts", "budgets"),
    [
        (job(EARLIER), [budget()]),  # admitted before the budget was exceeded
        (job(LATER), [budget(action="Warn")]),
        (job(LATER), [budget(exceeded=False)]),
        (job(LATER), [budget(team="cv")]),
        (job(LATER, namespace="other"), [budget()]),
        (job(LATER, suspended=True), [budget()]),  # already suspended (by someone)
        (job(LATER, outcome="Complete", finished_at=LATER), [budget()]),
        (job(LATER, deleting=True), [budget()]),
        (job(LATER), [replace(budget(), spec=None)]),  # invalid spec: never enforce
    ],
)
def test_not_suspended(facts: JobFacts, budgets: list[BudgetView]) -> None:
    assert to_suspend(facts, budgets) is None


def test_resume_only_jobs_the_operator_suspended_once_no_budget_blocks() -> None:
    ours = job(LATER, suspended=True, annotations={SUSPENDED_BY: "ml/nlp-budget"})
    assert not to_resume(ours, [budget()])
    assert to_resume(ours, [budget(exceeded=False)])
    assert to_resume(ours, [])  # budget deleted
    assert to_resume(ours, [budget(action="Warn")])  # action changed
    users = job(LATER, suspended=True)
    assert not to_resume(users, [])


@pytest.mark.parametrize(("text", "seconds"), [("2h", 7200), ("90m", 5400), ("1h30m", 5400),
                                               ("45s", 45), ("2.5h", 9000)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "2d", "h", "1h 30m", "0s", "-1h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


def test_projection_from_expected_duration() -> None:
    p = project(100.0, elapsed_s=1800, expected_duration_s=7200, completions=None, succeeded=0)
    assert p is not None
    assert (p.total_grams, p.progress) == (400.0, 0.25)
    assert p.basis == "expected-duration 7200s"


def test_projection_past_expected_end_is_what_was_emitted() -> None:
    p = project(500.0, elapsed_s=9000, expected_duration_s=7200, completions=None, succeeded=0)
    assert p is not None and p.total_grams == 500.0


def test_projection_from_completions() -> None:
    p = project(300.0, elapsed_s=60, expected_duration_s=None, completions=10, succeeded=3)
    assert p is not None and p.total_grams == pytest.approx(1000.0)
    assert p.basis == "3/10 completions"


@pytest.mark.parametrize(("completions", "succeeded"), [(None, 0), (1, 0), (10, 0)])
def test_no_projection_without_a_basis(completions: int | None, succeeded: int) -> None:
    assert project(10.0, 60, None, completions, succeeded) is None


def test_relabelling_a_held_job_does_not_release_it() -> None:
    held = job(LATER, suspended=True, annotations={SUSPENDED_BY: "ml/nlp-budget"},
               labels={"team": "escaped"})
    # the budget no longer selects it by labels, but it held the Job: still held
    assert not to_resume(held, [budget()])
    # a budget it belonged to while running (membership) holds it too
    other = replace(budget(), name="team-budget")
    assert not to_resume(held, [other], members={"ml/team-budget"})
    assert to_resume(held, [other])  # neither selected nor a member: free to go
    assert to_resume(held, [budget(exceeded=False)], members={"ml/nlp-budget"})
