"""What the operator needs to know about a Job, read from its manifest (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from carbontrack.core import contract
from carbontrack.core.accelerators import VENDORS
from carbontrack.core.contract import operator_owned as operator_owned  # re-exported
from carbontrack.core.errors import ConfigError

from .timeutil import parse_time

# The keys live in carbontrack.core.contract; these names are the operator's shorthand.
ANNOTATION_PREFIX = contract.KEY_PREFIX
ACCOUNTED_AT = contract.ACCOUNTED_AT
# The UID the accounting annotations belong to. Annotations travel with a manifest
# (`kubectl get -o yaml | kubectl apply`, templating from an old Job), so accounted-at alone
# would let a re-created Job (new UID) escape accounting and its budget.
ACCOUNTED_UID = contract.ACCOUNTED_UID
REPORT = contract.REPORT
SUSPENDED_BY = contract.SUSPENDED_BY
EXPECTED_DURATION = contract.EXPECTED_DURATION
FINALIZER = contract.ACCOUNTING_FINALIZER
# The budgets (namespace/name) that selected a Job while it ran, written by the operator when
# it first sees the Job: relabelling the Job later does not take it out of them.
BUDGETS = contract.BUDGETS
# every GPU vendor's whole-GPU resource names (carbontrack.core.accelerators)
GPU_RESOURCES = tuple(r for v in VENDORS for r in v.gpu_resources)
# carbontrack.io/ annotations that users write as inputs (identity, projection, sync marks).
# Every other carbontrack.io/ key is the operator's (operator_owned): the admission policy
# rejects anyone else setting or changing it, and the operator never trusts its value (the
# record is the truth).
USER_ANNOTATIONS = contract.USER_ANNOTATIONS


@dataclass(frozen=True, slots=True)  # slots: ~1 KiB less per workload held (10,000 present)
class JobFacts:
    uid: str
    namespace: str
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None  # Complete/Failed condition time, or deletion time (Deleted)
    outcome: str | None  # "Complete" | "Failed" | "Deleted" | None while running
    deleting: bool
    finalizers: tuple[str, ...]
    suspended: bool
    completions: int | None
    parallelism: int
    succeeded: int
    active: int
    gpus_per_pod: int
    failed: int = 0
    # What a report line needs from the pod template (node selector, container resources):
    # copied into the operator's record so the line survives the Job's deletion.
    template: dict[str, Any] = field(default_factory=dict)
    # The workload kind (operator/workloads/): "Job" for batch/v1 Jobs; JobFacts describe
    # every finished-workload kind (PyTorchJob, JobSet, ...) with the same fields.
    kind: str = "Job"
    api_version: str = "batch/v1"

    @property
    def remembered_budgets(self) -> frozenset[str]:
        """Budget keys in the operator's membership annotation (a hint only: the operator
        adds what it knows itself; see handlers)."""
        raw = self.annotations.get(BUDGETS, "")
        return frozenset(k for k in raw.split(",") if k.count("/") == 1)

    @property
    def ever_ran(self) -> bool:
        """The API shows a pod of this Job ran (or runs). A Job created suspended and never
        resumed has none; so may a Job suspended after running (the Job controller clears
        startTime on suspension), which is why this is used only to release deleted Jobs."""
        return self.started_at is not None or self.active + self.succeeded + self.failed > 0

    @property
    def accounted(self) -> bool:
        """Accounting annotations present AND written for this Job's UID."""
        if ACCOUNTED_AT not in self.annotations:
            return False
        return accounted_uid(self.annotations) == self.uid

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    @property
    def lifetime_start(self) -> datetime:
        return self.started_at or self.created_at


_SHARED_TEMPLATES: dict[str, dict[str, Any]] = {}
MAX_SHARED_TEMPLATES = 4096


def shared_template(summary: dict[str, Any]) -> dict[str, Any]:
    """One dict for equal template summaries. Workloads of one pipeline, CronJob or JobSet
    mostly share theirs, and the JobFacts of 10,000 workloads present would otherwise hold
    10,000 equal copies (~1.5 KiB each). Every reader treats it as read-only (records copy it)."""
    key = json.dumps(summary, sort_keys=True, separators=(",", ":"))
    found = _SHARED_TEMPLATES.get(key)
    if found is not None:
        return found
    if len(_SHARED_TEMPLATES) >= MAX_SHARED_TEMPLATES:  # bounded: start over
        _SHARED_TEMPLATES.clear()
    _SHARED_TEMPLATES[key] = summary
    return summary


