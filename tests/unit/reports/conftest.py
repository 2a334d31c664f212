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
    report = {
        "energy_kwh": comps,
        "gpu_hours": gpu_hours,
        "pue": {"value": pue, "source": "setting --pue"},
        "zones": [zone],
        "intensity_sources": [
            {
                "zone": zone,
                "g_per_kwh": intensity,
                "source": "Ember 2025 via OWID",
                "basis": "average/lifecycle/location-based",
                "year": 2024,
            }
        ],
        "window": {"start": start, "end": end},
        "uncertainty": 0.05,
        "tool_version": "0.1.0",
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
