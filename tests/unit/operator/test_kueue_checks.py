"""The Kueue AdmissionCheck decisions and status patches (pure functions of kueue_checks)."""

from datetime import datetime, timezone
from typing import Any

import pytest
from carbontrack.operator.budgets import parse_spec
from carbontrack.operator.enforcement import BudgetView
from carbontrack.operator.kueue_checks import (
    Decision,
    Owner,
    OwnerRef,
    active_condition_patch,
    check_state_patch,
    checks_to_decide,
    decide,
    is_ours,
    owner_from_object,
    unresolved,
    workload_facts,
)

NOW = datetime(2026, 3, 10, 8, 30, tzinfo=timezone.utc)
HELD_MSG = ("held by CarbonBudget ml/nlp-budget: exceeded (1.2kg of 1kg in 2026-03) with action "
            "Suspend; Job ml/train is admitted when the period resets or the limit is raised")


def budget(action: str = "Suspend", exceeded: bool = True, team: str = "nlp",
           namespace: str = "ml", name: str = "nlp-budget") -> BudgetView:
    spec = parse_spec({"limit": "1kg", "period": {"type": "Calendar", "calendar": "Month"},
                       "selector": {"matchLabels": {"team": team}}, "action": action})
    return BudgetView(namespace, name, "b-uid", spec, exceeded, None, "1.2kg", "2026-03")


def owner(labels: dict[str, str] | None = None, remembered: frozenset[str] = frozenset()) -> Owner:
    return Owner("batch/v1", "Job", "ml", "train", "job-uid",
                 {"team": "nlp"} if labels is None else labels, remembered)


def workload(checks: list[dict[str, Any]], conditions: list[dict[str, Any]] | None = None,
             owners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
        "metadata": {"name": "job-train-1a2b3", "namespace": "ml", "uid": "wl-uid", "resourceVersion": "41",
                     "labels": {"kueue.x-k8s.io/job-uid": "job-uid"},
                     "ownerReferences": owners if owners is not None else [
                         {"apiVersion": "batch/v1", "kind": "Job", "name": "train",
                          "uid": "job-uid", "controller": True, "blockOwnerDeletion": True}]},
        "status": {"admissionChecks": checks, "conditions": conditions or []},
    }


PENDING_CHECK = {"name": "carbon", "state": "Pending", "message": "",
                 "lastTransitionTime": "2026-03-10T08:00:00Z"}


# ---------------------------------------------------------------- decisions
def test_exceeded_suspend_budget_selecting_the_owner_holds_it() -> None:
    assert decide(owner(), [budget()]) == Decision("Pending", HELD_MSG, "ml/nlp-budget")


@pytest.mark.parametrize("view", [
    budget(exceeded=False),                      # under its limit
    budget(action="Warn"),                       # exceeded but only warns
    budget(team="vision"),                       # selects other Jobs
    budget(namespace="other"),                   # another namespace's budget
])
def test_budgets_that_do_not_hold_give_ready(view: BudgetView) -> None:
    assert decide(owner(), [view]) == Decision("Ready", "no exceeded Suspend CarbonBudget holds Job ml/train")


def test_no_budgets_give_ready() -> None:
    assert decide(owner(), []).state == "Ready"


def test_relabelled_owner_stays_held_by_a_budget_that_held_it() -> None:
    relabelled = owner(labels={"team": "escaped"})
    assert decide(relabelled, [budget()]).state == "Ready"  # nothing remembered: it escapes
    assert decide(relabelled, [budget()], members={"ml/nlp-budget"}).state == "Pending"
    assert decide(owner({"team": "escaped"}, frozenset({"ml/nlp-budget"})), [budget()]).state == "Pending"


def test_remembered_membership_does_not_hold_once_the_budget_allows() -> None:
    assert decide(owner({}, frozenset({"ml/nlp-budget"})), [budget(exceeded=False)]).state == "Ready"


def test_first_holding_budget_by_key_is_named() -> None:
    second = budget(name="a-budget")
    decision = decide(owner(), [budget(), second])
    assert decision.budget == "ml/a-budget"


def test_unresolved_owner_keeps_the_workload_pending_with_the_reason() -> None:
    assert unresolved("owner Job ml/train not found") == Decision(
        "Pending", "waiting: owner Job ml/train not found; CarbonTrack decides once it can read them",
        retry=True)


def test_owner_from_object_keeps_only_same_namespace_remembered_budgets() -> None:
    body = {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "train", "namespace": "ml", "uid": "job-uid", "labels": {"team": "nlp"},
                         "annotations": {"carbontrack.io/budgets": "ml/nlp-budget,other/x"}}}
    assert owner_from_object(body) == owner(remembered=frozenset({"ml/nlp-budget"}))


