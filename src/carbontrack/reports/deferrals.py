"""`carbontrack report deferrals`: each deferred Job's counterfactual and the CO2e it is
estimated to have avoided, from the operator's CarbonRecords.

The operator writes a deferrable Job's plan into the annotation ``carbontrack.io/deferral``
(operator/deferral.py) and copies it into the Job's record entry. For each entry this report
shows three things. It shows when the Job was submitted, its deadline, and when it was
released, with the reason. It shows the forecast intensity for a start at submission and for
the window it ran in. It also shows an estimated saving:

    avoided_g = energy_kwh x (intensity at submission - intensity at run)

Here energy is the metered IT energy of the record and both intensities come from the same
forecast. Facility overhead (PUE) is left out. The figure is an **estimate**: the grid never
ran the counterfactual, and forecasts err. Each row says so and gives its basis. It is never
added to a total or a budget. A Job that ran at once because there was no forecast, or that a
CarbonBudget still held at its window (it ran later), has no estimate (blank), only its reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from carbontrack.core.contract import DEFERRAL
from carbontrack.core.records import RecordEntry, parse_object

ESTIMATE_BASIS = ("estimate: metered IT energy x (forecast intensity for a start at submission - "
                  "forecast intensity of the window run); PUE not included; not a measurement")


@dataclass(frozen=True)
class DeferralRow:
    namespace: str
    job: str
    uid: str
    submitted_at: str
    deadline: str
    released_at: str
    reason: str
    zone: str
    intensity_at_submission: float | None  # gCO2e/kWh, forecast
    intensity_at_run: float | None  # gCO2e/kWh, forecast
    energy_kwh: float | None
    co2e_grams: float | None  # measured, as accounted
    avoided_grams_estimate: float | None
    forecast: str  # the forecast's source, horizon and basis
    estimate_basis: str = ESTIMATE_BASIS


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def row_of(entry: RecordEntry) -> DeferralRow | None:
    """The entry's deferral, or None for a Job that was not deferrable."""
    try:
        plan = json.loads(entry.annotations.get(DEFERRAL, ""))
    except (ValueError, RecursionError):
        return None
    if not isinstance(plan, dict):
        return None
    sub, run = _number(plan.get("intensityAtSubmission")), _number(plan.get("intensityAtRun"))
    avoided = None
    if sub is not None and run is not None and entry.energy_kwh is not None:
        avoided = entry.energy_kwh * (sub - run)
    return DeferralRow(
        namespace=entry.namespace, job=entry.name, uid=entry.uid,
        submitted_at=str(plan.get("submittedAt", "")), deadline=str(plan.get("deadline", "")),
        released_at=str(plan.get("releasedAt", "")), reason=str(plan.get("reason", "")),
        zone=str(plan.get("zone", "")), intensity_at_submission=sub, intensity_at_run=run,
        energy_kwh=entry.energy_kwh, co2e_grams=entry.co2e_grams,
        avoided_grams_estimate=avoided, forecast=str(plan.get("basis", "")))


def rows(entries: Iterable[RecordEntry]) -> list[DeferralRow]:
    found = [r for e in entries if (r := row_of(e)) is not None]
    return sorted(found, key=lambda r: (r.namespace, r.submitted_at, r.job))


def render_table(found: list[DeferralRow]) -> str:
    if not found:
        return "no deferrable Jobs in the records"

    def g(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    out = [f"{'JOB':<28} {'SUBMITTED':<22} {'RELEASED':<22} {'AT SUBMIT':>9} {'AT RUN':>8} "
           f"{'ENERGY kWh':>11} {'AVOIDED g (estimate)':>20}  REASON"]
    for r in found:
        out.append(f"{r.namespace + '/' + r.job:<28} {r.submitted_at:<22} {r.released_at:<22} "
                   f"{g(r.intensity_at_submission, '.1f'):>9} {g(r.intensity_at_run, '.1f'):>8} "
                   f"{g(r.energy_kwh, '.3g'):>11} {g(r.avoided_grams_estimate, '.3g'):>20}  {r.reason}")
    out.append(f"AVOIDED is an {ESTIMATE_BASIS}.")
    return "\n".join(out)


def main(argv: list[str], api_client_factory: Callable[[str | None, str | None], Any]) -> int:
    p = argparse.ArgumentParser(prog="carbontrack report deferrals",
                                description="Deferred Jobs' counterfactuals and the estimated CO2e "
                                            "avoided, from the operator's CarbonRecords.")
    p.add_argument("--kubeconfig", default=None)
    p.add_argument("--context", default=None)
    p.add_argument("--namespace", action="append", default=[], help="repeatable; default: all")
    p.add_argument("--format", choices=("table", "json"), default="table")
    a = p.parse_args(argv)
    from .sources_cluster import IdentityKeys
    from .sources_records import RecordSource

    source = RecordSource(api_client_factory(a.kubeconfig, a.context), IdentityKeys())
    entries: list[RecordEntry] = []
    for obj in source.objects(a.namespace, None, None):
        parsed = parse_object(obj)
        for err in parsed.errors:
            print(f"report deferrals: skipped: {err}", file=sys.stderr)
        entries += parsed.entries.values()
    found = rows(entries)
    if a.format == "json":
        print(json.dumps([asdict(r) for r in found], indent=2))
    else:
        print(render_table(found))
    return 0

