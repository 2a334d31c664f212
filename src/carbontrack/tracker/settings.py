"""Tracker settings: one dataclass for the CLI and the Python API, units in the names.

Environment: ``CARBONTRACK_ZONE`` and ``CARBONTRACK_PUE`` stand in for ``zone``/``pue``
when those are not given explicitly (explicit always wins); the intensity provider's
variables are read by ``carbontrack.intensity.selection``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from ..core.emissions import validate_pue
from ..core.errors import ConfigError
from ..intensity.selection import IntensityConfig, config_from

SCOPES = ("process", "machine")
FORMATS = ("csv", "json")
DEFAULT_INTERVAL_S = 10.0


@dataclass(frozen=True)
class TrackerSettings:
    project_name: str = "carbontrack"
    experiment_id: str = ""
    zone: str | None = None  # grid zone key; None: CARBONTRACK_ZONE, then carbontrack.intensity.resolve
    pue: float | None = None  # facility / IT energy, >= 1; None: CARBONTRACK_PUE, then 1.0
    output_dir: Path | None = Path(".")  # None: write no files
    csv_name: str = "emissions.csv"  # CodeCarbon's default file name, so its readers find it
    formats: tuple[str, ...] = FORMATS
    scope: str = "process"
    interval_s: float = DEFAULT_INTERVAL_S  # seconds between samples
    cpu_watts: float | None = None  # fixed CPU power instead of RAPL / the utilisation model
    gpus: tuple[int, ...] | None = None  # NVML indices to measure; None: all
    market_factor_g_per_kwh: float | None = None  # e.g. a supplier-specific / residual-mix factor
    sysfs_root: Path = Path("/sys")
    procfs_root: Path = Path("/proc")
    summary: bool = False  # print the end-of-run table to stderr
    # provider (static catalogue or a live API), base URL, overrides, market-based factors:
    # carbontrack.intensity.selection; None: from the environment (CARBONTRACK_INTENSITY_*)
    intensity: IntensityConfig | None = None

    def resolved(self, env: Mapping[str, str] | None = None) -> TrackerSettings:
        """Apply environment defaults and validate; raises ConfigError with one actionable line."""
        env = os.environ if env is None else env
        s = self
        if s.zone is None and env.get("CARBONTRACK_ZONE"):
            s = replace(s, zone=env["CARBONTRACK_ZONE"].strip())
        pue = s.pue
        if pue is None and env.get("CARBONTRACK_PUE"):
            pue = _number(env["CARBONTRACK_PUE"], "CARBONTRACK_PUE")
        s = replace(s, pue=validate_pue(1.0 if pue is None else float(pue)))
        if s.intensity is None:
            s = replace(s, intensity=config_from(env))
        if s.scope not in SCOPES:
            raise ConfigError(f"unknown scope {s.scope!r}: use one of {', '.join(SCOPES)}")
        bad = [f for f in s.formats if f not in FORMATS]
        if bad:
            raise ConfigError(f"unknown output format {bad[0]!r}: use csv, json or csv,json")
        if not (s.interval_s > 0 and math.isfinite(s.interval_s)):
            raise ConfigError(f"invalid interval {s.interval_s!r}: give seconds > 0, e.g. --interval 10")
        if s.cpu_watts is not None and not (s.cpu_watts > 0 and math.isfinite(s.cpu_watts)):
            raise ConfigError(f"invalid CPU watts {s.cpu_watts!r}: give a power > 0, e.g. --cpu-watts 65")
        m = s.market_factor_g_per_kwh
        if m is not None and not (m >= 0 and math.isfinite(m)):
            raise ConfigError(f"invalid market factor {m!r}: give gCO2e/kWh >= 0")
        if s.gpus is not None and any(i < 0 for i in s.gpus):
            raise ConfigError(f"invalid GPU index in {s.gpus}: indices are >= 0, e.g. --gpus 0,1")
        return s


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{what}={text!r} is not a number") from None


def parse_gpus(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"invalid --gpus {text!r}: give comma-separated indices, e.g. 0,1") from None
