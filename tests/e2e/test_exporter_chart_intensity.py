"""The exporter's grid zone and live intensity as the chart and the API server give them.

- **Chart and Secret.** The chart's exporter DaemonSet is rendered with a provider selected
  and a Secret holding the token, and both are created on the real API server. The exporter
  process then runs with the flags and environment the API server stores for that
  DaemonSet: the Secret's value is resolved through the API, as the kubelet resolves a
  ``secretKeyRef``. The host paths are the test's. The process talks to a local HTTP server
  answering in the Electricity Maps documented shapes. The test checks that the intensity
  metric shows the live value and its source, that stopping the server shows the fallback
  in the next interval, and that restarting the server recovers.
- **Zones from Nodes.** Three exporter processes run without ``--zone`` and read their own
  Node from the API server:
  - cloud region: ``providerID: aws:///…`` with a region label resolves to ``aws:eu-west-1``
    (catalogue zone IE);
  - the ``carbontrack.io/grid-zone`` label resolves to that zone;
  - no labels: the node exports energy without CO2e; ``carbontrack_source_up{source="intensity"}``
    is 0 and the log says why.

No kubelet runs these exporters (the kwok nodes run no processes). The pod that a kubelet
would start is this process, with the DaemonSet's own arguments and environment.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from carbontrack.devcluster.exporter_process import Samples, parse
from carbontrack.devcluster.ports import free_port
from carbontrack.intensity.catalogue import Catalogue
from carbontrack.sim.powercap import FakePowercap
from carbontrack.sim.procfs import FakeProcStat, write_meminfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "intensity"))
from fakeapi_intensity import FakeApi, Reply
from test_chart_tools import helm_template_text

pytestmark = pytest.mark.e2e
TOKEN = "e2e-token-from-a-secret"
HOST_ARGS = ("--node-name=", "--sysfs=", "--procfs=", "--listen=", "--state-dir=", "--pod-resources-dir=")
KEEP_OFF = {"carbontrack.io/e2e-no-such-node": "true"}  # the DaemonSet schedules no pod


class History:
    """Electricity Maps /carbon-intensity/history: the last 24 hours at one value."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, _path: str, query: dict[str, str]) -> dict[str, Any]:
        top = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        return {"zone": query.get("zone", "DE"), "history": [
            {"zone": "DE", "carbonIntensity": self.value, "emissionFactorType": "lifecycle",
             "datetime": (top - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
             "isEstimated": False} for h in range(24)]}


def node_tree(root: Path) -> FakePowercap:
    """A node's /sys (one RAPL package) and /proc under ``root``; the powercap to advance."""
    pc = FakePowercap(root / "sys")
    pc.add_package(0)
    FakeProcStat(root / "proc", 4).advance(10, 1)
    write_meminfo(root / "proc", 16 << 30)
    (root / "state").mkdir(parents=True)
    return pc


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return parse(r.read().decode())


def scrape_until(port: int, ok: Callable[[Samples], bool], what: str) -> Samples:
    """Bounded by 30 s (a hung process), not a timing claim: each state needs a cycle or two."""
    deadline = time.monotonic() + 30
    last: Samples | str = "no scrape yet"
    while time.monotonic() < deadline:
        try:
            m = scrape(port)
            if ok(m):
                return m
            last = m
        except (OSError, KeyError, ValueError) as err:
            last = repr(err)
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached; last scrape: {last}")


def one(m: Samples, name: str) -> tuple[dict[str, str], float]:
    (sample,) = m[name]
    return sample


def up(m: Samples) -> dict[str, float]:
    return {labels["source"]: value for labels, value in m.get("carbontrack_source_up", [])}


# ---------------------------------------------------------------------- chart + Secret


def _daemonset_as_stored(apps: client.AppsV1Api, namespace: str, api_url: str) -> dict[str, Any]:
    values = {
        "intervalSeconds": 1, "pools": [{"name": "live", "zone": "DE", "nodeSelector": KEEP_OFF}],
        "intensity": {"provider": "electricitymaps", "baseUrl": api_url},
        "credentials": [{"env": "ELECTRICITYMAPS_API_TOKEN", "secretName": "carbontrack-em",
                         "secretKey": "token"}],
        # no response cache and a short backoff, so that stop and restart show in a cycle or two
        "extraArgs": ["--intensity-cache-ttl=0", "--intensity-backoff=0.5"]}
    text = helm_template_text(set_json=[f"exporter.{k}={json.dumps(v)}" for k, v in values.items()],
                              namespace=namespace, release="e2e-live")
    ds = next(d for d in yaml.safe_load_all(text) if d and d["kind"] == "DaemonSet")
    ds["metadata"]["namespace"] = namespace
    apps.create_namespaced_daemon_set(namespace, ds)  # the API server validates and defaults it
    stored = apps.read_namespaced_daemon_set(ds["metadata"]["name"], namespace)
    return dict(client.ApiClient().sanitize_for_serialization(stored))


def _pod_env(core: client.CoreV1Api, namespace: str, container: dict[str, Any], node: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it: values, the node's name for the
    fieldRef, and each secretKeyRef read from its Secret."""
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        source = item.get("valueFrom") or {}
        if "value" in item:
            env[item["name"]] = item["value"]
        elif source.get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
            env[item["name"]] = node
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = core.read_namespaced_secret(ref["name"], namespace)
            env[item["name"]] = base64.b64decode(secret.data[ref["key"]]).decode()
    return env


def test_chart_provider_with_a_secret_token_live_fallback_and_recovery(
    devstack: Any, core_v1: Any, api_client: Any, namespace: str, start_process: Any, tmp_path: Path,
) -> None:
    history = History(210.0)
    api = FakeApi()
    api.add("/carbon-intensity/history", Reply(body=history))
    restarted: FakeApi | None = None
    try:
        core_v1.create_namespaced_secret(namespace, {
            "metadata": {"name": "carbontrack-em"}, "type": "Opaque",
            "data": {"token": base64.b64encode(TOKEN.encode()).decode()}})
        ds = _daemonset_as_stored(client.AppsV1Api(api_client), namespace, api.url)
        (container,) = ds["spec"]["template"]["spec"]["containers"]
        args = [a for a in container["args"] if not a.startswith(HOST_ARGS)]
        assert args[0] == "exporter" and "--intensity-provider=electricitymaps" in args
        assert f"--intensity-base-url={api.url}" in args and "--zone=DE" in args
        assert TOKEN not in json.dumps(ds)  # the manifest holds a reference, never the token
        env = _pod_env(core_v1, namespace, container, "chart-live-0")
        assert env["ELECTRICITYMAPS_API_TOKEN"] == TOKEN
        root = tmp_path / "node"
        node_tree(root)
        port = free_port()
        start_process("chart-live-exporter", [
            sys.executable, "-m", "carbontrack", *args, f"--node-name={env['NODE_NAME']}",
            f"--sysfs={root / 'sys'}", f"--procfs={root / 'proc'}", f"--state-dir={root / 'state'}",
            f"--listen=127.0.0.1:{port}", "--no-kube", "--no-nvml"], env=env)

        m = scrape_until(port, lambda m: one(m, "carbontrack_grid_carbon_intensity_grams_per_kwh")[1] == 210.0,
                         "the live value")
        labels, _ = one(m, "carbontrack_grid_carbon_intensity_grams_per_kwh")
        assert labels["source"].startswith("Electricity Maps API v3 history (DE")
        assert one(m, "carbontrack_grid_intensity_fallback")[1] == 0.0
        assert api.seen[0].headers["auth-token"] == TOKEN  # the Secret's value reached the provider

        port_of_api = api.port
        api.close()
        stopped_at = time.monotonic()
        static = Catalogue.load().get("DE")
        m = scrape_until(port, lambda m: one(m, "carbontrack_grid_intensity_fallback")[1] == 1.0,
                         "the fallback")
        # within one 1 s interval of the stop, plus the scrape and the process's own cycle
        assert time.monotonic() - stopped_at < 1.0 + 1.0 + 0.5
        labels, value = one(m, "carbontrack_grid_carbon_intensity_grams_per_kwh")
        assert (labels["source"], value) == (static.source, static.g_per_kwh)

        restarted = FakeApi(port_of_api)
        restarted.add("/carbon-intensity/history", Reply(body=history))
        scrape_until(port, lambda m: one(m, "carbontrack_grid_intensity_fallback")[1] == 0.0
                     and one(m, "carbontrack_grid_carbon_intensity_grams_per_kwh")[1] == 210.0, "recovery")
    finally:
        api.close()
        if restarted is not None:
            restarted.close()


# ---------------------------------------------------------------------- zones from Nodes


@pytest.fixture
def nodes(core_v1: Any) -> Iterator[dict[str, dict[str, Any]]]:
    """Three Node objects the scheduler never uses (tainted), deleted afterwards."""
    taint = [{"key": "carbontrack.io/e2e-zone-test", "value": "true", "effect": "NoSchedule"}]
    made = {
        "zone-cloud-0": {"labels": {"topology.kubernetes.io/region": "eu-west-1"},
                         "providerID": "aws:///eu-west-1b/i-0zone0000000001"},
        "zone-label-0": {"labels": {"carbontrack.io/grid-zone": "FR"}, "providerID": None},
        "zone-none-0": {"labels": {}, "providerID": None},
    }
    for name, spec in made.items():
        body: dict[str, Any] = {"metadata": {"name": name, "labels": spec["labels"]},
                                "spec": {"taints": taint}}
        if spec["providerID"]:
            body["spec"]["providerID"] = spec["providerID"]
        core_v1.create_node(body)
    try:
        yield made
    finally:
        for name in made:
            core_v1.delete_node(name)


def test_nodes_get_their_zone_without_zone_flags_and_an_unresolvable_one_exports_energy_only(
    devstack: Any, kubeconfig: Path, nodes: dict[str, dict[str, Any]], start_process: Any, tmp_path: Path,
) -> None:
    ports: dict[str, int] = {}
    logs: dict[str, Path] = {}
    rapl: dict[str, FakePowercap] = {}
    for name in nodes:
        root = tmp_path / name
        rapl[name] = node_tree(root)
        ports[name] = free_port()
        logs[name] = start_process(f"{name}-exporter", [
            sys.executable, "-m", "carbontrack", "exporter", f"--node-name={name}",
            f"--kubeconfig={kubeconfig}", f"--sysfs={root / 'sys'}", f"--procfs={root / 'proc'}",
            f"--state-dir={root / 'state'}", f"--listen=127.0.0.1:{ports[name]}", "--interval=0.5",
            "--no-nvml"]).log_path

    def zone_of(name: str) -> str:
        m = scrape_until(ports[name], lambda m: "carbontrack_grid_carbon_intensity_grams_per_kwh" in m,
                         f"{name}'s intensity")
        return one(m, "carbontrack_grid_carbon_intensity_grams_per_kwh")[0]["zone"]

    # providerID says aws, the label the region: aws:eu-west-1, whose catalogue zone is IE
    assert zone_of("zone-cloud-0") == "IE"
    assert "grid zone aws:eu-west-1 (catalogue zone IE, rule cloud-region)" in logs["zone-cloud-0"].read_text()
    assert zone_of("zone-label-0") == "FR"
    assert "(catalogue zone FR, rule node-label)" in logs["zone-label-0"].read_text()
    cloud = scrape(ports["zone-cloud-0"])
    assert one(cloud, "carbontrack_pue")[1] > 1.0  # the cloud's published PUE came with the region

    def burning(m: Samples) -> bool:
        rapl["zone-none-0"].advance(FakePowercap.package_zone(0), 5.0)  # the package draws power
        return up(m).get("intensity") == 0.0 and any(
            v > 0 for _, v in m.get("carbontrack_node_energy_joules_total", []))

    m = scrape_until(ports["zone-none-0"], burning, "energy without an intensity")
    assert "carbontrack_grid_carbon_intensity_grams_per_kwh" not in m
    assert not [v for _, v in m.get("carbontrack_container_co2e_grams", []) if v > 0]
    # the condition, in the log: which node, what was tried, and that CO2e is not exported
    text = logs["zone-none-0"].read_text()
    assert "node zone-none-0" in text and "energy is exported, CO2e is not" in text
