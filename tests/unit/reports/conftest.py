"""Shared builders for report tests: Job objects in the API's JSON shape."""

from __future__ import annotations

import json
from typing import Any

import pytest


def make_job(
    name: str,
    *,
    namespace: str = "ml",
    uid: str | None = None,
    team: str = "vision",
    model: str = "resnet",
    components: dict[str, float] | None = None,
    grams: float = 100.0,
    zone: str = "DE",
    intensity: float = 400.0,
    pue: float = 1.2,
    status: str = "Complete",
    start: str = "2026-11-10T10:00:00Z",
    end: str = "2026-11-10T12:00:00Z",
    gpus: int = 2,
    cpu: str = "8",
    gpu_hours: float = 4.0,
    method: str = "measured",
    extra_annotations: dict[str, str] | None = None,
    extra_labels: dict[str, str] | None = None,
    node_selector: dict[str, str] | None = None,
) -> dict[str, Any]:
    comps = components if components is not None else {"cpu": 0.5, "dram": 0.1, "gpu": 2.0}
    # The shape carbontrack.operator.accounting.Accounting.report() writes (a contract test
    # in test_sources_cluster.py builds one with the operator's own code).
    report = {
        "job": {"namespace": namespace, "name": name, "uid": uid or f"uid-{namespace}-{name}", "outcome": status},
        "window": {"start": start, "end": end},
        "toolVersion": "0.1.0",
        "energyKwhByComponent": comps,
        "co2eGramsByComponent": {"gpu": grams},
        "methods": {c: [method] for c in comps},
        "gpuHours": {"value": gpu_hours, "basis": "GPU limits x pods x wall time"},
        "pods": 1,
        "nodes": ["node-a"],
        "pue": {"node-a": pue},
        "zones": [zone],
        "intensityFactors": [
            {
                "node": "node-a",
                "zone": zone,
                "source": "Ember 2025 via OWID",
                "basis": "average/lifecycle/location-based",
            }
        ],
        "intensityGPerKwh": intensity,
        "intensityBasis": "energy-weighted over nodes and time, per facility kWh (IT x PUE)",
        "uncertainty": {"relative": 0.05, "basis": "per-method assumption"},
    }
    ann = {
        "carbontrack.io/energy-kwh": f"{sum(comps.values()):.6f}",
        "carbontrack.io/co2e-grams": f"{grams}",
        "carbontrack.io/grid-zone": zone,
        "carbontrack.io/intensity-g-per-kwh": f"{intensity}",
        "carbontrack.io/method": method,
        "carbontrack.io/accounted-at": end,
        "carbontrack.io/report": json.dumps(report),
        **(extra_annotations or {}),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or f"uid-{namespace}-{name}",
            "labels": {"team": team, "carbontrack.io/model": model, **(extra_labels or {})},
            "annotations": ann,
        },
        "spec": {
            "parallelism": 1,
            "template": {
                "spec": {
                    "nodeSelector": (
                        node_selector
                        if node_selector is not None
                        else {"node.kubernetes.io/instance-type": "p4d.24xlarge"}
                    ),
                    "containers": [
                        {
                            "name": "train",
                            "resources": {"requests": {"cpu": cpu}, "limits": {"nvidia.com/gpu": str(gpus)}},
                        }
                    ],
                }
            },
        },
        "status": {
            "startTime": start,
            "completionTime": end if status == "Complete" else None,
            "conditions": [{"type": status, "status": "True", "lastTransitionTime": end}],
        },
    }


@pytest.fixture
def job_factory():  # type: ignore[no-untyped-def]
    return make_job
