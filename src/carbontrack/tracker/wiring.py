"""Build what a session needs from settings: energy sources, the intensity lookup, the zone.

Source selection (always reported as the run's method):
1. RAPL if the powercap tree exists and its counters are readable (measured);
2. each GPU vendor whose driver or library is present: NVML (NVIDIA), amdsmi (AMD)
   (measured, or sampled where the energy counter is NotSupported);
3. otherwise CPU and memory estimation (estimated). ``cpu_watts`` forces a fixed CPU power.

Heavy or optional modules (pynvml, the catalogue) are imported only when used, so that
`carbontrack run -- true` and ``import carbontrack; track()`` start fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..core.errors import ConfigError, UnknownZoneError
from ..core.types import EnergySource, IntensityLookup
from .settings import TrackerSettings

if TYPE_CHECKING:
    from ..intensity.catalogue import Catalogue
    from ..intensity.selection import Selection


def build_sources(settings: TrackerSettings) -> tuple[list[EnergySource], list[str]]:
    """Energy sources for this machine, and notes saying why others were not used.

    Built from the source registry (carbontrack.sources.registry), as the exporter's are:
    a CPU counter only if it reads, a GPU library only where its driver is present (or
    --gpus asks for NVIDIA GPUs), estimates only where no CPU counter was used."""
    from ..sources import registry

    ctx = registry.SourceContext(
        sysfs=settings.sysfs_root, procfs=settings.procfs_root, env=os.environ,
        cpu_watts=settings.cpu_watts, gpu_indices=settings.gpus,
        require_healthy=True, detect_gpus=True)
    enabled = {s.name for s in registry.SOURCES}  # one machine: whatever is present
    built = registry.build(ctx, enabled)
    notes = [f"{registry.spec(name).label} not used: {why}" for name, why in built.down.items()]
    for src in built.sources:  # the estimates' basis (their module is loaded only if used)
        if src.name == "cpu-estimate":
            from ..sources.estimate import CpuEstimateSource

            assert isinstance(src, CpuEstimateSource)
            notes.append(f"cpu-estimate: {src.power_model.basis}")
        elif src.name == "memory-estimate":
            from ..sources.estimate import MemoryEstimateSource

            assert isinstance(src, MemoryEstimateSource)
            notes.append(f"memory-estimate: {src.gb:.3g} GB x CCF memory coefficient "
                         f"({src.watts:.3g} W)")
    return built.sources, notes


def build_selection(settings: TrackerSettings, env: Mapping[str, str]) -> Selection:
    """The intensity lookup through carbontrack.intensity.selection (the exporter's path
    too): static catalogue or a live provider, overrides, market-based factors."""
    from ..intensity.selection import IntensityConfig, select

    return select(settings.intensity or IntensityConfig(), env)


# Cloud region from the environment a cloud SDK or job runner sets. No metadata-server
# query: it would cost start-up time everywhere and hang off-cloud.
CLOUD_REGION_ENV = (
    ("aws", ("AWS_REGION", "AWS_DEFAULT_REGION")),
    ("gcp", ("GOOGLE_CLOUD_REGION", "CLOUDSDK_COMPUTE_REGION")),
    ("azure", ("AZURE_REGION",)),
)
_PROVIDER_ID = {"aws": "aws://", "gcp": "gce://", "azure": "azure://"}


@dataclass(frozen=True)
class ZoneChoice:
    zone: str  # the catalogue zone (the run's ``zone``)
    rule: str  # explicit | cloud-region
    cloud_provider: str = ""
    cloud_region: str = ""
    warning: str | None = None
    key: str = ""  # the key given to IntensityLookup.intensity() ("aws:us-east-1"); "" = zone

    @property
    def lookup_key(self) -> str:
        return self.key or self.zone


def cloud_from_env(env: Mapping[str, str]) -> tuple[str, str] | None:
    for provider, names in CLOUD_REGION_ENV:
        for name in names:
            if env.get(name):
                return provider, env[name].strip()
    return None


def resolve_zone(
    settings: TrackerSettings,
    lookup: IntensityLookup,
    env: Mapping[str, str],
    catalogue: Catalogue | None = None,
) -> ZoneChoice:
    """Explicit zone (argument/flag, then CARBONTRACK_ZONE, already folded into settings) >
    cloud region from the environment > error with a hint. Resolution goes through
    ``carbontrack.intensity.resolve``; the zone is then checked against the lookup, before
    anything runs: an unknown zone is an error, never a silent default. ``catalogue`` is the
    selection's (the lookup may be a live provider); without it a lookup that is itself a
    catalogue resolves."""
    cloud = cloud_from_env(env)
    choice: ZoneChoice
    rules_over = catalogue if catalogue is not None else (lookup if hasattr(lookup, "lookup") else None)
    if rules_over is not None:  # the catalogue: full rules
        from ..intensity import resolve

        labels = {resolve.REGION_LABELS[0]: cloud[1]} if cloud else None
        try:
            res = resolve.resolve_zone(
                rules_over,  # type: ignore[arg-type]
                explicit=settings.zone or None,
                node_labels=labels,
                provider_id=_PROVIDER_ID[cloud[0]] if cloud else None,
            )
        except UnknownZoneError as err:
            if settings.zone:
                raise
            # resolve's message speaks of node labels; on one machine only two fixes exist
            why = f" (cloud region {cloud[0]}:{cloud[1]} from the environment is unknown)" if cloud else ""
            raise UnknownZoneError(
                f"no grid zone for this machine{why}: pass --zone KEY or set CARBONTRACK_ZONE; "
                "find keys with `carbontrack zones --search TEXT`"
            ) from err
        choice = ZoneChoice(
            res.zone,
            res.rule,
            cloud[0] if cloud and res.rule == "cloud-region" else "",
            cloud[1] if cloud and res.rule == "cloud-region" else "",
            res.warning,
            res.key,
        )
    elif settings.zone:
        choice = ZoneChoice(settings.zone, "explicit")
    else:
        raise ConfigError("no grid zone given: pass --zone ZONE (e.g. --zone DE) or set CARBONTRACK_ZONE")
    now = datetime.now(timezone.utc)
    lookup.intensity(choice.lookup_key, now, now)  # raises UnknownZoneError naming what was tried
    return choice
