"""Zone resolution: explicit > node label > cloud labels > cluster default; never a silent default."""

from __future__ import annotations

import pytest

from carbontrack.core.errors import UnknownZoneError
from carbontrack.intensity.catalogue import Catalogue
from carbontrack.intensity.resolve import ZONE_LABEL, node_facts, resolve_zone

AWS_NODE = {
    "metadata": {"name": "ip-10-0-0-1", "labels": {"topology.kubernetes.io/region": "eu-west-1"}},
    "spec": {"providerID": "aws:///eu-west-1a/i-0123456789abcdef0"},
}


def test_each_rule_in_order(catalogue: Catalogue) -> None:
    labels, pid = node_facts(AWS_NODE)
    cloud = resolve_zone(catalogue, node_labels=labels, provider_id=pid, cluster_default="FR")
    assert (cloud.rule, cloud.key, cloud.zone) == ("cloud-region", "aws:eu-west-1", "IE")
    assert cloud.factor == catalogue.get("IE")
    assert cloud.warning is None

    labelled = resolve_zone(catalogue, node_labels={**labels, ZONE_LABEL: "US-CAL-CISO"},
                            provider_id=pid)
    assert (labelled.rule, labelled.zone) == ("node-label", "US-CAL-CISO")

    explicit = resolve_zone(catalogue, explicit="DEU", node_labels={ZONE_LABEL: "FR"},
                            provider_id=pid, cluster_default="PL")
    assert (explicit.rule, explicit.zone) == ("explicit", "DE")

    default = resolve_zone(catalogue, node_labels={}, cluster_default="PL")
    assert (default.rule, default.zone) == ("cluster-default", "PL")
    assert "explicit setting: not set" in default.tried


@pytest.mark.parametrize(
    ("provider_id", "region", "key", "zone"),
    [
        ("gce://my-project/europe-west1-b/node-1", "europe-west1", "gcp:europe-west1", "BE"),
        ("azure:///subscriptions/x/resourceGroups/y/providers/Microsoft.Compute/"
         "virtualMachineScaleSets/z/virtualMachines/0", "westeurope", "azure:westeurope", "NL"),
        ("aws:///us-east-1a/i-0abc", "us-east-1", "aws:us-east-1", "US-EGRID-SRVC"),
    ],
)
def test_cloud_providers(catalogue: Catalogue, provider_id: str, region: str, key: str,
                         zone: str) -> None:
    result = resolve_zone(catalogue, node_labels={"topology.kubernetes.io/region": region},
                          provider_id=provider_id)
    assert (result.key, result.zone) == (key, zone)


def test_unknown_cloud_region_falls_to_default_with_a_warning(catalogue: Catalogue) -> None:
    result = resolve_zone(catalogue, node_labels={"topology.kubernetes.io/region": "xx-new-9"},
                          provider_id="aws:///xx-new-9a/i-1", cluster_default="DE")
    assert (result.rule, result.zone) == ("cluster-default", "DE")
    assert result.warning is not None and "aws:xx-new-9: unknown" in result.warning


def test_nothing_resolvable_names_every_rule(catalogue: Catalogue) -> None:
    with pytest.raises(UnknownZoneError) as info:
        resolve_zone(catalogue, node_labels={"topology.kubernetes.io/region": "somewhere"},
                     provider_id="kind://docker/kind/kind-worker", subject="node kind-worker")
    message = str(info.value)
    assert message.startswith("cannot resolve a grid zone for node kind-worker: tried ")
    for part in ("explicit setting: not set", f"node label {ZONE_LABEL}: not set",
                 "'kind://docker/kind/kind-worker' is not aws://, gce:// or azure://",
                 "cluster default: not set", "carbontrack zones --search"):
        assert part in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [({"explicit": "Narnia"}, "explicit grid zone setting 'Narnia'"),
     ({"node_labels": {ZONE_LABEL: "Narnia"}, "cluster_default": "DE"},
      f"node label {ZONE_LABEL} 'Narnia'"),
     ({"cluster_default": "Narnia"}, "cluster default grid zone 'Narnia'")],
)
def test_a_bad_requested_zone_is_an_error_not_skipped(catalogue: Catalogue,
                                                      kwargs: dict[str, object], what: str) -> None:
    with pytest.raises(UnknownZoneError, match=what):
        resolve_zone(catalogue, **kwargs)


def test_no_input_at_all_is_an_error(catalogue: Catalogue) -> None:
    with pytest.raises(UnknownZoneError, match="cannot resolve a grid zone for this machine"):
        resolve_zone(catalogue)
