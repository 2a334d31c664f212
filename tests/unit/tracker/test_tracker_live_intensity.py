"""The tracker with a live provider (intensity.selection) behind a real local HTTP server
serving the Electricity Maps v3 history shape: a step change mid-run, and a stopped server's
fallback kept in the run's JSON provenance."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from tracker_helpers import KWH, PowerSource, ScriptedSource

from carbontrack.core.types import Component, Method
from carbontrack.intensity.catalogue import Catalogue
from carbontrack.intensity.selection import IntensityConfig, select
from carbontrack.tracker import track
from carbontrack.tracker.clock import ManualClock
from carbontrack.tracker.registry import Registry
from carbontrack.tracker.scope import MachineScope
from carbontrack.tracker.session import Session

# the real HTTP server the provider tests use
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "intensity"))
from fakeapi_intensity import FakeApi, Reply

CAT = Catalogue.load()
CPU = (Component.CPU, "package-0", Method.MEASURED, 0.0)
# an hour inside Electricity Maps' 24 h history window (the provider compares with real time)
HOUR = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi()
    try:
        yield server
    finally:
        server.close()


def history(values: dict[int, float]) -> dict[str, Any]:
    rows = []
    for offset, value in values.items():
        t = HOUR + timedelta(hours=offset)
        rows.append({"zone": "DE", "carbonIntensity": value,
                     "datetime": t.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                     "updatedAt": t.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                     "emissionFactorType": "lifecycle", "isEstimated": False})
    return {"zone": "DE", "history": rows}


def test_step_change_mid_run_is_the_sum_of_per_interval_products(api: FakeApi) -> None:
    api.add("/carbon-intensity/history", Reply(body=history({0: 200.0, 1: 400.0})))
    sel = select(IntensityConfig(provider="electricitymaps", base_url=api.url),
                 {"ELECTRICITYMAPS_API_TOKEN": "tok-test"}, catalogue=CAT)
    clock = ManualClock(HOUR + timedelta(minutes=59, seconds=40))
    joules = [1000.0, 1500.0, 800.0, 900.0]
    src = ScriptedSource("rapl", [CPU], steps=[[j] for j in joules])
    s = Session([src], sel.lookup, "DE", 1.2, MachineScope(), clock)
    s.start()
    for _ in joules:
        clock.advance(10)
        s.sample()
    totals = s.totals()
    expected = sum(j * i for j, i in zip(joules, (200.0, 200.0, 400.0, 400.0), strict=True)) * 1.2 / KWH
    assert totals.co2e_grams == pytest.approx(expected, rel=1e-12)
    used = {(f.g_per_kwh, f.intervals, f.it_energy_j) for f in totals.factors}
    assert used == {(200.0, 2, 2500.0), (400.0, 2, 1700.0)}
    assert all(f.fallback_reason is None and "Electricity Maps" in f.source for f in totals.factors)
    assert len(api.seen) == 1  # every interval from one cached answer


def test_stopped_server_falls_back_visibly_in_the_json(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", "tok-test")
    api = FakeApi()
    api.close()  # nothing listens: every request is refused
    clock = ManualClock(HOUR + timedelta(minutes=10))
    config = IntensityConfig(provider="electricitymaps", base_url=api.url)
    with track(zone="DE", output_dir=tmp_path, formats=("json",), intensity=config,
               sources=[PowerSource(clock, {Component.CPU: 100.0})], scope=MachineScope(),
               clock=clock, registry=Registry()) as t:
        clock.advance(60)
    r = t.result
    assert r is not None
    static = CAT.get("DE")
    doc = json.loads((tmp_path / f"carbontrack-{r.run_id}.json").read_text())
    (factor,) = doc["factors"]
    assert (factor["g_per_kwh"], factor["source"]) == (static.g_per_kwh, static.source)
    assert factor["fallback_reason"].startswith("electricitymaps: ")
    assert "cannot connect" in factor["fallback_reason"] and "tok-test" not in json.dumps(doc)
    assert doc["host"]["intensity_provider"] == "electricitymaps"
    assert any("intensity fallback for DE" in w for w in doc["warnings"])
    assert r.co2e_grams == pytest.approx(100 * 60 / KWH * static.g_per_kwh)


def test_marginal_and_average_in_one_run_are_named(api: FakeApi) -> None:
    body = {"data": [{"point_time": (HOUR + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "value": 1000.0} for m in range(0, 60, 5)],
            "meta": {"units": "lbs_co2_per_mwh", "data_point_period_seconds": 300}}
    api.add("/login", Reply(body={"token": "jwt"}))
    api.add("/v3/historical", Reply(body=body), Reply(503, {"error": "maintenance"}))
    config = IntensityConfig(provider="watttime", base_url=api.url, cache_ttl_s=0.0,
                             watttime_regions=(("US-CAL-CISO", "CAISO_NORTH"),))
    sel = select(config, {"WATTTIME_USERNAME": "u", "WATTTIME_PASSWORD": "p"}, catalogue=CAT)
    clock = ManualClock(HOUR + timedelta(minutes=10))
    src = ScriptedSource("rapl", [CPU], steps=[[3600.0], [3600.0]])
    s = Session([src], sel.lookup, "US-CAL-CISO", 1.0, MachineScope(), clock)
    s.start()
    for _ in range(2):
        clock.advance(10)
        s.sample()
    totals = s.totals()
    static = CAT.get("US-CAL-CISO").g_per_kwh
    assert totals.co2e_grams == pytest.approx((1000.0 * 0.45359237 + static) * 3600.0 / KWH)
    assert {f.basis for f in totals.factors} == {"marginal/direct/location-based",
                                                 "average/lifecycle/location-based"}
    assert any("adds average and marginal factors" in w for w in totals.warnings)


def test_run_flags_and_environment_select_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    from carbontrack.intensity.selection import config_from_args
    from carbontrack.tracker.cli import build_parser

    a = build_parser().parse_args(["--zone", "GB", "--intensity-provider", "gb",
                                   "--intensity-base-url", "http://127.0.0.1:1"])
    assert config_from_args(a, {}) == IntensityConfig(provider="gb", base_url="http://127.0.0.1:1")
    monkeypatch.setenv("CARBONTRACK_INTENSITY_PROVIDER", "electricitymaps")
    from carbontrack.tracker.settings import TrackerSettings

    resolved = TrackerSettings(zone="DE").resolved()
    assert resolved.intensity is not None and resolved.intensity.provider == "electricitymaps"
