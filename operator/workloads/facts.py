"""Shared, pure readers for workload manifests: conditions, pod templates, the common
JobFacts fields. Each adapter module says which status fields mean what for its kind."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from carbontrack.core.errors import ConfigError

from ..jobs import ANNOTATION_PREFIX, GPU_RESOURCES, JobFacts, shared_template
from ..timeutil import parse_time


def true_condition(status: Mapping[str, Any], *types: str) -> Mapping[str, Any] | None:
    """The first condition of one of ``types`` whose status is "True"."""
    for cond in status.get("conditions") or []:
        if cond.get("type") in types and cond.get("status") == "True":
            return dict(cond)
    return None


def time_or_none(value: Any) -> datetime | None:
    return parse_time(str(value)) if value else None


def pod_gpus(pod_spec: Mapping[str, Any]) -> int:
    gpus = 0
    for container in pod_spec.get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        for resource in GPU_RESOURCES:
            if resource in limits:
                gpus += int(str(limits[resource]))
    return gpus


def template_summary(pod_specs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """What a report line needs from the pod templates (as JobFacts.template for a Job): the
    first template's node selector, every template's container resources."""
    specs = list(pod_specs)
    return {
        "nodeSelector": dict((specs[0].get("nodeSelector") or {}) if specs else {}),
        "containers": [{"resources": dict(c.get("resources") or {})}
                       for s in specs for c in s.get("containers") or []],
    }


def build_facts(
    body: Mapping[str, Any], *, kind: str, api_version: str,
    outcome: str | None, finished_at: datetime | None, started_at: datetime | None,
    suspended: bool, replicas: list[tuple[int, Mapping[str, Any]]],
    active: int = 0, succeeded: int = 0, failed: int = 0,
) -> JobFacts:
    """JobFacts of a multi-pod workload. ``outcome`` is Complete/Failed (None while it runs);
    deletion before either ends it as Deleted. ``replicas``: (pod count, pod spec) per role;
    ``parallelism`` is their sum and ``gpus_per_pod`` the largest GPU limit of a pod (so the
    record's GPU hours stay an upper bound, as for Jobs)."""
    meta = body.get("metadata") or {}
    if outcome is not None and finished_at is None:
        outcome = None  # finished without a time cannot be placed in a period: wait
    if outcome is None and meta.get("deletionTimestamp"):
        outcome, finished_at = "Deleted", parse_time(str(meta["deletionTimestamp"]))
    counts = [int(n) for n, _ in replicas]
    if min([*counts, active, succeeded, failed, 0]) < 0:
        raise ConfigError(f"{kind} {meta.get('namespace')}/{meta.get('name')} has a negative count")
    return JobFacts(
        uid=str(meta["uid"]),
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        labels=dict(meta.get("labels") or {}),
        annotations={k: str(v) for k, v in (meta.get("annotations") or {}).items()
                     if str(k).startswith(ANNOTATION_PREFIX)},
        created_at=parse_time(str(meta["creationTimestamp"])),
        started_at=started_at,
        finished_at=finished_at,
        outcome=outcome,
        deleting=bool(meta.get("deletionTimestamp")),
        finalizers=tuple(meta.get("finalizers") or ()),
        suspended=suspended,
        completions=None,
        parallelism=max(sum(counts), 1),
        succeeded=succeeded,
        active=active,
        gpus_per_pod=max([pod_gpus(spec) for _, spec in replicas] or [0]),
        failed=failed,
        template=shared_template(template_summary(spec for _, spec in replicas)),
        kind=kind,
        api_version=api_version,
    )


def sum_counts(items: Iterable[Mapping[str, Any]]) -> tuple[int, int, int]:
    """(active, succeeded, failed) summed over status entries that carry them."""
    active = succeeded = failed = 0
    for item in items:
        active += int(item.get("active") or 0)
        succeeded += int(item.get("succeeded") or 0)
        failed += int(item.get("failed") or 0)
    return active, succeeded, failed
