"""CarbonBudget spec parsing and status computation (pure: no I/O, the clock is a parameter).

`parse_spec` re-checks every rule the CRD's CEL validations enforce, so a cluster without
CEL still gets a readable error (as a status condition) instead of a silent misbehaviour.
`compute_status` derives everything in the status from the ledger and the previous
status: running it twice gives the same answer, so it is safe to call on every event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from carbontrack.core.errors import ConfigError

from .ledger import Ledger
from .mass import format_mass, parse_mass
from .period import Period, Window, parse_period
from .selector import LabelSelector
from .timeutil import format_time, parse_time

ACTIONS = ("Warn", "Suspend")
DEFAULT_THRESHOLDS = (50, 80)


@dataclass(frozen=True)
class BudgetSpec:
    limit_grams: float
    limit_text: str
    period: Period
    selector: LabelSelector
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    action: str = "Warn"


def parse_spec(spec: Mapping[str, object]) -> BudgetSpec:
    limit = spec.get("limit")
    if not isinstance(limit, str):
        raise ConfigError('spec.limit is required: a mass with a unit, e.g. "250kg"')
    period_raw = spec.get("period")
    if not isinstance(period_raw, Mapping):
        raise ConfigError("spec.period is required: type Calendar (with calendar) or Rolling")
    if "selector" not in spec:
        raise ConfigError("spec.selector is required ({} selects every Job in the namespace)")
    thresholds_raw = spec.get("thresholds", list(DEFAULT_THRESHOLDS))
    if not isinstance(thresholds_raw, list) or not all(
        isinstance(t, int) and not isinstance(t, bool) for t in thresholds_raw
    ):
        raise ConfigError("spec.thresholds must be a list of whole percentages, e.g. [50, 80]")
    if not all(1 <= t <= 100 for t in thresholds_raw):
        raise ConfigError("thresholds are percentages between 1 and 100")
    if len(set(thresholds_raw)) != len(thresholds_raw):
        raise ConfigError("thresholds must not repeat a value")
    action = spec.get("action", "Warn")
    if action not in ACTIONS:
        raise ConfigError(f"spec.action {action!r} is not supported: use Warn or Suspend")
    return BudgetSpec(
        limit_grams=parse_mass(limit),
        limit_text=limit,
        period=parse_period(dict(period_raw)),
        selector=LabelSelector.parse(spec.get("selector")),
        thresholds=tuple(sorted(thresholds_raw)),
        action=str(action),
    )


@dataclass(frozen=True)
class Notification:
    """Something worth an Event on the budget (and, for Exceeded, on the Job that did it)."""

    reason: str  # ThresholdCrossed | Exceeded | Recovered
    message: str
    warning: bool = True
    threshold: int | None = None


@dataclass(frozen=True)
class StatusUpdate:
    status: dict[str, object]  # merge-patch body for .status (ledger pruning included)
    notifications: list[Notification] = field(default_factory=list)
    exceeded: bool = False
    window: Window | None = None


def compute_status(
    spec: BudgetSpec, ledger: Ledger, previous: Mapping[str, object], now: datetime
) -> StatusUpdate:
    window = spec.period.window(now)
    totals = ledger.totals(window)
    used = totals.co2e_grams
    percent = 100.0 * used / spec.limit_grams
    exceeded = used >= spec.limit_grams  # reaching the limit counts: the next Job would go over
    # A calendar period resets at its end; a rolling window slides and never resets, so
    # only a changed window (e.g. 7d -> 30d) starts afresh. Without this a rolling budget
    # re-sent every threshold Event on each update and moved exceededAt forward, letting
    # Jobs created since the budget went over escape suspension.
    same_period = previous.get("periodName") == window.name and (
        window.sliding or previous.get("periodStart") == format_time(window.start))
    notified_before = previous.get("notifiedThresholds") if same_period else None
    notified = {t for t in (notified_before if isinstance(notified_before, list) else [])
                if isinstance(t, int)}
    was_exceeded = bool(previous.get("exceeded")) and same_period
    # A raised limit or a new period clears "exceeded"; the Recovered notice releases Jobs.
    was_exceeded_any = bool(previous.get("exceeded"))

    notes: list[Notification] = []
    for t in spec.thresholds:
        if percent >= t and t not in notified:
            notified.add(t)
            if t < 100 or not exceeded:
                notes.append(
                    Notification(
                        "ThresholdCrossed",
                        f"{t}% of the CO2e budget used: {format_mass(used)} of "
                        f"{spec.limit_text} in {window.name}",
                        threshold=t,
                    )
                )
    # Forget thresholds the usage has fallen back below (limit raised), so they fire again.
    notified = {t for t in notified if percent >= t}

    exceeded_at = previous.get("exceededAt") if was_exceeded else None
    if exceeded and not was_exceeded:
        # Whole seconds, like Jobs' creationTimestamp: a Job created in the same second as the
        # budget went over counts as created after it (suspended rather than let through).
        exceeded_at = format_time(now.replace(microsecond=0))
        action = (
            "new matching Jobs will be suspended"
            if spec.action == "Suspend"
            else "action Warn: Jobs keep running"
        )
        notes.append(
            Notification(
                "Exceeded",
                f"CO2e budget exceeded: {format_mass(used)} of {spec.limit_text} "
                f"({percent:.1f}%) in {window.name}; {action}",
            )
        )
    if not exceeded and was_exceeded_any:
        notes.append(
            Notification(
                "Recovered",
                f"CO2e budget within its limit again: {format_mass(used)} of {spec.limit_text} "
                f"in {window.name}",
                warning=False,
            )
        )
        exceeded_at = None

    prune = {e.uid: None for e in ledger.entries() if e.finished_at < window.start}
    prune_folded = {format_time(b.start): None for b in ledger.folded() if b.start < window.start}
    status: dict[str, object] = {
        "used": format_mass(used),
        "usedGrams": used,  # full precision: mg-sized budgets exist
        "limitGrams": spec.limit_grams,
        "remainingGrams": max(spec.limit_grams - used, 0.0),
        "percent": round(percent, 2) if math.isfinite(percent) else None,
        "exceeded": exceeded,
        "exceededAt": exceeded_at,
        "periodName": window.name,
        "periodStart": format_time(window.start),
        "periodEnd": format_time(window.end),
        "jobsCounted": totals.jobs_counted,
        "jobsWithoutData": totals.jobs_without_data,
        "notifiedThresholds": sorted(notified),
        "lastUpdate": format_time(now),
        "conditions": _conditions(previous, exceeded, used, spec, window, now),
    }
    if prune:
        status["ledger"] = prune
    if prune_folded:
        status["ledgerFolded"] = prune_folded
    return StatusUpdate(status, notes, exceeded, window)


def invalid_status(previous: Mapping[str, object], error: str, now: datetime) -> dict[str, object]:
    """Status for a spec the operator cannot use (only reachable without CEL validation)."""
    cond = _condition(previous, "Valid", "False", "InvalidSpec", error, now)
    return {"lastUpdate": format_time(now), "conditions": [cond]}


def _conditions(
    previous: Mapping[str, object],
    exceeded: bool,
    used: float,
    spec: BudgetSpec,
    window: Window,
    now: datetime,
) -> list[dict[str, object]]:
    exceeded_cond = _condition(
        previous,
        "Exceeded",
        "True" if exceeded else "False",
        "LimitReached" if exceeded else "WithinLimit",
        f"{format_mass(used)} of {spec.limit_text} used in {window.name}",
        now,
    )
    valid = _condition(previous, "Valid", "True", "SpecValid", "spec accepted", now)
    return [valid, exceeded_cond]


def _condition(
    previous: Mapping[str, object], type_: str, status: str, reason: str, message: str,
    now: datetime,
) -> dict[str, object]:
    last = now
    for cond in previous.get("conditions") or []:  # type: ignore[attr-defined]
        if isinstance(cond, Mapping) and cond.get("type") == type_ and cond.get("status") == status:
            stamp = cond.get("lastTransitionTime")
            if isinstance(stamp, str):
                last = parse_time(stamp)
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": format_time(last),
    }
