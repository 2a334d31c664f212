"""Carbon-aware timing of deferrable Jobs: hold each until the lowest-carbon window.

A Job that sets ``carbontrack.io/deferrable-until`` (an RFC 3339 time, or a duration such as
"6h" counted from the Job's creation) may be held until then. It is held through the same
mechanism that Suspend budgets use. The chart's MutatingAdmissionPolicy
``<release>-hold-deferrable`` creates it with ``spec.suspend: true``. Without that policy
the operator suspends it as soon as it sees it. The operator then:

1. asks the intensity provider's forecast for the deferral zone (``--deferral-zone``);
2. picks the start of the lowest-carbon window of ``carbontrack.io/expected-duration``
   (default 1h) that starts no later than the deadline (intensity/window.py);
3. writes the plan to its own annotation ``carbontrack.io/deferral`` (JSON), which the
   admission policy protects from users and which restarts resume from, and posts an Event
   saying what the Job waits for and why;
4. releases the Job (``spec.suspend: false``) at the planned start, never after the deadline.

A Job that Kueue manages (label ``kueue.x-k8s.io/queue-name``) is planned the same way, but
this module never writes its ``spec.suspend``: Kueue owns it (Kueue creates the Job suspended
and resumes it on admission). The operator's Kueue AdmissionCheck holds its Workload instead:
Pending until the planned start (or the deadline, whichever comes first), then Ready
(operator/kueue_checks.py). Every plan or release of such a Job is passed to the listeners
given to ``subscribe`` so that the check is decided again at once.

A Job without a usable forecast runs at once. Reasons include a static provider, a provider
that is down, a forecast in the past, a deadline that has passed and an invalid annotation.
Each is given in a Warning Event and in the annotation. A Job that a CarbonBudget also holds
(``carbontrack.io/suspended-by``) is not resumed by this module: the budget's hold stands and
the enforcer lifts it. When a budget lets a Job go before its window, the enforcer lifts
only the budget's hold and this module releases the Job at the window.

The annotation keeps the counterfactual. It holds the forecast intensity for a start at
submission and for the window run. Accounting copies it into the CarbonRecord, and
``carbontrack report deferrals`` turns it into an estimate of the CO2e avoided. That figure
is an estimate from the forecast, never a measurement, and is never counted in a budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from carbontrack.core import contract
from carbontrack.core.contract import DEFERRABLE_UNTIL, DEFERRAL
from carbontrack.core.errors import CarbonTrackError, ConfigError, TemporaryError
from carbontrack.intensity.forecast import ForecastSource, ForecastUnusable
from carbontrack.intensity.window import Plan, at_once, parse_span, plan

from .jobs import EXPECTED_DURATION, SUSPENDED_BY, JobFacts
from .kube import Conflict, Gone, KubeApi
from .settings import OperatorSettings
from .timeutil import format_time, parse_time

log = logging.getLogger(__name__)

# DEFERRABLE_UNTIL: user input, an RFC 3339 time or a duration after creation;
# DEFERRAL: operator-owned, the plan and its counterfactual (JSON)
DEFAULT_DURATION = timedelta(hours=1)
HELD, RELEASED = "held", "released"
RUNNING_FOR = timedelta(seconds=30)  # a Job running longer than this when first seen is not held
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"  # Kueue manages the Job: it owns spec.suspend


@dataclass(frozen=True)
class DeferralConfig:
    zone: str | None  # the grid zone deferrable Jobs run in; None: no deferral (run at once)
    forecaster: Callable[[], ForecastSource]  # raises ForecastUnusable when there is none


def deadline_of(job: JobFacts) -> datetime:
    """The latest start: an RFC 3339 time, or a duration after the Job's creation."""
    return parse_deadline(job.annotations[DEFERRABLE_UNTIL], job.created_at)


def parse_deadline(value: str, created_at: datetime) -> datetime:
    """``carbontrack.io/deferrable-until`` read as a time (pure; ConfigError when invalid)."""
    raw = value.strip()
    try:
        if raw and raw[0].isdigit() and raw[-1] in "hms" and "T" not in raw:
            return created_at + parse_span(raw, DEFERRABLE_UNTIL)
        return parse_time(raw)
    except (ValueError, TypeError, OverflowError):  # user input: never escapes the handler
        raise ConfigError(f"invalid {DEFERRABLE_UNTIL} {raw!r}: give an RFC 3339 time "
                          "(2026-12-07T06:00:00Z) or a duration after creation ('6h', '90m')") from None


