"""The real `carbontrack exporter` process with ``--intensity-provider electricitymaps``
against a real local HTTP server serving the Electricity Maps v3 history shape (the token
from ELECTRICITYMAPS_API_TOKEN, as the chart's Secret provides it): the intensity metric
shows the live value and source, a step change is exported, stopping the server gives the
static factor with carbontrack_grid_intensity_fallback 1, restarting it recovers.

No cluster (``--no-kube``); the cache is off (``--intensity-cache-ttl 0``) and the backoff
short so that a few 0.2 s cycles show every state. The exact per-interval arithmetic is
tested with injected clocks in tests/unit/exporter/test_engine_live_intensity.py.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from carbontrack.devcluster.exporter_process import ExporterProcess, Samples
from carbontrack.intensity.catalogue import Catalogue
from carbontrack.sim.cgroups import FakeCgroupTree
from carbontrack.sim.powercap import FakePowercap
from carbontrack.sim.procfs import FakeProcStat, write_meminfo

# the real HTTP server the provider unit tests use
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "intensity"))
from fakeapi_intensity import FakeApi, Reply

GIB = 1 << 30
A = "0a0a0a0a-1111-2222-3333-444444444444"
TOKEN = "test-token-not-a-secret"


class History:
    """The last 24 hours at one value the test changes (the step)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        top = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        return {"zone": query.get("zone", "DE"), "history": [
            {"zone": "DE", "carbonIntensity": self.value,
             "datetime": (top - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
             "emissionFactorType": "lifecycle", "isEstimated": False} for h in range(24)]}


def intensity(m: Samples) -> tuple[dict[str, str], float]:
    (sample,) = m["carbontrack_grid_carbon_intensity_grams_per_kwh"]
    return sample


def fallback(m: Samples) -> float:
    (sample,) = m["carbontrack_grid_intensity_fallback"]
    assert sample[0]["provider"] == "electricitymaps"
    return sample[1]


def scrape_until(ex: ExporterProcess, ok: Callable[[Samples], bool]) -> Samples:
    """Scrapes until ``ok`` holds; fails after 30 s (a bound on a hung process, not a timing
    claim: each state needs only a cycle or two)."""
    deadline = time.monotonic() + 30
    while True:
        m = ex.scrape()
        if "carbontrack_grid_carbon_intensity_grams_per_kwh" in m and ok(m):
            return m
        assert time.monotonic() < deadline, f"state not reached; last scrape: {m}"
        time.sleep(0.1)


def test_live_value_step_fallback_and_recovery(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pc = FakePowercap(tmp_path / "sys")
    pc.add_package(0)
    FakeProcStat(tmp_path / "proc", 8)
    write_meminfo(tmp_path / "proc", 64 * GIB)
    tree = FakeCgroupTree(tmp_path / "sys", version=2, driver="systemd", runtime="containerd",
                          procfs_root=tmp_path / "proc")
    tree.add_pod(A, "guaranteed", {"train": (4.0, 8 * GIB)})
    history = History(200.0)
    api = FakeApi()
    api.add("/carbon-intensity/history", Reply(body=history))
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", TOKEN)
    ex = ExporterProcess(tmp_path, "--interval", "0.2", "--intensity-provider", "electricitymaps",
                         "--intensity-base-url", api.url, "--intensity-cache-ttl", "0",
                         "--intensity-backoff", "0.5")
    restarted: FakeApi | None = None
    try:
        m = scrape_until(ex, lambda m: intensity(m)[1] == 200.0)
        labels, _ = intensity(m)
        assert labels["source"].startswith("Electricity Maps API v3 history (DE")
        assert labels["basis"] == "average/lifecycle/location-based"
        assert fallback(m) == 0.0
        assert api.seen[0].headers["auth-token"] == TOKEN
        assert api.seen[0].query["zone"] == "DE"

        history.value = 300.0  # the step
        scrape_until(ex, lambda m: intensity(m)[1] == 300.0 and fallback(m) == 0.0)

        port = api.port
        api.close()
        static = Catalogue.load().get("DE")
        m = scrape_until(ex, lambda m: fallback(m) == 1.0)
        labels, value = intensity(m)
        assert (labels["source"], value) == (static.source, static.g_per_kwh)
        up = {lab["source"]: v for lab, v in m["carbontrack_source_up"]}
        assert up["intensity"] == 1.0  # a factor is known: CO2e keeps being counted

        restarted = FakeApi(port)
        restarted.add("/carbon-intensity/history", Reply(body=history))
        scrape_until(ex, lambda m: fallback(m) == 0.0 and intensity(m)[1] == 300.0)
        assert ex.stop() == 0
    finally:
        if ex.proc.poll() is None:
            ex.stop()
        api.close()
        if restarted is not None:
            restarted.close()
    log = (tmp_path / "exporter.log").read_text()
    assert "grid intensity for DE from the static catalogue (electricitymaps: " in log
    assert "from electricitymaps again (live)" in log
    assert TOKEN not in log
