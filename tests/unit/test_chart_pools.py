"""Chart: a node pool's own location (zone, or provider/region) wins over the cluster-wide
one, as docs/helm.md says. The exporter reads --zone before --provider/--region
(exporter/cli.py), so what the chart renders decides which grid factor a pool gets."""

from __future__ import annotations

from typing import Any

from test_chart_tools import helm_template, one


def _args(docs: list[dict[str, Any]], pool: str) -> list[str]:
    ds = one(docs, "DaemonSet", f"exporter-{pool}")
    return list(ds["spec"]["template"]["spec"]["containers"][0]["args"])


def _location(args: list[str]) -> list[str]:
    return [a for a in args if a.startswith(("--zone=", "--provider=", "--region=", "--pue="))]


def test_pool_provider_region_beats_the_cluster_wide_zone() -> None:
    docs = helm_template(set_json=[
        'exporter.zone="DE"',
        'exporter.pools=[{"name": "gcp", "nodeSelector": {"p": "gcp"}, "provider": "gcp", "region": "europe-west1"},'
        ' {"name": "onlyregion", "nodeSelector": {"p": "r"}, "region": "us-east-1"},'
        ' {"name": "plain", "nodeSelector": {"p": "plain"}}]',
        'exporter.provider="aws"', 'exporter.region="eu-west-1"',
    ])
    assert _location(_args(docs, "gcp")) == ["--provider=gcp", "--region=europe-west1"]
    # the pool names only a region: the cluster's provider with the pool's region, no cluster zone
    assert _location(_args(docs, "onlyregion")) == ["--provider=aws", "--region=us-east-1"]
    # a pool that names no location inherits the cluster-wide zone (read before provider/region)
    assert _location(_args(docs, "plain")) == ["--zone=DE", "--provider=aws", "--region=eu-west-1"]


def test_pool_zone_and_pue_beat_the_cluster_provider_region_and_pue() -> None:
    docs = helm_template(set_json=[
        'exporter.provider="aws"', 'exporter.region="eu-west-1"', 'exporter.pue=1.15',
        'exporter.pools=[{"name": "hall", "nodeSelector": {"p": "hall"}, "zone": "DE", "pue": 1.3},'
        ' {"name": "cloud", "nodeSelector": {"p": "cloud"}}]',
    ])
    # --zone is read first by the exporter: the pool's DE wins over aws:eu-west-1
    assert _location(_args(docs, "hall")) == ["--zone=DE", "--pue=1.3", "--provider=aws", "--region=eu-west-1"]
    assert _location(_args(docs, "cloud")) == ["--pue=1.15", "--provider=aws", "--region=eu-west-1"]


def _pod_spec(docs: list[dict[str, Any]], pool: str) -> dict[str, Any]:
    ds = one(docs, "DaemonSet", f"exporter-{pool}")
    spec: dict[str, Any] = ds["spec"]["template"]["spec"]
    return spec


def test_an_amd_pool_turns_amdsmi_on_with_the_hosts_rocm_and_gpu_devices() -> None:
    docs = helm_template(set_json=[
        'exporter.pools=[{"name": "cpu", "nodeSelector": {"gpu": "none"}},'
        ' {"name": "amd", "nodeSelector": {"carbontrack.io/pool": "amd"},'
        '  "sources": {"amdsmi": true, "nvml": false}}]',
    ])
    amd, cpu = _pod_spec(docs, "amd"), _pod_spec(docs, "cpu")
    amd_args, cpu_args = _args(docs, "amd"), _args(docs, "cpu")
    assert "--amdsmi" in amd_args and "--no-nvml" in amd_args
    assert "--amdsmi" not in cpu_args and "--no-nvml" not in cpu_args  # the cluster default
    env = {e["name"]: e.get("value") for e in amd["containers"][0]["env"]}
    assert env["ROCM_PATH"] == "/opt/rocm" and "NVIDIA_VISIBLE_DEVICES" not in env
    mounts = {m["name"]: m for m in amd["containers"][0]["volumeMounts"]}
    assert all(mounts[n]["readOnly"] for n in ("rocm", "dev-kfd", "dev-dri"))
    assert mounts["rocm"]["mountPath"] == "/opt/rocm"
    vols = {v["name"]: v["hostPath"] for v in amd["volumes"] if "hostPath" in v}
    assert vols["rocm"] == {"path": "/opt/rocm", "type": "Directory"}
    assert vols["dev-kfd"] == {"path": "/dev/kfd", "type": "CharDevice"}
    assert "rocm" not in {v["name"] for v in cpu["volumes"]}
    assert {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in amd["tolerations"]
    assert amd["nodeSelector"] == {"carbontrack.io/pool": "amd"}