def expected_duration(job: JobFacts) -> tuple[timedelta, str]:
    raw = job.annotations.get(EXPECTED_DURATION)
    if raw is None:
        return DEFAULT_DURATION, f"no {EXPECTED_DURATION}: a 1h window is assumed"
    return parse_span(raw, EXPECTED_DURATION), ""


def job_ref(job: JobFacts) -> dict[str, str]:
    """The Event's involvedObject (a batch/v1 Job: only Jobs are deferred)."""
    return {"kind": "Job", "apiVersion": "batch/v1", "name": job.name, "namespace": job.namespace,
            "uid": job.uid}


def kueue_managed(job: JobFacts) -> bool:
    """Kueue owns this Job's spec.suspend: its AdmissionCheck holds it, never a patch here."""
    return KUEUE_QUEUE in job.labels


def holds(job: JobFacts) -> bool:
    """The operator's plan holds this Job for a later window (the enforcer leaves it held
    when a budget lets it go: this module releases it then)."""
    record = record_of(job)
    return record is not None and record["state"] == HELD


def record_of(job: JobFacts) -> dict[str, Any] | None:
    """The operator's deferral annotation, if it is one it could have written."""
    return parse_record(job.annotations.get(DEFERRAL, ""))


def parse_record(text: str) -> dict[str, Any] | None:
    """A deferral annotation's value, if it is one the operator could have written (pure)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and value.get("state") in (HELD, RELEASED) else None


class DeferralMetrics:
    """Decisions (``decision``: held | at_once) and the estimated CO2e avoided, both exported
    at 0 from the start so that dashboards and increase() see the first one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        family = contract.OPERATOR_JOBS_DEFERRED
        self.decisions = Counter(family.name, family.help, family.labels, registry=registry)
        for decision in ("held", "at_once"):
            self.decisions.labels(decision=decision)
        family = contract.OPERATOR_DEFERRAL_AVOIDED
        self.avoided_grams = Counter(family.name, family.help, family.labels, registry=registry)


def avoided_estimate(plan: Mapping[str, Any], energy_kwh: float | None) -> float | None:
    """energy x (forecast at submission - forecast of the window run), grams; None without
    both forecasts or the energy (reports/deferrals.py explains the basis)."""
    sub, run = plan.get("intensityAtSubmission"), plan.get("intensityAtRun")
    if (energy_kwh is None or not isinstance(sub, (int, float)) or not isinstance(run, (int, float))
            or isinstance(sub, bool) or isinstance(run, bool)):
        return None
    return float(energy_kwh) * (float(sub) - float(run))


