"""The Kueue AdmissionCheck controller (decisions and patches: kueue_checks.py).

Fed by kopf events on AdmissionChecks, Workloads and CarbonBudgets (``register``); keeps its
own budget views (``budget_book.budget_view``, the same reading the operator's budget book
uses) so that a budget's status update, such as a raised limit, re-decides every Workload
that waits on one of our checks at once. A Workload held for a deferral's low-carbon window
is decided again when the window comes (``decide_due``, every second) and whenever the
deferral writes its owner's plan (``on_deferral``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import kopf

from carbontrack.core import contract, owners
from carbontrack.core.errors import TemporaryError

from .apiclient import APPLY_PATCH, ApiError, ApiTransport, Conflict, Gone, resource_path
from .budget_book import budget_view
from .enforcement import BudgetView
from .jobs import JobFacts
from .kueue_checks import (
    CONTROLLER_NAME,
    FIELD_MANAGER,
    GROUP,
    VERSION,
    Decision,
    Owner,
    OwnerRef,
    WorkloadFacts,
    active_condition_patch,
    check_state_patch,
    checks_to_decide,
    decide,
    is_ours,
    owner_from_object,
    unresolved,
    workload_facts,
)

log = logging.getLogger(__name__)
MAX_OWNER_DEPTH = 8  # Workload -> Job -> CronJob is 2; a longer chain is a cycle or abuse
# what an API call of the controller can raise besides a bug
API_ERRORS = (ApiError, Gone, Conflict, TemporaryError)


class OwnerUnreadable(Exception):
    """The owner chain cannot be followed (gone, a cycle, an unknown kind)."""


class KueueApi:
    """The reads and status writes of the controller, over the operator's transport. Errors
    are apiclient's: Gone (404), Conflict (409), TemporaryError, ApiError."""

    def __init__(self, transport: ApiTransport) -> None:
        self._http = transport
        self._plurals: dict[tuple[str, str], str] = {}

    async def apply_workload_status(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        await self._apply(resource_path(GROUP, VERSION, "workloads", meta["namespace"], meta["name"], "status"),
                          f"Workload {meta['namespace']}/{meta['name']} status", body)

    async def list_budgets(self, namespace: str) -> list[dict[str, Any]]:
        listed = await self._http.get(
            resource_path(contract.API_GROUP, contract.API_VERSION, "carbonbudgets", namespace),
            f"CarbonBudgets in {namespace}")
        return [dict(item) for item in listed.get("items") or []]

    async def apply_check_status(self, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        await self._apply(resource_path(GROUP, VERSION, "admissionchecks", None, name, "status"),
                          f"AdmissionCheck {name} status", body)

    async def _apply(self, path: str, what: str, body: dict[str, Any]) -> None:
        """Server-side apply as our field manager, taking over conflicting fields."""
        await self._http.request("PATCH", path, what, query={"fieldManager": FIELD_MANAGER, "force": "true"},
                                 body=body, content_type=APPLY_PATCH, answer=False)

    async def get_owned(self, namespace: str, ref: OwnerRef) -> dict[str, Any]:
        """GET the object an ownerReference names (its plural from API discovery)."""
        base, plural = await self._resource(ref.api_version, ref.kind)
        body = await self._http.get(f"{base}/namespaces/{quote(namespace, safe='')}/{plural}/"
                                    f"{quote(ref.name, safe='')}", f"{ref.kind} {namespace}/{ref.name}")
        return body if isinstance(body, dict) else {}

    async def _resource(self, api_version: str, kind: str) -> tuple[str, str]:
        """The API path and plural of a kind, from discovery (cached per apiVersion)."""
        base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        if (api_version, kind) not in self._plurals:
            try:
                data = await self._http.get(base, f"discovery of {api_version}")
            except Gone as err:
                raise OwnerUnreadable(f"the API server serves no {api_version}") from err
            for res in (data.get("resources") or []) if isinstance(data, dict) else []:
                if "/" not in str(res.get("name", "")):
                    self._plurals[(api_version, str(res.get("kind", "")))] = str(res["name"])
            if (api_version, kind) not in self._plurals:
                raise OwnerUnreadable(f"the API server serves no kind {kind} in {api_version}")
        return base, self._plurals[(api_version, kind)]

    def close(self) -> None:
        """Nothing of its own: the transport's owner (cli.run) closes it."""


class KueueAdmission:
    """Decides our AdmissionChecks on Workloads from the CarbonBudgets."""

    def __init__(self, api: KueueApi, clock: Callable[[], datetime],
                 controller_name: str = CONTROLLER_NAME) -> None:
        self._api = api
        self._clock = clock
        self._controller_name = controller_name
        self.checks: set[str] = set()  # names of AdmissionChecks with our controllerName
        self.budgets: dict[str, BudgetView] = {}
        self.waiting: dict[str, WorkloadFacts] = {}  # Workload UID -> facts, not decided Ready
        self._members: dict[str, set[str]] = {}  # owner UID -> budgets that held it
        # Namespaces whose budgets were listed once: at start-up a Workload's event can come
        # before the budget watch has delivered its budgets, and deciding then would admit
        # what an exceeded budget holds.
        self._synced: set[str] = set()
        # Workloads whose decision or write failed on an API error: no Kueue event may come
        # again for them, so the retry loop decides them again
        self.retry: set[str] = set()
        # Workload UID -> when a deferral's hold of it ends: it is decided again then
        self.due: dict[str, datetime] = {}

    # ---------------------------------------------------------------- events
    async def on_check_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        name = str((body.get("metadata") or {}).get("name", ""))
        if event_type == "DELETED" or not is_ours(body, self._controller_name):
            self.checks.discard(name)
            return
        if name not in self.checks:
            self.checks.add(name)
            await self.decide_all()  # Workloads seen before the check was
        patch = active_condition_patch(body, self._clock())
        if patch is not None:
            try:
                await self._api.apply_check_status(patch)
            except API_ERRORS as err:
                log.warning("AdmissionCheck %s not marked Active yet: %s", name, err)

    async def on_workload_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        facts = workload_facts(body)
        if not facts.uid:
            return
        if event_type == "DELETED" or facts.admitted or facts.finished:
            self.waiting.pop(facts.uid, None)
            self.retry.discard(facts.uid)
            self.due.pop(facts.uid, None)
            return
        self.waiting[facts.uid] = facts
        await self._decide(facts)

    async def on_budget_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        before = self.budgets.get(key)
        if event_type == "DELETED":
            self.budgets.pop(key, None)
        else:
            self.budgets[key] = budget_view(body)
        after = self.budgets.get(key)
        # a budget that starts or stops holding (a raised limit, a new period, a new or
        # deleted budget) re-decides every waiting Workload
        if (before.holding if before else False) != (after.holding if after else False):
            await self.decide_all()

    # ---------------------------------------------------------------- decisions
    async def decide_all(self) -> None:
        for facts in list(self.waiting.values()):
            await self._decide(facts)

    async def decide_due(self) -> None:
        """Decide again the Workloads whose deferral hold has ended (called every second)."""
        now = self._clock()
        for uid, when in list(self.due.items()):
            facts = self.waiting.get(uid)
            if facts is None:
                self.due.pop(uid, None)
            elif when <= now:
                await self._decide(facts)

    async def on_deferral(self, job: JobFacts) -> None:
        """The deferral wrote the plan of a Kueue-managed Job (or released it): decide its
        waiting Workloads again now, not at the next timer."""
        for facts in list(self.waiting.values()):
            if facts.owner is not None and facts.owner.uid == job.uid:
                await self._decide(facts)

    async def _decide(self, facts: WorkloadFacts) -> None:
        names = checks_to_decide(facts, self.checks)
        if not names:
            self.retry.discard(facts.uid)
            self.due.pop(facts.uid, None)
            return
        decision = await self._decision(facts)
        if decision.until is not None:
            self.due[facts.uid] = decision.until
        else:
            self.due.pop(facts.uid, None)
        failed = decision.retry
        for check in names:
            patch = check_state_patch(facts, check, decision, self._clock())
            if patch is None:
                continue
            try:
                await self._api.apply_workload_status(patch)
            except API_ERRORS as err:
                log.warning("check %s of Workload %s/%s not written: %s",
                            check, facts.namespace, facts.name, err)
                failed = failed or not isinstance(err, Conflict)
                continue
            log.info("Workload %s/%s: check %s %s: %s", facts.namespace, facts.name, check,
                     decision.state, decision.message)
        if failed:
            self.retry.add(facts.uid)
        else:
            self.retry.discard(facts.uid)

    async def retry_failed(self) -> None:
        """Decide again the Workloads whose last decision or write hit an API error (a stale
        resourceVersion is not one: the newer Workload's own event decides)."""
        for uid in list(self.retry):
            facts = self.waiting.get(uid)
            if facts is None:
                self.retry.discard(uid)
            else:
                await self._decide(facts)

    async def _decision(self, facts: WorkloadFacts) -> Decision:
        try:
            await self._sync_budgets(facts.namespace)
        except API_ERRORS as err:
            return unresolved(f"the CarbonBudgets of namespace {facts.namespace} could not be "
                              f"listed ({err})")
        try:
            owner = await self.top_owner(facts)
        except OwnerUnreadable as err:
            return unresolved(str(err))
        except API_ERRORS as err:
            return unresolved(f"the owner of Workload {facts.namespace}/{facts.name} could not "
                              f"be read ({err})")
        members = self._members.setdefault(owner.uid, set())
        decision = decide(owner, self.budgets.values(), members, now=self._clock())
        if decision.budget is not None:
            members.add(decision.budget)
        return decision

    async def _sync_budgets(self, namespace: str) -> None:
        """List the namespace's budgets once; views the watch delivered are kept (as new or
        newer than the list)."""
        if namespace in self._synced:
            return
        for body in await self._api.list_budgets(namespace):
            meta = body.get("metadata") or {}
            self.budgets.setdefault(f"{meta.get('namespace')}/{meta.get('name')}", budget_view(body))
        self._synced.add(namespace)

    async def top_owner(self, facts: WorkloadFacts) -> Owner:
        """The Workload's top-level owner, as accounting sees it: the root of the walk in
        carbontrack.core.owners (a Job under a JobSet is the JobSet's; one under a CronJob is
        its own). An owner of a kind that walk does not know (a plain Pod, a kind Kueue
        manages that CarbonTrack does not account yet) is the root itself."""
        if facts.owner is None:  # a Workload created directly: it is the top
            return Owner(f"{GROUP}/{VERSION}", "Workload", facts.namespace, facts.name,
                         facts.uid, facts.labels)
        start = owners.OwnerRef(facts.owner.api_version, facts.owner.kind, facts.owner.name,
                                facts.owner.uid)
        walk = owners.RootWalk(start, MAX_OWNER_DEPTH)
        bodies: dict[str, dict[str, Any]] = {}
        while (ref := walk.pending) is not None:
            body = await self._read(facts.namespace, ref)
            if body is not None:
                bodies[ref.uid] = body
            walk.feed(body)
        result = walk.result
        assert result is not None
        if result.reason == owners.DANGLING:
            raise OwnerUnreadable(result.message or "an owner does not exist")
        root = result.root
        body = bodies.get(root.uid) or await self._read(facts.namespace, root)
        if body is None or str((body.get("metadata") or {}).get("uid")) != root.uid:
            raise OwnerUnreadable(f"owner {root.kind} {facts.namespace}/{root.name} not found")
        if result.reason is not None:
            log.info("Workload %s/%s: %s", facts.namespace, facts.name, result.message)
        return owner_from_object(body)

    async def _read(self, namespace: str, ref: owners.OwnerRef) -> dict[str, Any] | None:
        try:
            return await self._api.get_owned(namespace, OwnerRef(ref.api_version, ref.kind,
                                                                 ref.name, ref.uid))
        except Gone:
            return None


RETRY_INTERVAL_S = 10.0
DUE_INTERVAL_S = 1.0  # a deferral's window opens within a second of its planned start


def register(registry: kopf.OperatorRegistry, admission: KueueAdmission,
             retry_interval_s: float = RETRY_INTERVAL_S) -> None:
    """Add the controller's handlers to the operator's kopf registry, and its retry loop."""
    loops: list[asyncio.Task[None]] = []

    async def retry_loop() -> None:
        while True:
            await asyncio.sleep(retry_interval_s)
            try:
                await admission.retry_failed()
            except Exception:  # never let the loop die: the next round tries again
                log.exception("Kueue admission retry failed")

    async def due_loop() -> None:
        while True:
            await asyncio.sleep(DUE_INTERVAL_S)
            try:
                await admission.decide_due()
            except Exception:  # never let the loop die: the next round tries again
                log.exception("Kueue admission (deferral windows) failed")

    @kopf.on.startup(registry=registry)
    async def _start_kueue_retries(**_: Any) -> None:
        loops.append(asyncio.create_task(retry_loop()))
        loops.append(asyncio.create_task(due_loop()))

    @kopf.on.cleanup(registry=registry)
    async def _stop_kueue_retries(**_: Any) -> None:
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    @kopf.on.event(GROUP, VERSION, "admissionchecks", registry=registry)
    async def _check(type: str, body: kopf.Body, **_: Any) -> None:  # kopf passes `type`
        await admission.on_check_event(type, dict(body))

    @kopf.on.event(GROUP, VERSION, "workloads", registry=registry)
    async def _workload(type: str, body: kopf.Body, **_: Any) -> None:
        await admission.on_workload_event(type, dict(body))

    @kopf.on.event(contract.API_GROUP, contract.API_VERSION, "carbonbudgets", registry=registry)
    async def _budget_for_kueue(type: str, body: kopf.Body, **_: Any) -> None:
        await admission.on_budget_event(type, dict(body))
