"""The demo's real node: the chart's exporter DaemonSet installed with helm (its pod on the
real node measures real cgroups; on the kwok nodes kwok only pretends to run it), scraped
by the demo's Prometheus, and a CPU-burning Job that runs for real on that node."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from ..core import contract
from ..core.errors import ConfigError
from .binaries import bin_dir, repo_root
from .wait import wait_for

REAL_BANNER = ("REAL NODE {node}: kubelet + containerd + runc on this machine; its pods' CPU "
               "energy is estimated from their real cgroup CPU time (this machine has no RAPL)")
RELEASE, RELEASE_NS = "carbontrack", "carbontrack-system"
EXPORTER_PORT = 9875


def real_job(name: str, image: str, *, threads: int, seconds: int,
             labels: dict[str, str]) -> dict[str, Any]:
    """A Job that keeps ``threads`` cores busy for ``seconds`` on the real node, then idles
    one exporter interval (5 s) so the exporter reads its final CPU counter before the
    cgroup goes."""
    script = (f"for i in $(seq {threads}); do timeout {seconds} sh -c 'while :; do :; done' & "
              "done; wait; sleep 6")
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                # no cluster DNS here: the host's resolver, without the kubelet's warning
                "dnsPolicy": "Default",
                "nodeSelector": {contract.NODE_KIND_LABEL: "real"},
                "containers": [{"name": "burn", "image": image, "imagePullPolicy": "Never",
                                "command": ["sh", "-c", script]}],
            }}},
    }


def helm_install_args(chart: Path, exporter_image: str) -> list[str]:
    repo, tag = exporter_image.rsplit(":", 1)
    return ["upgrade", "--install", RELEASE, str(chart), "-n", RELEASE_NS,
            "--create-namespace", "--set", "operator.enabled=false",
            "--set", f"exporter.image.repository={repo}", "--set", f"exporter.image.tag={tag}",
            "--set", "exporter.provider=aws", "--set", "exporter.region=eu-west-1"]


def install_real_exporter(kubeconfig: Path, exporter_image: str, node: str) -> str:
    """Install the chart's exporter; return ``ip:port`` of its pod on ``node`` once Ready."""
    from kubernetes import client

    from .kube import api_client

    root = repo_root()
    if root is None:
        raise ConfigError("the demo's real node installs charts/carbontrack: run it from a checkout")
    state = kubeconfig.parent
    env = {**os.environ, "KUBECONFIG": str(kubeconfig),
           **{f"HELM_{k}_HOME": str(state / f"helm-{k.lower()}") for k in ("CACHE", "CONFIG", "DATA")}}
    with api_client(kubeconfig) as api:
        core: Any = client.CoreV1Api(api)
        try:
            core.create_namespace({"metadata": {"name": RELEASE_NS, "labels": {
                "pod-security.kubernetes.io/enforce": "privileged"}}})  # hostPath mounts
        except client.exceptions.ApiException as err:
            if err.status != 409:
                raise
        r = subprocess.run([str(bin_dir() / "helm"),
                            *helm_install_args(root / "charts" / "carbontrack", exporter_image)],
                           env=env, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise ConfigError(f"helm install of the chart's exporter failed: {r.stderr}")

        def ready_ip() -> str | None:
            for p in core.list_namespaced_pod(
                    RELEASE_NS, label_selector="app.kubernetes.io/component=exporter").items:
                if p.spec.node_name == node and any(
                        c.type == "Ready" and c.status == "True" for c in p.status.conditions or []):
                    return f"{p.status.pod_ip}:{EXPORTER_PORT}"
            return None

        ip: str = wait_for(f"the chart's exporter Ready on {node}", ready_ip, 120)
    return ip


def real_exporter_targets(kubeconfig: Path, node: str) -> dict[str, dict[str, str]]:
    """Scrape targets of the annotated pods (the chart's exporter) on the real node."""
    from kubernetes import client

    from .kube import api_client
    from .podtargets import annotated_targets

    with api_client(kubeconfig) as api:
        pods = client.CoreV1Api(api).list_pod_for_all_namespaces().items
    return annotated_targets(pods, {node})