class Deferral:
    """Plans, holds and releases deferrable Jobs (one instance per operator)."""

    def __init__(self, kube: KubeApi, clock: Callable[[], datetime], config: DeferralConfig,
                 metrics: DeferralMetrics | None = None) -> None:
        self._kube = kube
        self._clock = clock
        self._config = config
        self._metrics = metrics
        # uid -> (release at, latest facts, the plan as written): the plan is kept here as
        # well as in the annotation, so a release before the next watch event loses nothing
        self._due: dict[str, tuple[datetime, JobFacts, dict[str, Any]]] = {}
        # UIDs this process has decided: a watch event older than the decision (no annotation
        # yet) must not plan the Job a second time
        self._decided: set[str] = set()
        # UIDs released at their window while a budget's hold stood (by the facts then known):
        # whichever of the two lets go last must lift spec.suspend, and either may have acted
        # on facts a moment old, so this module finishes it once the budget's hold is gone
        self._after_budget: set[str] = set()
        # called with each Kueue-managed Job whose plan was written or released: its
        # AdmissionCheck is decided again at once (operator/kueue_admission.py)
        self._listeners: list[Callable[[JobFacts], Awaitable[None]]] = []

    def subscribe(self, listener: Callable[[JobFacts], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    async def _notify(self, job: JobFacts) -> None:
        if not kueue_managed(job):
            return
        for listener in self._listeners:
            try:
                await listener(job)
            except Exception:  # the check's own retry and timer decide it later
                log.exception("deferral listener failed for Job %s/%s", job.namespace, job.name)

    def forget(self, uid: str) -> None:
        self._due.pop(uid, None)
        self._decided.discard(uid)
        self._after_budget.discard(uid)

    async def on_job(self, job: JobFacts) -> None:
        """Called for every event of an unfinished Job; plans each deferrable Job once."""
        if (DEFERRABLE_UNTIL not in job.annotations or job.finished or job.deleting
                or getattr(job, "kind", "Job") != "Job"):  # held through spec.suspend: Jobs only
            return
        if job.uid in self._decided:
            if job.uid in self._due:  # the latest facts: a budget's hold may have come or gone
                when, _, plan = self._due[job.uid]
                self._due[job.uid] = (when, job, plan)
            elif job.uid in self._after_budget:
                await self._after_budget_hold(job)
            return
        self._decided.add(job.uid)  # before any await: later events wait for this decision
        record = record_of(job)
        if record is not None:
            if record["state"] == HELD and job.suspended:  # after a restart: resume the plan
                self._due[job.uid] = (parse_time(str(record["plannedStart"])), job, record)
            return
        decided = False
        try:
            decided = await self._plan(job)
        finally:
            if not decided:  # not written (API error): the Job's next event tries again
                self._decided.discard(job.uid)

    def recorded(self, annotations: Mapping[str, str], energy_kwh: float | None) -> None:
        """A deferred Job's record was written (once per Job): add its estimate."""
        try:
            plan = json.loads(annotations.get(DEFERRAL, ""))
        except (ValueError, RecursionError):
            return
        grams = avoided_estimate(plan, energy_kwh) if isinstance(plan, dict) else None
        if grams is not None and self._metrics is not None:
            self._metrics.avoided_grams.inc(max(grams, 0.0))  # a counter: a worse window adds 0

    async def tick(self) -> None:
        """Release every held Job whose window has come (called every second)."""
        now = self._clock()
        for uid, (when, job, record) in list(self._due.items()):
            if when <= now:
                del self._due[uid]
                if await self._release(job, record, now) is None:
                    # not written (API unavailable): the next tick tries again, so a passing
                    # API error never holds the Job past its window or its deadline
                    self._due.setdefault(uid, (when, job, record))

    async def _plan(self, job: JobFacts) -> bool:
        """Decide and write; False when the decision could not be written."""
        now = self._clock()
        submitted = job.created_at
        try:
            deadline = deadline_of(job)
            duration, note = expected_duration(job)
        except ConfigError as err:
            return await self._run_now(job, at_once(now, f"{err}: runs at once"), None, None)
        if not job.suspended and job.started_at is not None and now - job.started_at > RUNNING_FOR:
            # seen late (the operator was down): stopping work that has run for a while
            # would waste it
            return await self._run_now(job, at_once(now, "already running when the operator saw it: "
                                                         "not held"), deadline, duration)
        chosen = await self._choose(now, deadline, duration)
        if note:
            chosen = replace(chosen, reason=f"{chosen.reason}; {note}")
        if not chosen.deferred:
            return await self._run_now(job, chosen, deadline, duration)
        body = _record(HELD, chosen, submitted, deadline, duration, self._config.zone)
        if not await self._patch(job, plan_patch(job, body, suspend=True)):
            return False
        self._due[job.uid] = (chosen.start, job, body)
        if self._metrics is not None:
            self._metrics.decisions.labels(decision="held").inc()
        await self._notify(job)
        await self._event(job, "DeferredForLowCarbon", f"held until {format_time(chosen.start)} "
                          f"(deadline {format_time(deadline)}): {chosen.reason}", False)
        return True

    async def _choose(self, now: datetime, deadline: datetime, duration: timedelta) -> Plan:
        zone = self._config.zone
        if zone is None:
            return at_once(now, "no forecast: the operator has no --deferral-zone")
        try:
            # the provider clients are blocking (urllib): off the event loop
            forecast = await asyncio.to_thread(lambda: self._config.forecaster().forecast(zone))
        except ForecastUnusable as err:
            return at_once(now, f"no usable forecast for {zone} ({err}): runs at once")
        except CarbonTrackError as err:
            return at_once(now, f"no forecast for {zone} ({err}): runs at once")
        return plan(forecast, now=now, duration=duration, deadline=deadline)

    async def _run_now(self, job: JobFacts, chosen: Plan, deadline: datetime | None,
                       duration: timedelta | None) -> bool:
        body = _record(RELEASED, chosen, job.created_at, deadline, duration, self._config.zone,
                       released_at=chosen.start)
        resume = job.suspended and SUSPENDED_BY not in job.annotations
        if not await self._patch(job, plan_patch(job, body, suspend=False if resume else None)):
            return False
        if self._metrics is not None:
            self._metrics.decisions.labels(decision="at_once").inc()
        await self._notify(job)
        lowest = chosen.forecast_chose  # else no forecast, a passed deadline, no covered window
        await self._event(job, "RunsNowLowestCarbon" if lowest else "NotDeferred",
                          f"runs at once: {chosen.reason}", not lowest)
        return True

    async def _after_budget_hold(self, job: JobFacts) -> None:
        """A Job released at its window while a budget held it: once no budget holds it, it
        must not stay suspended (the enforcer may have left it so, seeing this module's hold
        in facts older than the release)."""
        if not job.suspended or kueue_managed(job):
            self._after_budget.discard(job.uid)  # running, or Kueue's to resume: nothing to do
        elif (SUSPENDED_BY not in job.annotations and not holds(job)
              and await self._patch(job, {"spec": {"suspend": False}}) is not None):
            self._after_budget.discard(job.uid)  # written, or the Job changed or went away

    async def _release(self, job: JobFacts, planned: dict[str, Any], now: datetime) -> bool | None:
        """True: released; False: the Job changed or went away; None: try again later."""
        record = {**planned, "state": RELEASED, "releasedAt": format_time(now)}
        held_by_budget = SUSPENDED_BY in job.annotations
        if held_by_budget:
            # it runs when the budget lets it go, not in this window: the window's forecast is
            # not what it ran at, so the record claims no avoided-CO2e estimate
            record["intensityAtRun"] = None
            record["reason"] = (f"{record.get('reason', '')}; its CarbonBudget still held it at the "
                                "window, so it ran later: no estimate of CO2e avoided")
        written = await self._patch(job, plan_patch(job, record,
                                                    suspend=None if held_by_budget else False))
        if written and held_by_budget:
            self._after_budget.add(job.uid)
        if written:
            await self._notify(job)
        if written:
            why = ("its CarbonBudget still holds it" if held_by_budget else
                   f"the planned lowest-carbon window ({record.get('intensityAtRun', '?')} g/kWh "
                   f"forecast vs {record.get('intensityAtSubmission', '?')} at submission)")
            await self._event(job, "ReleasedForLowCarbon", f"released at {format_time(now)}: {why}",
                              False)
        return written

    async def _patch(self, job: JobFacts, body: Mapping[str, Any]) -> bool | None:
        """True: written; False: the Job changed or went away; None: the API failed (a plan
        is retried at the Job's next event, a release at the next tick)."""
        try:
            await self._kube.patch_job(job.namespace, job.name, job.uid, body)
        except (Gone, Conflict) as err:
            log.info("deferrable Job %s/%s changed or went away: %s", job.namespace, job.name, err)
            return False
        except TemporaryError as err:
            log.warning("could not write the deferral of Job %s/%s (retried): %s",
                        job.namespace, job.name, err)
            return None
        return True

    async def _event(self, job: JobFacts, reason: str, message: str, warning: bool) -> None:
        try:
            await self._kube.post_event(job_ref(job), reason, message, warning, self._clock())
        except TemporaryError as err:
            log.warning("Event %s for Job %s/%s not posted: %s", reason, job.namespace, job.name, err)


def plan_patch(job: JobFacts, record: Mapping[str, Any], suspend: bool | None) -> dict[str, Any]:
    """The Job patch that writes the plan and, unless ``suspend`` is None or Kueue manages the
    Job (Kueue owns spec.suspend; the AdmissionCheck holds its Workload), sets spec.suspend
    (pure)."""
    patch: dict[str, Any] = {"metadata": {"annotations": {DEFERRAL: json.dumps(record, sort_keys=True)}}}
    if suspend is not None and not kueue_managed(job):
        patch["spec"] = {"suspend": suspend}
    return patch


def _record(state: str, chosen: Plan, submitted: datetime, deadline: datetime | None,
            duration: timedelta | None, zone: str | None,
            released_at: datetime | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "state": state,
        "submittedAt": format_time(submitted),
        "plannedStart": format_time(chosen.start),
        "reason": chosen.reason,
        "zone": zone or "",
        "intensityAtSubmission": _round(chosen.at_submission_g_per_kwh),
        "intensityAtRun": _round(chosen.at_start_g_per_kwh),
        "basis": chosen.basis,
    }
    if deadline is not None:
        body["deadline"] = format_time(deadline)
    if duration is not None:
        body["expectedDurationSeconds"] = duration.total_seconds()
    if released_at is not None:
        body["releasedAt"] = format_time(released_at)
    return body


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def deferral_config(settings: OperatorSettings, env: Mapping[str, str] | None = None) -> DeferralConfig:
    """The forecast source from the operator's intensity selection (the exporter's and the
    tracker's path: carbontrack.intensity.selection); missing credentials fail at start."""
    from carbontrack.intensity.selection import IntensityConfig, select

    selection = select(settings.intensity or IntensityConfig(), os.environ if env is None else env)
    return DeferralConfig(settings.deferral_zone, selection.forecaster)


def record_annotations(job: JobFacts) -> dict[str, str]:
    """The deferral annotation for the Job's CarbonRecord entry (the counterfactual)."""
    return {DEFERRAL: job.annotations[DEFERRAL]} if record_of(job) is not None else {}
