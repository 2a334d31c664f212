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
