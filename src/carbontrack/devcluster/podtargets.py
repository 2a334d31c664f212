"""Prometheus targets for pods that ask to be scraped with the ``prometheus.io/*``
annotations (the chart's exporter DaemonSet does), on real nodes only.

What a Prometheus with Kubernetes service discovery would find. Debian's Prometheus is built
without it (promtool: ``field kubernetes_sd_configs not found``), so the harness lists the
pods itself and writes them as file_sd targets.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any


def annotated_targets(pods: Iterable[Any], nodes: Collection[str]) -> dict[str, dict[str, str]]:
    """``host:port`` -> target labels of every Running pod on ``nodes`` annotated
    ``prometheus.io/scrape: "true"`` (port and path from its annotations)."""
    out: dict[str, dict[str, str]] = {}
    for p in pods:
        ann = p.metadata.annotations or {}
        if ann.get("prometheus.io/scrape") != "true" or p.spec.node_name not in nodes:
            continue
        if p.status.phase != "Running" or not p.status.pod_ip or "prometheus.io/port" not in ann:
            continue
        path = ann.get("prometheus.io/path", "/metrics")
        out[f"{p.status.pod_ip}:{ann['prometheus.io/port']}"] = (
            {} if path == "/metrics" else {"__metrics_path__": path})
    return out
