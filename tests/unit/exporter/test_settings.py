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
                         kube=False, zone="DE", pue=1.2, sources=frozenset(),
                         pod_resources_dir=Path("/pr"),
                         idle_policy=IdlePolicy.EVEN, retention_s=120.0,
                         cpu_weight_map="linear")


@pytest.mark.parametrize(("argv", "enabled"), [
    ([], {"rapl", "nvml", "cpu-estimate", "memory-estimate"}),  # amdsmi only on ask
    (["--amdsmi"], {"rapl", "nvml", "amdsmi", "cpu-estimate", "memory-estimate"}),
    (["--amdsmi", "--no-nvml", "--no-estimate"], {"rapl", "amdsmi"}),
    (["--no-rapl", "--rapl"], {"rapl", "nvml", "cpu-estimate", "memory-estimate"}),  # last wins
])
def test_source_flags_come_from_the_registry(argv: list[str], enabled: set[str]) -> None:
    assert from_args(["--node-name", "n1", *argv]).sources == frozenset(enabled)


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


def test_intensity_flags_select_the_provider_and_node_facts_the_zone(catalogue: Any) -> None:
    s = from_args(["--node-name", "n1", "--intensity-provider", "gb",
                   "--intensity-base-url", "http://127.0.0.1:1", "--default-zone", "FR"])
    assert (s.intensity.provider, s.intensity.base_url, s.default_zone) == (
        "gb", "http://127.0.0.1:1", "FR")
    node = {"metadata": {"labels": {"topology.kubernetes.io/region": "eu-west-1"}},
            "spec": {"providerID": "aws:///eu-west-1a/i-0abc"}}
    e = build_emissions(Settings(node_name="n1", default_zone="FR"), node, env={})
    assert (e.zone, e.provider) == ("aws:eu-west-1", "static")  # cloud region before default
    assert e.pue == catalogue.provider_pue("aws", "eu-west-1")[0]
    labelled = {"metadata": {"labels": {"carbontrack.io/grid-zone": "DE"}}}
    assert build_emissions(Settings(node_name="n1"), labelled, env={}).zone == "DE"
    assert build_emissions(Settings(node_name="n1", default_zone="FR"), {}, env={}).zone == "FR"


def test_unresolvable_node_exports_energy_without_co2e_and_says_why() -> None:
    node = {"metadata": {"labels": {"topology.kubernetes.io/region": "mars-1"}},
            "spec": {"providerID": "aws:///mars-1a/i-0abc"}}
    rate = build_emissions(Settings(node_name="n1"), node, env={}).rate(0.0, 5.0)
    assert rate.g_per_joule is None
    assert "cannot resolve a grid zone for node n1" in rate.error
    assert "cloud region aws:mars-1: unknown" in rate.error


def test_live_provider_without_its_token_stops_start_up() -> None:
    s = from_args(["--node-name", "n1", "--zone", "DE", "--intensity-provider",
                   "electricitymaps"])
    with pytest.raises(ConfigError, match=r"\$ELECTRICITYMAPS_API_TOKEN"):
        build_emissions(s, env={})
