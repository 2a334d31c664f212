"""Which grid zone a machine or Kubernetes node draws from.

Rules, first match wins (docs/methodology.md "Machines and nodes"):

1. ``explicit`` - a setting (``--zone``, ``CARBONTRACK_ZONE``, a tracker argument);
2. ``node-label`` - the node label ``carbontrack.io/grid-zone``;
3. ``cloud-region`` - provider from ``spec.providerID`` (``aws://``, ``gce://``,
   ``azure://``) plus ``topology.kubernetes.io/region``, looked up as provider:region;
4. ``cluster-default`` - the cluster-wide setting.

An explicit setting, a zone label or a default that does not resolve is an error
(the user asked for it; we must not quietly use something else). A cloud region
the catalogue lacks is noted in ``tried`` and the next rule is used; the result
then carries a ``warning``. Nothing resolvable at all raises ``UnknownZoneError``
listing every rule and why it did not apply. There is no built-in default zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core import contract
from ..core.errors import UnknownZoneError
from ..core.types import IntensityFactor
from .catalogue import Catalogue

ZONE_LABEL = contract.GRID_ZONE
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
PROVIDER_ID_PREFIXES = {"aws://": "aws", "gce://": "gcp", "azure://": "azure"}


@dataclass(frozen=True)
class Resolution:
    key: str  # the key that resolved, as given ("aws:eu-west-1", "DE")
    zone: str  # the catalogue zone it resolved to ("IE", "DE")
    rule: str  # explicit | node-label | cloud-region | cluster-default
    factor: IntensityFactor
    tried: tuple[str, ...]  # earlier rules that did not apply, with the reason

    @property
    def warning(self) -> str | None:
        """Set when a cloud region was present but unknown and a later rule was used."""
        failed = [t for t in self.tried if "unknown" in t]
        return f"grid zone from {self.rule} because " + "; ".join(failed) if failed else None


def provider_from_id(provider_id: str | None) -> str | None:
    if not provider_id:
        return None
    for prefix, provider in PROVIDER_ID_PREFIXES.items():
        if provider_id.startswith(prefix):
            return provider
    return None


def node_facts(node: Mapping[str, Any]) -> tuple[dict[str, str], str | None]:
    """(labels, spec.providerID) from a Node object as a dict (the API's JSON shape)."""
    labels = dict((node.get("metadata") or {}).get("labels") or {})
    provider_id = (node.get("spec") or {}).get("providerID")
    return labels, provider_id


def resolve_zone(
    catalogue: Catalogue,
    *,
    explicit: str | None = None,
    node_labels: Mapping[str, str] | None = None,
    provider_id: str | None = None,
    cluster_default: str | None = None,
    subject: str = "this machine",
) -> Resolution:
    """Apply the rules above; ``subject`` names the node in error messages."""
    tried: list[str] = []
    labels = node_labels or {}

    def strict(key: str, rule: str, what: str) -> Resolution:
        try:
            found = catalogue.lookup(key)
        except UnknownZoneError as err:
            raise UnknownZoneError(f"{what} {key!r} for {subject} is not a known grid zone: "
                                   f"{err}") from None
        return Resolution(key, found.zone.key, rule, found.factor, tuple(tried))

    if explicit:
        return strict(explicit, "explicit", "explicit grid zone setting")
    tried.append("explicit setting: not set")

    if labels.get(ZONE_LABEL):
        return strict(labels[ZONE_LABEL], "node-label", f"node label {ZONE_LABEL}")
    tried.append(f"node label {ZONE_LABEL}: not set")

    region = next((labels[k] for k in REGION_LABELS if labels.get(k)), None)
    provider = provider_from_id(provider_id)
    if region and provider:
        key = f"{provider}:{region}"
        try:
            found = catalogue.lookup(key)
            return Resolution(key, found.zone.key, "cloud-region", found.factor, tuple(tried))
        except UnknownZoneError:
            tried.append(f"cloud region {key}: unknown to the catalogue "
                         f"(see `carbontrack zones --search {provider}:`)")
    elif region:
        tried.append(f"cloud region: label {region!r} but providerID {provider_id!r} is not "
                     f"aws://, gce:// or azure://")
    elif provider:
        tried.append(f"cloud region: providerID is {provider} but no {REGION_LABELS[0]} label")
    else:
        tried.append(f"cloud region: no {REGION_LABELS[0]} label and no cloud providerID")

    if cluster_default:
        return strict(cluster_default, "cluster-default", "cluster default grid zone")
    tried.append("cluster default: not set")
    raise UnknownZoneError(
        f"cannot resolve a grid zone for {subject}: tried " + "; ".join(tried)
        + f". Set the zone explicitly (--zone KEY), label the node {ZONE_LABEL}=KEY, or set a "
        "cluster default; find keys with `carbontrack zones --search TEXT`"
    )
