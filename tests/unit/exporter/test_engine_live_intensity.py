"""The engine with a live provider behind a real local HTTP server (Electricity Maps v3
history shape): each interval's CO2e uses that interval's intensity, the fallback to the
static factor is visible in the next interval after the server stops, and it recovers.
Also the Node object read from an API server (a real HTTP server) for the zone."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from carbontrack.exporter.cli import build_emissions, read_node
from carbontrack.exporter.collector import TextRenderer
from carbontrack.exporter.emissions import EmissionsRates
from carbontrack.exporter.engine import Engine
from carbontrack.exporter.settings import Settings

from carbontrack.core.types import JOULES_PER_KWH
from carbontrack.intensity.catalogue import Catalogue
from carbontrack.intensity.selection import IntensityConfig, select

# the real HTTP server the provider tests use
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "intensity"))
from fakeapi_intensity import FakeApi, Reply

GIB = 1 << 30
UID = "0a0a0a0a-1111-2222-3333-444444444444"
T0 = 1_750_003_180.0  # 2025-06-15T15:59:40Z: the hour changes after two 10 s intervals
PUE = 1.2


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi()
    try:
        yield api
    finally:
        api.close()


def history(values: dict[int, float]) -> dict[str, Any]:
    return {"zone": "DE", "history": [
        {"zone": "DE", "carbonIntensity": v, "datetime": f"2025-06-15T{h:02d}:00:00.000Z",
         "updatedAt": "2025-06-15T16:01:00.000Z", "emissionFactorType": "lifecycle",
         "isEstimated": False, "estimationMethod": None} for h, v in values.items()]}


def live_engine(make_node: Any, api: FakeApi, catalogue: Catalogue) -> tuple[Any, Engine]:
    node = make_node(now=T0)
    node.add_pod(UID, "guaranteed", {"train": (4.0, 8 * GIB)}, name="train-x")
    eng = node.engine(pue=PUE)
    config = IntensityConfig(provider="electricitymaps", base_url=api.url, cache_ttl_s=15.0,
                             backoff_s=30.0)
    sel = select(config, {"ELECTRICITYMAPS_API_TOKEN": "tok-test"}, catalogue=catalogue,
                 clock=lambda: node.now, draw=lambda: 0.0,
                 now=lambda: datetime.fromtimestamp(node.now, timezone.utc))
    eng.emissions = EmissionsRates(sel.lookup, "DE", PUE, provider=sel.provider)
    eng.collect()  # baseline
    return node, eng


def step(node: Any, eng: Engine, joules: float) -> float:
    """One 10 s interval with ``joules`` on package 0; returns the train container's joules."""
    node.now += 10
    node.rapl(joules, 0.0, 0.0, 0.0)
    node.tree.advance_cpu(UID, "train", 20.0)
    result = eng.collect()
    assert result is not None
    return sum(result.containers[(UID, "train")].values())


def grams(eng: Engine) -> float:
    return sum(eng.ledger.containers[(UID, "train")].grams.values())


def test_step_change_mid_run_gives_the_sum_of_per_interval_products(
        make_node: Any, fake_api: FakeApi, catalogue: Catalogue) -> None:
    fake_api.add("/carbon-intensity/history", Reply(body=history({15: 200.0, 16: 400.0})))
    node, eng = live_engine(make_node, fake_api, catalogue)
    expected = 0.0
    for joules, intensity in ((1000.0, 200.0), (1500.0, 200.0), (800.0, 400.0), (900.0, 400.0)):
        j = step(node, eng, joules)
        assert j > 0
        expected += j * intensity * PUE / JOULES_PER_KWH
        assert eng.snapshot.intensity is not None and eng.snapshot.intensity[3] == intensity
    assert grams(eng) == pytest.approx(expected, rel=1e-12)
    # one value for the whole run would be wrong by this much: the intervals are not equal
    assert grams(eng) != pytest.approx(expected / 300.0 * 400.0, rel=1e-3)
    assert eng.snapshot.intensity_fallback == ("electricitymaps", False)
    # four intervals, two TTL windows (15 s): two requests, not one per interval
    assert len(fake_api.requests_to("/carbon-intensity/history")) == 2


