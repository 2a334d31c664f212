"""Example workloads for tests and the demo (pure builders, tested by equality)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..core.accelerators import vendor_named
from .kwok import FAIL_ANNOTATION, RUN_SECONDS_ANNOTATION
from .nodes import AMD_GPU_TAINT, toleration
from .simulator import CPU_CORES, GPU_UTIL, GPU_WATTS, GPUS


def sim_job(
    name: str,
    *,
    run_seconds: float = 5.0,
    cpu_cores: float = 1.0,
    cpu_request: str | None = None,
    memory_request: str = "1Gi",
    gpus: int = 0,
    gpu_watts: float = 250.0,
    gpu_util: float = 90.0,
    fail: bool = False,
    node: str | None = None,
    parallelism: int = 1,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    gpu_vendor: str = "nvidia",
    tolerations: Sequence[Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """A batch/v1 Job whose pods run on simulated nodes for ``run_seconds`` keeping
    ``cpu_cores`` cores busy and ``gpus`` GPUs at ``gpu_watts`` each. GPUs are asked for
    under ``gpu_vendor``'s resource name (``amd.com/gpu`` for "amd", whose pool's taint the
    pods then tolerate unless ``tolerations`` says otherwise)."""
    pod_ann = {
        RUN_SECONDS_ANNOTATION: f"{run_seconds:g}",
        CPU_CORES: f"{cpu_cores:g}",
    }
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": cpu_request or f"{cpu_cores:g}", "memory": memory_request},
        "limits": {},
    }
    if gpus:
        pod_ann.update({GPUS: str(gpus), GPU_WATTS: f"{gpu_watts:g}", GPU_UTIL: f"{gpu_util:g}"})
        resources["limits"][vendor_named(gpu_vendor).gpu_resources[0]] = str(gpus)
    if tolerations is None:
        tolerations = [toleration(AMD_GPU_TAINT)] if gpus and gpu_vendor == "amd" else []
    if fail:
        pod_ann[FAIL_ANNOTATION] = "true"
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {"name": "train", "image": "registry.invalid/carbontrack/sim-train:1",
             "resources": resources}
        ],
    }
    # simulated workloads only ever run on simulated (kwok) nodes, even on kind
    pod_spec["nodeSelector"] = {"type": "kwok"}
    if node:
        pod_spec["nodeSelector"]["kubernetes.io/hostname"] = node
    if tolerations:
        pod_spec["tolerations"] = [dict(t) for t in tolerations]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": dict(labels or {}),
                     "annotations": dict(annotations or {})},
        "spec": {
            "backoffLimit": 0,
            "parallelism": parallelism,
            "completions": parallelism,
            "template": {
                "metadata": {"labels": dict(labels or {}), "annotations": pod_ann},
                "spec": pod_spec,
            },
        },
    }
