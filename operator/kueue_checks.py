"""CarbonTrack as a Kueue AdmissionCheck controller: the decisions and the status patches
(pure; the controller that reads and writes them is kueue_admission.py).

Kueue admits a Workload (the queue entry it creates for a Job, a PyTorchJob, a Pod group,
...) only when every AdmissionCheck of its ClusterQueue is Ready. For the checks whose
``spec.controllerName`` is ours the state is:

- ``Pending`` while a CarbonBudget with action Suspend that is exceeded holds the Workload's
  top-level owner (the object at the end of its chain of controller ownerReferences, e.g.
  the Job): Kueue keeps it queued, no pod starts;
- ``Ready`` otherwise: Kueue admits it when it has quota.

A budget holds an owner when it is in the owner's namespace and either its selector matches
the owner's labels now, or it selected the owner earlier (remembered in memory, and the
operator-owned ``carbontrack.io/budgets`` annotation of the owner), so relabelling a queued
Job does not take it out of a budget that holds it. Nothing on the Workload itself decides:
its labels are not the user's object and its owner is what budgets select, as for Jobs.

A deferrable Job (``carbontrack.io/deferrable-until``, operator/deferral.py) that no budget
holds is ``Pending`` too while its plan holds it: from its creation until the operator has
written its plan (the operator-owned ``carbontrack.io/deferral`` annotation), then until the
planned start of its lowest-carbon window or its deadline, whichever comes first. At that
moment it is ``Ready``: Kueue, which owns the Job's ``spec.suspend``, resumes it. The decision
carries that moment (``Decision.until``) so the controller decides the Workload again then.

Once admitted, a workload runs to the end, as a Job that was running when its budget was
exceeded does: checks of admitted Workloads are never touched (setting one back would make
Kueue evict running work). A Workload that is Ready but not admitted yet (another check or
quota still missing) goes back to Pending when a budget starts holding it. Every status
patch carries the resourceVersion it was decided on, so a Workload Kueue admitted meanwhile
is never changed (the API server refuses the stale patch; the next event decides again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from carbontrack.core import contract
from carbontrack.core.contract import DEFERRABLE_UNTIL, DEFERRAL
from carbontrack.core.errors import ConfigError

from .deferral import HELD, parse_deadline, parse_record
from .enforcement import BudgetView
from .timeutil import parse_time

CONTROLLER_NAME = contract.KUEUE_ADMISSION_CHECK
GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "carbontrack-kueue-admission"
PENDING, READY = "Pending", "Ready"


@dataclass(frozen=True)
class OwnerRef:
    api_version: str
    kind: str
    name: str
    uid: str


@dataclass(frozen=True)
class Owner:
    """The top-level owner of a Workload, as budgets see it."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str]
    remembered_budgets: frozenset[str] = frozenset()  # operator-owned annotation, same namespace
    deferrable_until: str | None = None  # the user's carbontrack.io/deferrable-until (Jobs only)
    deferral: Mapping[str, Any] | None = None  # the operator's plan (carbontrack.io/deferral)
    created_at: datetime | None = None

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class CheckState:
    name: str
    state: str
    message: str = ""
    last_transition_time: str | None = None


@dataclass(frozen=True)
class WorkloadFacts:
    namespace: str
    name: str
    uid: str
    owner: OwnerRef | None  # the controlling ownerReference; None: the Workload is the top
    labels: Mapping[str, str]
    checks: Mapping[str, CheckState]
    admitted: bool
    finished: bool
    resource_version: str = ""


@dataclass(frozen=True)
class Decision:
    state: str
    message: str
    budget: str | None = None  # key of the holding budget
    retry: bool = False  # decided without the facts (an API error): decide again later
    until: datetime | None = None  # a deferral's hold ends then: decide again at that moment


def controller_owner(meta: Mapping[str, Any]) -> OwnerRef | None:
    """The ownerReference with ``controller: true``, if any (pure)."""
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return OwnerRef(str(ref.get("apiVersion", "")), str(ref.get("kind", "")),
                            str(ref.get("name", "")), str(ref.get("uid", "")))
    return None


