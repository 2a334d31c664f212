"""Build what a session needs from settings: energy sources, the intensity lookup, the zone.

Source selection (always reported as the run's method):
1. RAPL if the powercap tree exists and its counters are readable (measured);
2. NVML if an NVIDIA driver or library is present (measured, or sampled where the
   energy counter is NotSupported);
3. otherwise CPU and memory estimation (estimated). ``cpu_watts`` forces a fixed CPU power.

Heavy or optional modules (pynvml, the catalogue) are imported only when used, so that
`carbontrack run -- true` and ``import carbontrack; track()`` start fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ConfigError, SourceUnavailable, UnknownZoneError
from ..core.types import EnergySource, IntensityLookup
from .settings import TrackerSettings

if TYPE_CHECKING:
    from ..intensity.catalogue import Catalogue
    from ..intensity.selection import Selection


def _nvidia_present(env: dict[str, str] | os._Environ[str]) -> bool:
    """Cheap checks only (no ldconfig): a driver node, the driver's procfs, or the library
    on LD_LIBRARY_PATH (how tests load the fake libnvidia-ml.so.1)."""
    if Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists():
        return True
    dirs = [d for d in env.get("LD_LIBRARY_PATH", "").split(":") if d]
    return any(Path(d, "libnvidia-ml.so.1").exists() for d in dirs)


def build_sources(settings: TrackerSettings) -> tuple[list[EnergySource], list[str]]:
    """Energy sources for this machine, and notes saying why others were not used."""
    notes: list[str] = []
    sources: list[EnergySource] = []
    cpu_measured = False
    if settings.cpu_watts is None:
        try:
            from ..sources.rapl import RaplSource

            rapl = RaplSource(settings.sysfs_root)
            health = rapl.health()
            if health.up:
                sources.append(rapl)
                cpu_measured = True
            else:
                notes.append(f"RAPL not used: {health.message}")
                rapl.close()
        except SourceUnavailable as err:
            notes.append(f"RAPL not used: {err}")
    if settings.gpus is not None or _nvidia_present(os.environ):
        try:
            from ..sources.nvml import NvmlSource

            gpu = NvmlSource.open(gpu_indices=list(settings.gpus) if settings.gpus else None)
            sources.append(gpu)
        except SourceUnavailable as err:
            if settings.gpus:  # the user asked for GPUs: not finding them is an error
                raise ConfigError(f"--gpus {','.join(map(str, settings.gpus))}: {err}") from None
            notes.append(f"NVML not used: {err}")
    if not cpu_measured:
        from ..sources.estimate import CpuEstimateSource, MemoryEstimateSource

        cpu = CpuEstimateSource(settings.procfs_root, watts=settings.cpu_watts)
        mem = MemoryEstimateSource(settings.procfs_root)
        sources += [cpu, mem]
        notes.append(f"cpu-estimate: {cpu.power_model.basis}")
        notes.append(f"memory-estimate: {mem.gb:.3g} GB x CCF memory coefficient ({mem.watts:.3g} W)")
    return sources, notes


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
