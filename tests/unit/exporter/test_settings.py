"""Command-line settings: defaults, units, and one-line actionable errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from carbontrack.exporter.attribution import IdlePolicy
from carbontrack.exporter.cli import build_emissions
from carbontrack.exporter.settings import Settings, from_args

from carbontrack.core.errors import ConfigError, UnknownZoneError


def test_contract_flags() -> None:
    s = from_args(["--node-name", "n1", "--sysfs", "/h/sys", "--procfs", "/h/proc",
                   "--interval", "2.5", "--listen", "127.0.0.1:9100", "--state-dir", "/st",
                   "--no-kube", "--zone", "DE", "--pue", "1.2", "--no-rapl", "--no-nvml",
                   "--no-estimate", "--pod-resources-dir", "/pr", "--idle-policy", "even",
                   "--retention", "120", "--cpu-weight-map", "linear"])
    assert s == Settings(node_name="n1", sysfs=Path("/h/sys"), procfs=Path("/h/proc"),
                         interval_s=2.5, host="127.0.0.1", port=9100, state_dir=Path("/st"),
                         kube=False, zone="DE", pue=1.2, rapl=False, nvml=False,
                         estimate=False, pod_resources_dir=Path("/pr"),
                         idle_policy=IdlePolicy.EVEN, retention_s=120.0,
                         cpu_weight_map="linear")


@pytest.mark.parametrize(("argv", "needle"), [
    (["--listen", "nonsense"], "--listen 'nonsense': expected HOST:PORT"),
    (["--interval", "0"], "--interval 0.0: must be a positive"),
    (["--provider", "aws"], "--provider and --region go together"),
    (["--retention", "-1"], "--retention -1.0: must be >= 0"),
])
def test_bad_flags_give_one_line_errors(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_args(["--node-name", "n1", *argv])
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_provider_region_gives_zone_and_published_pue(catalogue: Any) -> None:
    e = build_emissions(Settings(node_name="n", provider="aws", region="us-east-1"))
    assert e.zone == "aws:us-east-1"
    assert e.pue == catalogue.provider_pue("aws", "us-east-1")[0]
    explicit = build_emissions(Settings(node_name="n", provider="aws", region="us-east-1",
                                        pue=1.4))
    assert explicit.pue == 1.4  # an explicit --pue wins over the provider's figure


def test_unknown_zone_fails_at_start_up_and_no_zone_means_no_co2e() -> None:
    with pytest.raises(UnknownZoneError, match="NOPE-ZONE"):
        build_emissions(Settings(node_name="n", zone="NOPE-ZONE"))
    rate = build_emissions(Settings(node_name="n")).rate(0.0, 5.0)
    assert rate.g_per_joule is None and "--zone" in rate.error
