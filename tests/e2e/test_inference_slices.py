"""Long-running workloads end to end (operator/long_running.py): a Deployment serving a
simulated load on kwok nodes (the node simulator drives its pods' cgroup CPU; the exporters
measure it; Prometheus scrapes them) is accounted per 5-second slice. The operator is stopped
for two slices and started again: every slice is recorded once, the slices are contiguous and
their CO2e adds up to the counters' total in Prometheus. A real HTTP server in this process
serves the inference server's token counter (vLLM's ``vllm:generation_tokens_total``),
scraped by the harness' Prometheus with the namespace label Kubernetes service discovery
would give it, plus a decoy in another namespace; the report's gCO2e per 1,000 tokens equals
CO2e / tokens computed here from Prometheus by hand."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_operator import InProcessOperator, budget_body, create_budget, get_budget, install_crd

from carbontrack.core.records import GROUP, PLURAL, VERSION, parse_object
from carbontrack.core.slices import parse_slice_key, slice_key
from carbontrack.devcluster.simulator import CPU_CORES

pytestmark = pytest.mark.e2e

SLICE_S = 5.0
TOKENS_PER_S = 40.0
UTC = timezone.utc


@pytest.fixture(scope="module")
def crd(devstack: Any) -> None:
    from carbontrack.devcluster.kube import api_client

    with api_client(Path(devstack.cluster.kubeconfig)) as api:
        install_crd(api)  # idempotent: replaces the definition if test_operator installed it


class TokenServer:
    """An inference server's /metrics: a token counter growing at TOKENS_PER_S (as a serving
    pod's would); /decoy is another namespace's server with a far larger counter."""

    def __init__(self) -> None:
        self.t0 = time.time()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                scale = 1000.0 if self.path == "/decoy" else 1.0
                tokens = math.floor((time.time() - server.t0) * TOKENS_PER_S * scale)
                body = ("# TYPE vllm:generation_tokens_total counter\n"
                        f'vllm:generation_tokens_total{{model_name="sim"}} {tokens}\n').encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def tokens(prometheus: Any, namespace: str) -> Iterator[TokenServer]:
    server = TokenServer()
    prometheus.set_targets("workload-metrics", {
        f"127.0.0.1:{server.port}": {"namespace": namespace, "pod": "llm-gateway"},
        f"localhost:{server.port}": {"namespace": "someone-else", "pod": "spy",
                                     "__metrics_path__": "/decoy"},
    })
    yield server
    prometheus.set_targets("workload-metrics", {})
    server.close()


def query_at(url: str, promql: str, at: datetime) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": promql, "time": f"{at.timestamp():.3f}"})
    with urllib.request.urlopen(f"{url}/api/v1/query?{params}", timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def total(result: list[dict[str, Any]]) -> float:
    return math.fsum(float(x["value"][1]) for x in result)


def deployment(name: str, query: str = 'vllm:generation_tokens_total{model_name="sim"}',
               replicas: int = 2, team: str = "serving") -> dict[str, Any]:
    pod_ann = {CPU_CORES: "1"}  # the simulator keeps one core busy per pod
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"team": team}, "annotations": {
            "carbontrack.io/functional-unit": "token", "carbontrack.io/functional-unit-query": query}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}, "annotations": pod_ann},
                              "spec": {"nodeSelector": {"type": "kwok"}, "containers": [
                                  {"name": "serve", "image": "registry.invalid/carbontrack/sim-serve:1",
                                   "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}}},
    }


def recorded_slices(custom: Any, namespace: str, uid: str) -> dict[datetime, Any]:
    """Slice start -> the operator's record entry, for this workload."""
    out: dict[datetime, Any] = {}
    for obj in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
        parsed = parse_object(obj)
        assert not parsed.errors
        for key, entry in parsed.entries.items():
            got = parse_slice_key(key)
            if got is not None and got[0] == uid:
                assert got[1] not in out, f"slice {key} recorded twice"
                out[got[1]] = entry
    return out


