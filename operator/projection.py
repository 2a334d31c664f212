"""Projected total emissions of a running Job (pure).

Two bases, the first that applies wins:
- ``carbontrack.io/expected-duration`` annotation ("90m", "2h", "1h30m", "3600s"):
  so-far x expected / elapsed (constant power assumed);
- ``spec.completions`` > 1 with some pods succeeded: so-far / (succeeded / completions)
  (constant energy per completion; running pods' energy is included so it leans high).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from carbontrack.core.errors import ConfigError

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(h|m|s)")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """Seconds in "1h30m", "90m", "45s", "2.5h"."""
    text = text.strip()
    parts = _PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ConfigError(
            f"invalid duration {text!r}: use hours, minutes and seconds, e.g. '2h', '90m', '1h30m'"
        )
    seconds = sum(float(n) * _SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"invalid duration {text!r}: must be longer than zero")
    return seconds


@dataclass(frozen=True)
class Projection:
    total_grams: float
    basis: str
    progress: float  # fraction of the expected work done, 0..1


def project(
    so_far_grams: float,
    elapsed_s: float,
    expected_duration_s: float | None,
    completions: int | None,
    succeeded: int,
) -> Projection | None:
    if so_far_grams < 0 or elapsed_s <= 0:
        return None
    if expected_duration_s is not None:
        progress = min(elapsed_s / expected_duration_s, 1.0)
        # Past the expected end the Job is still running: what it emitted so far is the floor.
        total = max(so_far_grams / progress, so_far_grams)
        return Projection(total, f"expected-duration {expected_duration_s:.0f}s", progress)
    if completions is not None and completions > 1 and succeeded > 0:
        progress = min(succeeded / completions, 1.0)
        return Projection(so_far_grams / progress, f"{succeeded}/{completions} completions", progress)
    return None