def accounted_uid(annotations: Mapping[str, str]) -> str | None:
    """The UID the accounting annotations were written for: ``carbontrack.io/accounted-uid``,
    or for Jobs accounted before that annotation existed, the report JSON's ``job.uid``."""
    uid = annotations.get(ACCOUNTED_UID)
    if uid is not None:
        return uid
    try:
        report = contract.decode_report(annotations.get(REPORT, ""))
    except ValueError:
        return None
    job = report.get("job")
    value = job.get("uid") if isinstance(job, dict) else None
    return value if isinstance(value, str) else None


def job_facts(job: Mapping[str, Any]) -> JobFacts:
    """The facts of a Job object. A body the API server would not serve (a field of the
    wrong type, a GPU limit that is not a whole count, a negative count) raises ConfigError
    naming the Job, never another exception and never a negative count."""
    try:
        facts = _job_facts(job)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        meta = job.get("metadata") if isinstance(job, Mapping) else None
        name = f"{meta.get('namespace')}/{meta.get('name')}" if isinstance(meta, Mapping) else "?"
        raise ConfigError(f"Job {name} is malformed ({type(err).__name__}: {str(err)[:120]})") from None
    counts = (facts.gpus_per_pod, facts.parallelism, facts.succeeded, facts.active, facts.failed,
              facts.completions or 0)
    if min(counts) < 0:
        raise ConfigError(f"Job {facts.namespace}/{facts.name} has a negative count "
                          "(GPU limit, parallelism, completions or pod counts)")
    return facts


def _job_facts(job: Mapping[str, Any]) -> JobFacts:
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    outcome: str | None = None
    finished_at: datetime | None = None
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            outcome = str(cond["type"])
            stamp = cond.get("lastTransitionTime") or status.get("completionTime")
            if stamp:
                finished_at = parse_time(str(stamp))
            break
    if outcome == "Complete" and status.get("completionTime"):
        finished_at = parse_time(str(status["completionTime"]))
    if outcome is not None and finished_at is None:
        outcome = None  # a condition without a time cannot be placed in a period: wait
    if outcome is None and meta.get("deletionTimestamp"):
        # Deleted while running: the Job controller stops managing it and it never gets a
        # Complete/Failed condition, so it ends at its deletion (its pods run on until the
        # garbage collector removes them after the Job is gone).
        outcome, finished_at = "Deleted", parse_time(str(meta["deletionTimestamp"]))
    template = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    gpus = 0
    for container in template:
        limits = (container.get("resources") or {}).get("limits") or {}
        for resource in GPU_RESOURCES:
            if resource in limits:
                gpus += int(str(limits[resource]))
    completions = spec.get("completions")
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    summary: dict[str, Any] = {
        "nodeSelector": dict(pod_spec.get("nodeSelector") or {}),
        "containers": [{"resources": dict(c.get("resources") or {})} for c in template],
    }
    return JobFacts(
        uid=str(meta["uid"]),
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        labels=dict(meta.get("labels") or {}),
        # Only ours: JobFacts of unfinished Jobs live as long as the Jobs run, and other
        # annotations (kubectl's last-applied-configuration: the whole manifest) would be
        # kept alive with them.
        annotations={k: str(v) for k, v in (meta.get("annotations") or {}).items()
                     if str(k).startswith(ANNOTATION_PREFIX)},
        created_at=parse_time(str(meta["creationTimestamp"])),
        started_at=parse_time(str(status["startTime"])) if status.get("startTime") else None,
        finished_at=finished_at,
        outcome=outcome,
        deleting=bool(meta.get("deletionTimestamp")),
        finalizers=tuple(meta.get("finalizers") or ()),
        suspended=bool(spec.get("suspend")),
        completions=int(completions) if completions is not None else None,
        parallelism=int(spec.get("parallelism", 1) or 1),
        succeeded=int(status.get("succeeded") or 0),
        active=int(status.get("active") or 0),
        gpus_per_pod=gpus,
        failed=int(status.get("failed") or 0),
        template=shared_template(summary),
    )
