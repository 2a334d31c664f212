"""Carbon-aware timing of deferrable Jobs on the real API server (Kubernetes 1.36), time
compressed: the forecast's points are four seconds apart.

The chart's admission policies are applied (test_integrity's ``guarded`` namespace), so a Job
that alice creates with ``carbontrack.io/deferrable-until`` is created suspended by the
MutatingAdmissionPolicy. The operator runs as the chart's ServiceAccount. It asks a local HTTP
server answering in the Electricity Maps forecast shape (../shared/data/raw/API_NOTES.md) and
releases each Job as follows:

- at the forecast minimum, when that falls before the deadline;
- at its deadline, when the minimum comes later;
- at once, with a Warning Event, when the provider answers 401 (no forecast).

The records and ``carbontrack report deferrals`` keep each one's counterfactual.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import test_operator as op_e2e
from kubernetes import client
from test_integrity import Guarded, _record_of, guarded  # noqa: F401  (guarded: the module's fixture)

from carbontrack.devcluster.workloads import sim_job
from carbontrack.intensity.selection import IntensityConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "intensity"))
from fakeapi_intensity import FakeApi, Reply

pytestmark = pytest.mark.e2e
STEP = timedelta(seconds=4)
DEFERRAL = "carbontrack.io/deferral"
# g/kWh per 4-second point: falling to index 4, the minimum at index 5, high after
VALUES = [500.0, 450.0, 400.0, 350.0, 300.0, 50.0] + [600.0] * 14


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class ForecastServer:
    """A local server in the Electricity Maps forecast shape. Its points start at ``t0``,
    which :meth:`start_now` sets, so the time the operator takes to start is not counted:
    two answers with the forecast, then a wrong token (401) for every later request."""

    def __init__(self) -> None:
        self.t0 = datetime.now(timezone.utc)
        self.api = FakeApi()
        self.api.add("/carbon-intensity/forecast", Reply(body=self._body), Reply(body=self._body),
                     Reply(401, {"error": "invalid auth-token"}))

    def start_now(self, lead: timedelta = timedelta(seconds=8)) -> datetime:
        self.t0 = datetime.now(timezone.utc).replace(microsecond=0) + lead
        return self.t0

    def _body(self, _path: str, _query: dict[str, str]) -> dict[str, Any]:
        return {"zone": "DE", "updatedAt": iso(self.t0), "forecast": [
            {"carbonIntensity": v, "datetime": iso(self.t0 + i * STEP)} for i, v in enumerate(VALUES)]}


@pytest.fixture
def forecast_server() -> Iterator[ForecastServer]:
    server = ForecastServer()
    try:
        yield server
    finally:
        server.api.close()


def _job(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return sim_job(name, run_seconds=2.0, labels={"team": "defer"}, annotations=annotations)


def _plan(g: Guarded, name: str, wait_for: Any, state: str) -> dict[str, Any]:
    def probe() -> dict[str, Any]:
        ann = g.batch(g.admin).read_namespaced_job(name, g.namespace).metadata.annotations or {}
        value = json.loads(ann.get(DEFERRAL, "null"))
        if not (isinstance(value, dict) and value.get("state") == state):
            raise AssertionError(f"not {state} yet: {value}")  # shown if the wait times out
        return value
    return dict(wait_for(f"{name}'s deferral {state}", probe, 60))


def _events(g: Guarded, uid: str) -> dict[str, str]:
    items = client.CoreV1Api(g.admin).list_namespaced_event(
        g.namespace, field_selector=f"involvedObject.uid={uid}").items
    return {e.reason: f"{e.type}: {e.message}" for e in items}


def _wait_admission(g: Guarded) -> None:
    """The deferrable MutatingAdmissionPolicy is in effect (policies reach admission through
    informers): a deferrable probe Job comes back created suspended."""
    deadline = time.monotonic() + 30
    while True:
        body = _job("probe-defer", {"carbontrack.io/deferrable-until": "1h"})
        created = g.batch(g.alice).create_namespaced_job(g.namespace, body)
        g.batch(g.admin).delete_namespaced_job("probe-defer", g.namespace, propagation_policy="Background")
        if created.spec.suspend:
            return
        assert time.monotonic() < deadline, "the hold-deferrable admission policy never took effect"
        while True:  # the name is free again before the next try
            try:
                g.batch(g.admin).read_namespaced_job("probe-defer", g.namespace)
            except client.exceptions.ApiException:
                break
            time.sleep(0.2)


def test_deferrable_jobs_wait_for_the_forecast_minimum_or_their_deadline_or_run_at_once(
    guarded: Guarded, devstack: Any, forecast_server: ForecastServer, wait_for: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    g = guarded
    _wait_admission(g)
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", "tok-e2e-deferral")
    intensity = IntensityConfig(provider="electricitymaps", base_url=forecast_server.api.url, cache_ttl_s=0)
    batch = g.batch(g.alice)
    with op_e2e.operator(g.operator_kubeconfig, devstack.prometheus.url, g.namespace,
                         deferral_zone="DE", intensity=intensity):
        t0 = forecast_server.start_now()
        # 1: the minimum (index 5, 50 g/kWh) lies before its deadline: held until then
        a = batch.create_namespaced_job(g.namespace, _job("at-minimum", {
            "carbontrack.io/deferrable-until": "90s", "carbontrack.io/expected-duration": "4s"}))
        assert a.spec.suspend is True  # created held by the admission policy: no pod before the plan
        # 2: its deadline (index 3) comes before the minimum: the forecast falls until then
        deadline_b = t0 + 3 * STEP
        b = batch.create_namespaced_job(g.namespace, _job("at-deadline", {
            "carbontrack.io/deferrable-until": iso(deadline_b), "carbontrack.io/expected-duration": "4s"}))
        plan_a = _plan(g, "at-minimum", wait_for, "held")
        assert parse(plan_a["plannedStart"]) == t0 + 5 * STEP
        assert plan_a["intensityAtRun"] == 50.0 and plan_a["intensityAtSubmission"] >= 400.0
        plan_b = _plan(g, "at-deadline", wait_for, "held")
        assert parse(plan_b["plannedStart"]) == deadline_b and "deadline" in plan_b["reason"]
        # 3: the provider answers 401 now: no forecast, it runs at once and says why
        c = batch.create_namespaced_job(g.namespace, _job("no-forecast", {
            "carbontrack.io/deferrable-until": "90s", "carbontrack.io/expected-duration": "4s"}))
        plan_c = _plan(g, "no-forecast", wait_for, "released")
        assert "no usable forecast" in plan_c["reason"] and "HTTP 401" in plan_c["reason"]
        assert "tok-e2e-deferral" not in json.dumps(plan_c)
        assert plan_c["intensityAtRun"] is None
        assert _events(g, c.metadata.uid)["NotDeferred"].startswith("Warning: runs at once")
        assert not g.batch(g.admin).read_namespaced_job("no-forecast", g.namespace).spec.suspend

        released_b = _plan(g, "at-deadline", wait_for, "released")
        assert deadline_b <= parse(released_b["releasedAt"]) < deadline_b + timedelta(seconds=2.5)
        released_a = _plan(g, "at-minimum", wait_for, "released")
        assert t0 + 5 * STEP <= parse(released_a["releasedAt"]) < t0 + 5 * STEP + timedelta(seconds=2.5)
        for job in (a, b):
            events = _events(g, job.metadata.uid)
            assert "DeferredForLowCarbon" in events and "ReleasedForLowCarbon" in events
        # each ran only after its release (the Job controller's startTime, in whole seconds)
        for name, released in (("at-minimum", released_a), ("at-deadline", released_b)):
            started = wait_for(f"{name} started", lambda n=name: g.batch(g.admin).read_namespaced_job(
                n, g.namespace).status.start_time, 60)
            assert started >= parse(released["releasedAt"]).replace(microsecond=0)

        records = {job.metadata.name: _record_of(g, job.metadata.uid, wait_for) for job in (a, b, c)}
    for name, entry in records.items():
        kept = json.loads(entry["annotations"][DEFERRAL])
        assert kept["state"] == "released", name
    out = subprocess.run(
        [sys.executable, "-m", "carbontrack", "report", "deferrals", "--kubeconfig",
         str(devstack.cluster.kubeconfig), "--namespace", g.namespace, "--format", "json"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    rows = {r["job"]: r for r in json.loads(out)}
    assert set(rows) == {"at-minimum", "at-deadline", "no-forecast"}
    a_row, b_row, c_row = rows["at-minimum"], rows["at-deadline"], rows["no-forecast"]
    assert a_row["intensity_at_run"] == 50.0 and b_row["intensity_at_run"] == 350.0
    for row in (a_row, b_row):
        assert row["energy_kwh"] and row["energy_kwh"] > 0
        assert row["avoided_grams_estimate"] == pytest.approx(
            row["energy_kwh"] * (row["intensity_at_submission"] - row["intensity_at_run"]))
        assert row["avoided_grams_estimate"] > 0 and "estimate" in row["estimate_basis"]
    assert c_row["avoided_grams_estimate"] is None and "no usable forecast" in c_row["reason"]


def test_a_budget_that_lets_a_deferred_job_go_early_leaves_it_held_for_its_window(
    guarded: Guarded, devstack: Any, forecast_server: ForecastServer, wait_for: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    g, ns = guarded, guarded.namespace
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", "tok-e2e-deferral")
    intensity = IntensityConfig(provider="electricitymaps", base_url=forecast_server.api.url, cache_ttl_s=0)
    budgets = g.custom(g.admin)
    with op_e2e.operator(g.operator_kubeconfig, devstack.prometheus.url, ns,
                         deferral_zone="DE", intensity=intensity):
        # a Suspend budget exceeded by one earlier Job of the team
        first = g.batch(g.alice).create_namespaced_job(ns, sim_job("first", run_seconds=2.0,
                                                                   labels={"team": "both"}))
        _record_of(g, first.metadata.uid, wait_for)
        budgets.create_namespaced_custom_object("carbontrack.io", "v1alpha1", ns, "carbonbudgets", op_e2e.budget_body(
            "both", "0.01mg", action="Suspend", selector={"matchLabels": {"team": "both"}}))
        wait_for("the budget exceeded", lambda: (budgets.get_namespaced_custom_object(
            "carbontrack.io", "v1alpha1", ns, "carbonbudgets", "both").get("status") or {}).get("exceeded"), 60)
        t0 = forecast_server.start_now()
        job = g.batch(g.alice).create_namespaced_job(ns, sim_job(
            "held-twice", run_seconds=2.0, labels={"team": "both"},
            annotations={"carbontrack.io/deferrable-until": "90s", "carbontrack.io/expected-duration": "4s"}))
        assert job.spec.suspend is True and job.metadata.annotations["carbontrack.io/suspended-by"] == f"{ns}/both"
        plan = _plan(g, "held-twice", wait_for, "held")
        window = parse(plan["plannedStart"])
        assert window == t0 + 5 * STEP
        # the budget allows new Jobs again well before the window: only its hold is lifted
        budgets.patch_namespaced_custom_object("carbontrack.io", "v1alpha1", ns, "carbonbudgets", "both",
                                               {"spec": {"limit": "1t"}})
        lifted = wait_for("the budget's hold lifted", lambda: (
            j := g.batch(g.admin).read_namespaced_job("held-twice", ns)).metadata.annotations.get(
            "carbontrack.io/suspended-by") is None and j, 30)
        assert datetime.now(timezone.utc) < window, "the budget was lifted too late for this test"
        assert lifted.spec.suspend is True  # still held for its low-carbon window
        assert "stays held for its low-carbon window" in _events(g, job.metadata.uid)["ResumedByCarbonBudget"]
        released = _plan(g, "held-twice", wait_for, "released")
        assert window <= parse(released["releasedAt"]) < window + timedelta(seconds=2.5)
        assert g.batch(g.admin).read_namespaced_job("held-twice", ns).spec.suspend is False