# ---------------------------------------------------------------- Workload facts
def test_workload_facts_reads_owner_checks_and_conditions() -> None:
    facts = workload_facts(workload([PENDING_CHECK], [{"type": "QuotaReserved", "status": "True"}]))
    assert facts.owner == OwnerRef("batch/v1", "Job", "train", "job-uid")
    assert facts.checks["carbon"].state == "Pending"
    assert (facts.admitted, facts.finished) == (False, False)


def test_owner_reference_without_controller_is_no_owner() -> None:
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u"}
    assert workload_facts(workload([], owners=[ref])).owner is None


@pytest.mark.parametrize(("checks", "conditions", "expected"), [
    ([PENDING_CHECK], [], ["carbon"]),
    ([{**PENDING_CHECK, "state": "Retry"}], [], ["carbon"]),
    ([{**PENDING_CHECK, "state": "Ready"}], [], ["carbon"]),   # Ready, not admitted: re-decided
    ([{**PENDING_CHECK, "name": "provisioning"}], [], []),      # another controller's check
    ([PENDING_CHECK], [{"type": "Admitted", "status": "True"}], []),  # admitted: never touched
    ([{**PENDING_CHECK, "state": "Ready"}], [{"type": "Admitted", "status": "True"}], []),
    ([PENDING_CHECK], [{"type": "Finished", "status": "True"}], []),
])
def test_checks_to_decide(checks: list[dict[str, Any]], conditions: list[dict[str, Any]],
                          expected: list[str]) -> None:
    assert checks_to_decide(workload_facts(workload(checks, conditions)), {"carbon"}) == expected


# ---------------------------------------------------------------- patches
def test_check_state_patch_holds_with_the_message() -> None:
    facts = workload_facts(workload([PENDING_CHECK]))
    # Kueue set Pending earlier: the state does not change, so neither does its time
    assert check_state_patch(facts, "carbon", Decision("Pending", HELD_MSG), NOW) == {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
        "metadata": {"name": "job-train-1a2b3", "namespace": "ml", "resourceVersion": "41"},
        "status": {"admissionChecks": [{"name": "carbon", "state": "Pending", "message": HELD_MSG,
                                        "lastTransitionTime": "2026-03-10T08:00:00Z"}]},
    }


def test_check_state_patch_ready_moves_the_transition_time() -> None:
    facts = workload_facts(workload([{**PENDING_CHECK, "message": HELD_MSG}]))
    ready = Decision("Ready", "no exceeded Suspend CarbonBudget holds Job ml/train")
    assert check_state_patch(facts, "carbon", ready, NOW) == {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
        "metadata": {"name": "job-train-1a2b3", "namespace": "ml", "resourceVersion": "41"},
        "status": {"admissionChecks": [{"name": "carbon", "state": "Ready", "message": ready.message,
                                        "lastTransitionTime": "2026-03-10T08:30:00Z"}]},
    }


def test_check_state_patch_is_none_when_nothing_changes() -> None:
    facts = workload_facts(workload([{**PENDING_CHECK, "message": HELD_MSG}]))
    assert check_state_patch(facts, "carbon", Decision("Pending", HELD_MSG), NOW) is None


def admission_check(conditions: list[dict[str, Any]], generation: int = 2) -> dict[str, Any]:
    return {"metadata": {"name": "carbon", "generation": generation},
            "spec": {"controllerName": "carbontrack.io/carbon-budget"},
            "status": {"conditions": conditions}}


def test_active_condition_patch() -> None:
    assert active_condition_patch(admission_check([]), NOW) == {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "AdmissionCheck",
        "metadata": {"name": "carbon"},
        "status": {"conditions": [{
            "type": "Active", "status": "True", "reason": "Active",
            "message": "the CarbonTrack operator decides this check from CarbonBudgets",
            "lastTransitionTime": "2026-03-10T08:30:00Z", "observedGeneration": 2}]},
    }


def test_active_condition_patch_none_when_active_for_this_generation() -> None:
    active = {"type": "Active", "status": "True", "observedGeneration": 2}
    assert active_condition_patch(admission_check([active]), NOW) is None
    assert active_condition_patch(admission_check([active], generation=3), NOW) is not None


def test_is_ours() -> None:
    assert is_ours(admission_check([]))
    assert not is_ours({"spec": {"controllerName": "kueue.x-k8s.io/provisioning-request"}})


def test_ready_but_not_admitted_goes_back_to_pending_when_a_budget_holds() -> None:
    facts = workload_facts(workload([{**PENDING_CHECK, "state": "Ready", "message": "x"}]))
    patch = check_state_patch(facts, "carbon", decide(owner(), [budget()]), NOW)
    assert patch is not None
    assert patch["status"]["admissionChecks"][0]["state"] == "Pending"
    assert patch["status"]["admissionChecks"][0]["lastTransitionTime"] == "2026-03-10T08:30:00Z"
    assert patch["metadata"]["resourceVersion"] == "41"
