"""One-machine tracker: ``track()`` (decorator / context manager) and `carbontrack run`.

from carbontrack.tracker import track
with track(zone="FR") as t:
    train()
print(t.result.co2e_grams)
"""

from .api import DecoratingTracker, Tracker, track
from .registry import OverlapWarning
from .result import ResultLogger, RunResult
from .settings import TrackerSettings

__all__ = [
    "DecoratingTracker",
    "OverlapWarning",
    "ResultLogger",
    "RunResult",
    "Tracker",
    "TrackerSettings",
    "track",
]
