"""PromQL for Job accounting, built from the exporter's metric contract (carbontrack.core.contract).

Pure functions of their arguments, tested by equality. Label values are escaped; UIDs and
node names come from the API server, but nothing here trusts that.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from carbontrack.core import contract

ENERGY = contract.CONTAINER_ENERGY.sample
CO2E = contract.CONTAINER_CO2E.sample
INTENSITY = contract.GRID_INTENSITY.sample
PUE = contract.PUE.sample


def escape_label(value: str) -> str:
    """A PromQL double-quoted string body."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _regex_escape(value: str) -> str:
    # RE2 metacharacters, then PromQL string escaping.
    specials = set(r".^$*+?()[]{}|\\")
    return escape_label("".join("\\" + c if c in specials else c for c in value))


def range_seconds(seconds: float) -> str:
    """A PromQL range; whole seconds rounded up so the window never cuts a sample off."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"range must be positive, got {seconds!r}")
    return f"{math.ceil(seconds)}s"


def job_selector(job_uid: str, kind: str = "Job") -> str:
    """The series of one workload: the exporter labels a pod's series with its root owner
    (core.owners), so a PyTorchJob's, JobSet's or RayJob's pods are selected directly."""
    return f'owner_kind="{escape_label(kind)}",owner_uid="{escape_label(job_uid)}"'


def job_totals(metric: str, job_uid: str, window_s: float, kind: str = "Job") -> str:
    """Final counter value of each of the Job's series (max over the Job's lifetime: the
    exporter's counters never reset, so the max is the last value), summed per component,
    method and node. Evaluate at the end of the window."""
    return (
        f"sum by (node, component, method) "
        f"(max_over_time({metric}{{{job_selector(job_uid, kind)}}}[{range_seconds(window_s)}]))"
    )


def job_pods(job_uid: str, window_s: float, kind: str = "Job") -> str:
    """One series per (pod, component): counts pods and which of them used GPUs."""
    return (
        f"count by (pod_uid, component) "
        f"(max_over_time({ENERGY}{{{job_selector(job_uid, kind)}}}[{range_seconds(window_s)}]))"
    )


def node_regex(nodes: Iterable[str]) -> str:
    names = sorted(set(nodes))
    if not names:
        raise ValueError("at least one node is needed")
    return "|".join(_regex_escape(n) for n in names)


def node_intensity(nodes: Iterable[str], window_s: float) -> str:
    """Average grid intensity per node and factor identity over the window (labels carry the
    zone, source and basis for the report)."""
    return (
        f'avg_over_time({INTENSITY}{{node=~"{node_regex(nodes)}"}}'
        f"[{range_seconds(window_s)}])"
    )


def node_pue(nodes: Iterable[str], window_s: float) -> str:
    return f'avg_over_time({PUE}{{node=~"{node_regex(nodes)}"}}[{range_seconds(window_s)}])'


def node_freshness(nodes: Iterable[str]) -> str:
    """Timestamp of the latest scrape of each node's exporter (the PUE gauge is always
    exported). Accounting waits until every node was scraped after the Job completed."""
    return f'timestamp({PUE}{{node=~"{node_regex(nodes)}"}})'


def any_freshness() -> str:
    """Latest scrape of any exporter: tells "Prometheus has no data for this Job" apart from
    "Prometheus has not caught up yet"."""
    return f"max(timestamp({PUE}))"