def test_stopped_server_shows_the_fallback_next_interval_and_recovers(
        make_node: Any, catalogue: Catalogue) -> None:
    api = FakeApi()
    body = history({15: 200.0, 16: 400.0})
    api.add("/carbon-intensity/history", Reply(body=body))
    node, eng = live_engine(make_node, api, catalogue)
    static = catalogue.get("DE")
    expected = step(node, eng, 1000.0) * 200.0
    port = api.port
    api.close()
    node.now += 10  # past the 15 s cache TTL at the next interval
    j = step(node, eng, 1000.0)
    snap = eng.snapshot
    assert snap.intensity_fallback == ("electricitymaps", True)
    assert snap.intensity is not None and snap.intensity[1:] == (
        static.source, static.basis.label(), static.g_per_kwh)
    text = TextRenderer().render(snap).decode()
    assert 'carbontrack_grid_intensity_fallback{node="node-1",provider="electricitymaps"} 1.0' in text
    expected += j * static.g_per_kwh
    restarted = FakeApi(port)
    try:
        restarted.add("/carbon-intensity/history", Reply(body=body))
        expected += step(node, eng, 1000.0) * static.g_per_kwh  # still inside the 30 s backoff
        assert restarted.seen == []
        node.now += 20
        expected += step(node, eng, 1000.0) * 400.0
        assert eng.snapshot.intensity_fallback == ("electricitymaps", False)
        assert len(restarted.seen) == 1
    finally:
        restarted.close()
    assert grams(eng) == pytest.approx(expected * PUE / JOULES_PER_KWH, rel=1e-12)


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig.json"
    path.write_text(json.dumps({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "sa-token"}}]}))
    return path


def test_the_node_object_read_from_the_api_gives_the_zone(fake_api: FakeApi,
                                                          tmp_path: Path) -> None:
    fake_api.add("/api/v1/nodes/n1", Reply(body={
        "kind": "Node", "metadata": {"name": "n1", "labels": {
            "topology.kubernetes.io/region": "europe-west1"}},
        "spec": {"providerID": "gce://proj/europe-west1-b/n1"}}))
    s = Settings(node_name="n1", kubeconfig=kubeconfig(tmp_path, fake_api.url))
    node = read_node(s)
    assert node is not None and fake_api.seen[0].headers["authorization"] == "Bearer sa-token"
    assert build_emissions(s, node, env={}).zone == "gcp:europe-west1"


def test_a_node_the_api_refuses_leaves_the_other_rules(fake_api: FakeApi, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    fake_api.add("/api/v1/nodes/n1", Reply(403, {"kind": "Status", "message": "nodes \"n1\" is "
                                                  "forbidden"}))
    s = Settings(node_name="n1", kubeconfig=kubeconfig(tmp_path, fake_api.url), default_zone="FR")
    assert read_node(s) is None
    assert "forbidden" in caplog.text
    assert build_emissions(s, None, env={}).zone == "FR"


def test_the_zone_label_is_the_catalogue_zone_live_or_not(fake_api: FakeApi) -> None:
    # an hour inside the provider's 24 h /history window (build_emissions uses real time)
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    row = {"zone": "IE", "carbonIntensity": 250.0,
           "datetime": hour.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    fake_api.add("/carbon-intensity/history", Reply(body={"zone": "IE", "history": [row]}),
                 Reply(500, {"error": "down"}))
    env = {"ELECTRICITYMAPS_API_TOKEN": "tok-test"}
    s = Settings(node_name="n1", zone="aws:eu-west-1",
                 intensity=IntensityConfig(provider="electricitymaps", base_url=fake_api.url,
                                           cache_ttl_s=0.0))
    rates = build_emissions(s, env=env)
    t = (hour + timedelta(minutes=30)).timestamp()
    live = rates.rate(t, t + 5)
    assert live.factor is not None and (live.factor.zone, live.factor.g_per_kwh) == ("IE", 250.0)
    assert fake_api.seen[0].query["zone"] == "IE"  # the region's Electricity Maps zone
    static = rates.rate(t + 5, t + 10)
    assert static.factor is not None and static.factor.fallback_reason is not None
    assert static.factor.zone == "IE"