def _condition_true(status: Mapping[str, Any], kind: str) -> bool:
    return any(isinstance(c, Mapping) and c.get("type") == kind and c.get("status") == "True"
               for c in status.get("conditions") or [])


def workload_facts(body: Mapping[str, Any]) -> WorkloadFacts:
    """What the controller needs of a Workload (pure; tolerant of missing fields)."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    checks = {}
    for raw in status.get("admissionChecks") or []:
        if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
            checks[raw["name"]] = CheckState(raw["name"], str(raw.get("state", "")),
                                             str(raw.get("message", "")),
                                             raw.get("lastTransitionTime"))
    return WorkloadFacts(
        namespace=str(meta.get("namespace", "")), name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")), owner=controller_owner(meta),
        labels=dict(meta.get("labels") or {}), checks=checks,
        admitted=_condition_true(status, "Admitted"), finished=_condition_true(status, "Finished"),
        resource_version=str(meta.get("resourceVersion", "")),
    )


def checks_to_decide(workload: WorkloadFacts, ours: Iterable[str]) -> list[str]:
    """Our checks on this Workload while it is neither admitted nor finished (pure)."""
    if workload.admitted or workload.finished:
        return []
    return sorted(set(ours) & set(workload.checks))


def holds(budget: BudgetView, owner: Owner, members: Iterable[str]) -> bool:
    """True when this budget keeps the owner from being admitted (pure)."""
    if not budget.holding or budget.namespace != owner.namespace:
        return False
    assert budget.spec is not None  # holding implies a valid spec
    return (budget.spec.selector.matches(owner.labels)
            or budget.key in set(members) or budget.key in owner.remembered_budgets)


PLAN_WAIT = timedelta(seconds=10)  # re-decide a deferrable Job whose plan is not written yet


def deferral_hold(owner: Owner, now: datetime) -> Decision | None:
    """Pending while the owner's deferral plan holds it, else None (pure). A Job whose plan
    is not written yet waits for it (never past its deadline); a plan that released it, an
    invalid deadline (the operator runs that Job at once) or a passed window holds nothing."""
    if owner.kind != "Job" or owner.deferrable_until is None:
        return None
    try:
        deadline = parse_deadline(owner.deferrable_until, owner.created_at or now)
    except ConfigError:
        deadline = None
    plan = owner.deferral
    if plan is None:
        if deadline is None or now >= deadline:
            return None
        return Decision(PENDING, (
            f"{owner.ref} is deferrable (deadline {_rfc3339(deadline)}): waiting for CarbonTrack "
            "to plan its low-carbon window"), until=min(now + PLAN_WAIT, deadline))
    if plan.get("state") != HELD:
        return None
    try:
        start = parse_time(str(plan.get("plannedStart")))
        end = min(start, parse_time(str(plan["deadline"]))) if "deadline" in plan else start
    except (ValueError, TypeError, OverflowError):
        return None  # not a plan the operator wrote: it holds nothing
    if now >= end:
        return None
    deadline_text = f" (deadline {plan['deadline']})" if "deadline" in plan else ""
    return Decision(PENDING, (
        f"{owner.ref} deferred to its low-carbon window starting {_rfc3339(end)}{deadline_text}: "
        f"{plan.get('reason', '')}; admitted then"), until=end)


def decide(owner: Owner, budgets: Iterable[BudgetView], members: Iterable[str] = (),
           now: datetime | None = None) -> Decision:
    """Pending with the first holding budget (by key), else Pending while a deferral plan
    holds the owner (only when ``now`` is given), else Ready (pure)."""
    members = set(members)
    for budget in sorted(budgets, key=lambda b: b.key):
        if holds(budget, owner, members):
            limit = budget.spec.limit_text if budget.spec else "?"
            return Decision(PENDING, (
                f"held by CarbonBudget {budget.key}: exceeded ({budget.used or '?'} of {limit} "
                f"in {budget.period_name or 'this period'}) with action Suspend; {owner.ref} is "
                "admitted when the period resets or the limit is raised"), budget.key)
    deferred = deferral_hold(owner, now) if now is not None else None
    if deferred is not None:
        return deferred
    return Decision(READY, f"no exceeded Suspend CarbonBudget holds {owner.ref}")


def unresolved(reason: str) -> Decision:
    """The owner or the budgets cannot be read (yet): keep the Workload queued, say why, and
    decide again later."""
    return Decision(PENDING, f"waiting: {reason}; CarbonTrack decides once it can read them",
                    retry=True)


def _rfc3339(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_state_patch(workload: WorkloadFacts, check: str, decision: Decision,
                      now: datetime) -> dict[str, Any] | None:
    """The server-side apply body that sets our check's state on the Workload's status, or
    None when it already says exactly this (pure). Only our entry is sent: the list is a map
    keyed by name, so other controllers' checks are left alone. The resourceVersion makes it
    conditional on the Workload being as it was when decided."""
    current = workload.checks.get(check)
    if current is not None and current.state == decision.state and current.message == decision.message:
        return None
    changed = current is None or current.state != decision.state or not current.last_transition_time
    since = _rfc3339(now) if changed or current is None else current.last_transition_time
    return {
        "apiVersion": API_VERSION, "kind": "Workload",
        "metadata": {"name": workload.name, "namespace": workload.namespace,
                     "resourceVersion": workload.resource_version},
        "status": {"admissionChecks": [{
            "name": check, "state": decision.state, "message": decision.message,
            "lastTransitionTime": since,
        }]},
    }


def active_condition_patch(check: Mapping[str, Any], now: datetime) -> dict[str, Any] | None:
    """The server-side apply body that marks one of our AdmissionChecks Active, or None
    when it is already (pure)."""
    meta = check.get("metadata") or {}
    status = check.get("status") or {}
    generation = meta.get("generation")
    for cond in status.get("conditions") or []:
        if (isinstance(cond, Mapping) and cond.get("type") == "Active"
                and cond.get("status") == "True" and cond.get("observedGeneration") == generation):
            return None
    condition: dict[str, Any] = {
        "type": "Active", "status": "True", "reason": "Active",
        "message": "the CarbonTrack operator decides this check from CarbonBudgets",
        "lastTransitionTime": _rfc3339(now),
    }
    if isinstance(generation, int):
        condition["observedGeneration"] = generation
    return {"apiVersion": API_VERSION, "kind": "AdmissionCheck",
            "metadata": {"name": str(meta.get("name", ""))},
            "status": {"conditions": [condition]}}


def is_ours(check: Mapping[str, Any], controller_name: str = CONTROLLER_NAME) -> bool:
    return ((check.get("spec") or {}).get("controllerName")) == controller_name


def owner_from_object(body: Mapping[str, Any]) -> Owner:
    """An Owner from the object at the top of the chain (pure)."""
    from .jobs import BUDGETS

    meta = body.get("metadata") or {}
    namespace = str(meta.get("namespace", ""))
    remembered = str((meta.get("annotations") or {}).get(BUDGETS, ""))
    keys = frozenset(k for k in remembered.split(",") if k.startswith(f"{namespace}/"))
    annotations = meta.get("annotations") or {}
    until = annotations.get(DEFERRABLE_UNTIL)
    try:
        created: datetime | None = parse_time(str(meta.get("creationTimestamp")))
    except (ValueError, TypeError, OverflowError):
        created = None
    return Owner(str(body.get("apiVersion", "")), str(body.get("kind", "")), namespace,
                 str(meta.get("name", "")), str(meta.get("uid", "")),
                 dict(meta.get("labels") or {}), keys,
                 deferrable_until=str(until) if until is not None else None,
                 deferral=parse_record(str(annotations.get(DEFERRAL, ""))), created_at=created)