def test_a_deployment_is_accounted_per_slice_across_an_operator_restart(
    crd: None, kubeconfig: Path, prometheus: Any, namespace: str, custom_objects: Any,
    api_client: Any, wait_for: Any, tokens: TokenServer, tmp_path: Path,
) -> None:
    from kubernetes import client

    apps = client.AppsV1Api(api_client)
    wait_for("the token counter scraped", lambda: prometheus.query(
        f'vllm:generation_tokens_total{{namespace="{namespace}"}}') or None, 30)
    create_budget(custom_objects, namespace, budget_body(
        "serving", "1kg", selector={"matchLabels": {"team": "serving"}}))

    def start() -> InProcessOperator:
        return InProcessOperator(kubeconfig, prometheus.url, namespace, slice_length_s=SLICE_S,
                                 projection_interval_s=0.0, annotate_long_running=True).start()

    op = start()
    # created just after a grid line, so its pods are usually scraped within the first slice
    time.sleep((0.2 - time.time() % SLICE_S) % SLICE_S)
    dep = apps.create_namespaced_deployment(namespace, deployment("llm"))
    # a functional unit that reaches into another namespace: refused, yet accounted by energy
    bad = apps.create_namespaced_deployment(namespace, deployment(
        "bad", 'vllm:generation_tokens_total{namespace="someone-else"}', replicas=1, team="other"))
    # deleted while the operator is down: its final slice comes from the records and Prometheus
    tail = apps.create_namespaced_deployment(namespace, deployment("tail", replicas=1, team="tail"))
    uid, created = dep.metadata.uid, dep.metadata.creation_timestamp
    wait_for("3 slices recorded", lambda: (len(recorded_slices(custom_objects, namespace, uid)) >= 3 and any(
        (e.co2e_grams or 0) > 0 for e in recorded_slices(custom_objects, namespace, tail.metadata.uid).values()))
        or None, 60)
    op.stop()
    stopped = datetime.now(UTC)
    apps.delete_namespaced_deployment("tail", namespace)
    core = client.CoreV1Api(api_client)
    wait_for("the deleted Deployment's pods gone", lambda: not core.list_namespaced_pod(
        namespace, label_selector="app=tail").items or None, 30)
    time.sleep(max(0.0, (stopped - datetime.now(UTC)).total_seconds() + 2 * SLICE_S + 1))  # two slices pass
    restarted = datetime.now(UTC)
    op = start()
    try:
        wait_for("the slices after the restart recorded", lambda: any(
            s >= restarted + timedelta(seconds=SLICE_S)
            for s in recorded_slices(custom_objects, namespace, uid)) or None, 60)
        wait_for("the deleted Deployment's final slice", lambda: any(
            e.data["slice"].get("final") for e in recorded_slices(
                custom_objects, namespace, tail.metadata.uid).values()) or None, 60)
        # the last slice's budget ledger entry and its copy on the Deployment are written right
        # after its record: wait for the round to finish them (a fixed sleep flakes on a loaded
        # CI machine), then stop before the next round
        def round_finished() -> bool | None:
            done = recorded_slices(custom_objects, namespace, uid)
            ledger = (get_budget(custom_objects, namespace, "serving").get("status") or {}).get("ledger") or {}
            last = apps.read_namespaced_deployment("llm", namespace).metadata.annotations.get(
                "carbontrack.io/last-slice", "")
            return (all(slice_key(uid, s) in ledger for s in done)
                    and last == str(int(max(done).timestamp()))) or None

        wait_for("the latest slice's ledger entry and annotations", round_finished, 30)
    finally:
        op.stop()
    slices = recorded_slices(custom_objects, namespace, uid)
    starts = sorted(slices)
    # the overview dashboard's "Slice CO2e by workload" series: the restarted operator counted
    # exactly the slices it recorded (the chart e2e runs Jobs only and leaves this row out)
    after_restart = [e.co2e_grams or 0.0 for e in slices.values() if e.accounted_at >= restarted]
    assert after_restart and op.registry.get_sample_value(
        "carbontrack_workload_slice_co2e_grams_total",
        {"namespace": namespace, "kind": "Deployment", "workload": "llm"}) == pytest.approx(
            math.fsum(after_restart), rel=1e-9)

    # contiguous from the slice holding the Deployment's creation, none missing or twice
    first = datetime.fromtimestamp(math.floor(created.timestamp() / SLICE_S) * SLICE_S, UTC)
    assert starts[0] == first
    for a, b in itertools.pairwise(starts):
        assert slices[a].finished_at == b, f"gap or overlap after the slice at {a}"
    assert any(stopped <= s + timedelta(seconds=SLICE_S) and s <= restarted for s in starts), \
        "the slices of the downtime were caught up"
    # the pods' first samples can come after the slice holding the creation has ended (a loaded
    # machine): that slice is then "no data", and only if Prometheus has no sample of theirs in it
    if slices[first].co2e_grams is None:
        assert not query_at(prometheus.url, f'carbontrack_container_co2e_grams_total'
                                            f'{{namespace="{namespace}",pod=~"llm-.*"}}',
                            slices[first].finished_at)
    assert all(slices[s].co2e_grams is not None for s in starts[1:]), \
        [(s.isoformat(), slices[s].co2e_grams, created.isoformat()) for s in starts]
    counted = [s for s in starts if slices[s].co2e_grams is not None]  # the report's lines
    end = slices[starts[-1]].finished_at

    # Σ slices = the counters' total in Prometheus over the span (no gap, no double count),
    # the series picked by hand: this namespace's pods named after the Deployment
    span = math.ceil((end - first).total_seconds()) + 5
    prom_g = total(query_at(prometheus.url, f'max_over_time(carbontrack_container_co2e_grams_total'
                                            f'{{namespace="{namespace}",pod=~"llm-.*"}}[{span}s])', end))
    slice_g = math.fsum(slices[s].co2e_grams or 0.0 for s in starts)
    assert prom_g > 0
    assert slice_g == pytest.approx(prom_g, rel=1e-5)

    # counted by the budget that selects the Deployment's labels, once per slice
    def ledger_settled() -> dict[str, Any] | None:
        st = get_budget(custom_objects, namespace, "serving").get("status") or {}
        return st if len(st.get("ledger") or {}) >= len(starts) else None

    status = wait_for("the budget ledger", ledger_settled, 20)
    in_ledger = [k for k in status["ledger"] if parse_slice_key(k) and parse_slice_key(k)[0] == uid]
    assert len(in_ledger) == len(set(in_ledger)) == len(starts)
    assert status["usedGrams"] == pytest.approx(slice_g, rel=1e-6)

    # the copy on the Deployment: latest slice and running total
    ann = apps.read_namespaced_deployment("llm", namespace).metadata.annotations
    latest = int(ann["carbontrack.io/last-slice"])
    upto = [s for s in starts if s.timestamp() <= latest]
    assert float(ann["carbontrack.io/co2e-grams-total"]) == pytest.approx(
        math.fsum(slices[s].co2e_grams or 0.0 for s in upto), rel=1e-5)

    # the Deployment deleted while the operator was down: its slices run without gap from its
    # creation to its final slice, which ends when its counters stopped growing (before the
    # restart; the exporter keeps the flat series for --retention, 10 minutes), recorded once;
    # their sum is its pods' counters' total in Prometheus
    tail_slices = recorded_slices(custom_objects, namespace, tail.metadata.uid)
    tail_starts = sorted(tail_slices)
    assert [tail_slices[s].data["slice"]["final"] for s in tail_starts] == [False] * (len(tail_starts) - 1) + [True]
    for a, b in itertools.pairwise(tail_starts):
        assert tail_slices[a].finished_at == b, f"gap or overlap after the deleted Deployment's slice at {a}"
    tail_end = tail_slices[tail_starts[-1]].finished_at
    assert tail_starts[-1] < tail_end < restarted
    assert tail_slices[tail_starts[-1]].data["job"]["outcome"] == "Deleted"
    tail_span = math.ceil((datetime.now(UTC) - tail_starts[0]).total_seconds()) + 5
    tail_prom = total(query_at(prometheus.url, f'max_over_time(carbontrack_container_co2e_grams_total'
                                               f'{{namespace="{namespace}",pod=~"tail-.*"}}[{tail_span}s])',
                               datetime.now(UTC)))
    assert tail_prom > 0
    assert math.fsum(e.co2e_grams or 0.0 for e in tail_slices.values()) == pytest.approx(tail_prom, rel=1e-5)

    # the refused functional unit: a Warning Event naming the rule; its slices still carry CO2e
    refused = [e for e in core.list_namespaced_event(namespace).items
               if e.reason == "FunctionalUnitInvalid" and e.involved_object.uid == bad.metadata.uid]
    assert refused and "namespace" in refused[0].message and "energy only" in refused[0].message
    assert refused[0].type == "Warning" and refused[0].involved_object.kind == "Deployment"
    bad_slices = recorded_slices(custom_objects, namespace, bad.metadata.uid)
    assert bad_slices and any((e.co2e_grams or 0) > 0 for e in bad_slices.values())
    assert all(e.data["inputs"]["carbontrack.io/functional-units"] == "1" for e in bad_slices.values())

    # the report: gCO2e per 1,000 tokens = CO2e / tokens, tokens from Prometheus by hand
    # (each series' last value at the end minus its last value at the start); a "no data"
    # slice is a skipped line there, so its tokens are not in the section
    sel = f'vllm:generation_tokens_total{{namespace="{namespace}"}}'
    tokens_used = (total(query_at(prometheus.url, f"last_over_time({sel}[{int(SLICE_S)}s])", end))
                   - total(query_at(prometheus.url, f"last_over_time({sel}[{int(SLICE_S)}s])", counted[0])))
    assert tokens_used > 0
    out = tmp_path / "report"
    res = subprocess.run(
        [sys.executable, "-m", "carbontrack", "report", "--cluster", "--kubeconfig", str(kubeconfig),
         "-n", namespace, "--since", first.isoformat(), "--until", (end + timedelta(seconds=1)).isoformat(),
         "--format", "json,html", "-o", str(out), "-q"],
        capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "report.json").read_text())
    [w] = [x for x in doc["long_running"] if x["name"] == "llm"]
    assert (w["name"], w["kind"], w["uid"], w["slices"], w["contiguous"]) == ("llm", "Deployment", uid,
                                                                           len(counted), True)
    assert w["units_coverage"] == f"{len(counted)}/{len(counted)} slices"
    assert w["units"] == pytest.approx(tokens_used, rel=1e-9)
    assert w["location_gco2e"] == pytest.approx(slice_g, rel=1e-9)
    assert w["g_per_1000_units"] == pytest.approx(prom_g / tokens_used * 1000.0, rel=1e-5)
    assert "gCO2e per 1,000 units" in (out / "report.html").read_text()
