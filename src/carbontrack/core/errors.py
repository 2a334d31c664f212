"""Error hierarchy. Messages are one actionable sentence: what is wrong and how to fix it."""

from __future__ import annotations


class CarbonTrackError(Exception):
    """Base class; the CLI prints ``str(err)`` on one line and exits non-zero."""


class ConfigError(CarbonTrackError):
    """Bad user input (flags, settings, files). Permanent: retrying will not help."""


class UnknownZoneError(ConfigError):
    """A grid zone / region key that the catalogue cannot resolve."""


class SourceUnavailable(CarbonTrackError):
    """An energy source cannot be opened on this machine (no RAPL, no NVML...)."""


class TemporaryError(CarbonTrackError):
    """A failure worth retrying (network, Prometheus not ready)."""
