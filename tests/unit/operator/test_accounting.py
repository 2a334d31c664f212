import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from carbontrack.operator.accounting import build_accounting
from carbontrack.operator.jobs import JobFacts, job_facts
from carbontrack.operator.prometheus import Sample

from carbontrack import __version__
from carbontrack.core.errors import TemporaryError

T0 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def job_body(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"uid": "u-1", "name": "train", "namespace": "ml",
                     "creationTimestamp": "2026-03-01T11:59:58Z", "labels": {"team": "nlp"},
                     "resourceVersion": "42", "finalizers": ["carbontrack.io/accounting"]},
        "spec": {"parallelism": 2, "completions": 4, "template": {"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"nvidia.com/gpu": "2"}}},
            {"name": "b", "resources": {}}]}}},
        "status": {"startTime": "2026-03-01T12:00:00Z", **status},
    }


def finished_job() -> JobFacts:
    return job_facts(job_body(
        completionTime="2026-03-01T13:00:00Z", succeeded=4,
        conditions=[{"type": "Complete", "status": "True",
                     "lastTransitionTime": "2026-03-01T13:00:00Z"}]))


def test_job_facts_of_a_complete_job() -> None:
    f = finished_job()
    assert (f.uid, f.namespace, f.name, f.outcome) == ("u-1", "ml", "train", "Complete")
    assert f.finished_at == T0 + timedelta(hours=1)
    assert f.started_at == T0 and f.lifetime_start == T0
    assert (f.gpus_per_pod, f.parallelism, f.completions, f.succeeded) == (2, 2, 4, 4)
    assert f.finalizers == ("carbontrack.io/accounting",)
    assert not f.accounted


def test_job_facts_of_a_failed_and_a_running_job() -> None:
    failed = job_facts(job_body(conditions=[
        {"type": "Failed", "status": "True", "lastTransitionTime": "2026-03-01T12:10:00Z"}]))
    assert failed.outcome == "Failed" and failed.finished_at == T0 + timedelta(minutes=10)
    running = job_facts(job_body(active=2, conditions=[
        {"type": "Complete", "status": "False"}]))
    assert running.outcome is None and not running.finished and running.active == 2


def test_job_deleted_while_running_ends_at_its_deletion() -> None:
    # The Job controller leaves a deleted Job alone: no Complete/Failed condition will come.
    body = job_body(active=2)
    body["metadata"]["deletionTimestamp"] = "2026-03-01T12:30:00Z"
    deleted = job_facts(body)
    assert (deleted.outcome, deleted.finished_at) == ("Deleted", T0 + timedelta(minutes=30))
    assert deleted.finished and deleted.deleting and deleted.ever_ran
    # a Job that finished first keeps its own outcome and time
    done = job_body(completionTime="2026-03-01T13:00:00Z", succeeded=4, conditions=[
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-03-01T13:00:00Z"}])
    done["metadata"]["deletionTimestamp"] = "2026-03-01T14:00:00Z"
    assert (job_facts(done).outcome, job_facts(done).finished_at) == ("Complete", T0 + timedelta(hours=1))
    # queued (created suspended, never resumed) and deleted: no pod ever ran
    queued = job_body()
    del queued["status"]["startTime"]
    queued["spec"]["suspend"] = True
    queued["metadata"]["deletionTimestamp"] = "2026-03-01T12:30:00Z"
    assert job_facts(queued).outcome == "Deleted" and not job_facts(queued).ever_ran
    del queued["metadata"]["deletionTimestamp"]
    queued["status"]["failed"] = 1  # a pod that failed and was not retried yet did run
    assert job_facts(queued).ever_ran and job_facts(queued).outcome is None


def s(value: float, **labels: str) -> Sample:
    return Sample(labels, value)


ENERGY = [
    s(3.6e6, node="n1", component="cpu", method="measured"),
    s(1.8e6, node="n2", component="cpu", method="measured"),
    s(7.2e6, node="n1", component="gpu", method="measured"),
    s(0.36e6, node="n1", component="dram", method="estimated"),
]
# n1 zone at 400 g/kWh x PUE 1.5, n2 at 100 g/kWh x PUE 1.2
CO2E = [
    s(1.0 * 1.5 * 400, node="n1", component="cpu", method="measured"),
    s(0.5 * 1.2 * 100, node="n2", component="cpu", method="measured"),
    s(2.0 * 1.5 * 400, node="n1", component="gpu", method="measured"),
    s(0.1 * 1.5 * 400, node="n1", component="dram", method="estimated"),
]
PUE = [s(1.5, node="n1"), s(1.2, node="n2")]
INTENSITY = [
    s(400, node="n1", zone="DE", source="ember", basis="average/lifecycle/location-based"),
    s(100, node="n2", zone="FR", source="ember", basis="average/lifecycle/location-based"),
]
PODS = [s(1, pod_uid="p1", component="cpu"), s(1, pod_uid="p1", component="gpu"),
        s(1, pod_uid="p2", component="cpu")]


def test_build_accounting_sums_components_and_weights_intensity_by_energy() -> None:
    job = finished_job()
    acc = build_accounting(job, T0, T0 + timedelta(hours=1, seconds=40), ENERGY, CO2E, PUE, INTENSITY, PODS)
    assert acc.energy_kwh == pytest.approx(3.6)
    assert acc.energy_j == {"cpu": 5.4e6, "gpu": 7.2e6, "dram": 0.36e6}
    co2e = 600 + 60 + 1200 + 60
    assert acc.co2e_grams == pytest.approx(co2e)
    facility_kwh = (1.0 + 2.0 + 0.1) * 1.5 + 0.5 * 1.2
    assert acc.intensity_g_per_kwh == pytest.approx(co2e / facility_kwh)
    assert acc.zones == ["DE", "FR"]
    assert acc.method == "estimated+measured"
    assert acc.nodes == ["n1", "n2"]
    assert acc.pods == 2
    assert acc.gpu_hours == pytest.approx(2 * 2 * 1.0)  # 2 GPUs x min(parallelism 2, 2 pods) x 1 h
    measured_j = 3.6e6 + 1.8e6 + 7.2e6
    assert acc.uncertainty == pytest.approx((measured_j * 0.05 + 0.36e6 * 0.30) / 12.96e6)


def test_annotations_carry_values_and_a_json_report() -> None:
    job = finished_job()
    now = T0 + timedelta(hours=1, seconds=40)
    acc = build_accounting(job, T0, now, ENERGY, CO2E, PUE, INTENSITY, PODS)
    ann = acc.annotations(now)
    assert ann["carbontrack.io/energy-kwh"] == "3.6"
    assert ann["carbontrack.io/co2e-grams"] == "1920"
    assert ann["carbontrack.io/grid-zone"] == "DE,FR"
    assert ann["carbontrack.io/method"] == "estimated+measured"
    assert ann["carbontrack.io/accounted-at"] == "2026-03-01T13:00:40Z"
    assert float(ann["carbontrack.io/intensity-g-per-kwh"]) == pytest.approx(1920 / 5.25, rel=1e-5)
    report = json.loads(ann["carbontrack.io/report"])
    assert report["energyKwhByComponent"] == {"cpu": 1.5, "dram": 0.1, "gpu": 2.0}
    assert report["gpuHours"]["value"] == 4.0
    assert report["pue"] == {"n1": 1.5, "n2": 1.2}
    assert report["zones"] == ["DE", "FR"]
    assert {f["basis"] for f in report["intensityFactors"]} == {"average/lifecycle/location-based"}
    assert report["window"] == {"start": "2026-03-01T12:00:00Z", "end": "2026-03-01T13:00:00Z"}
    assert report["toolVersion"] == __version__
    assert 0 < report["uncertainty"]["relative"] < 0.3


def test_energy_conservation_components_sum_to_total() -> None:
    acc = build_accounting(finished_job(), T0, T0 + timedelta(hours=2), ENERGY, CO2E, PUE, INTENSITY, PODS)
    assert sum(acc.energy_j.values()) == pytest.approx(sum(x.value for x in ENERGY))
    assert sum(acc.co2e_g.values()) == pytest.approx(sum(x.value for x in CO2E))


@pytest.mark.parametrize(
    ("energy", "co2e", "pue", "fragment"),
    [
        ([s(-1, node="n1", component="cpu")], CO2E, PUE, "negative energy"),
        (ENERGY, [s(-5, node="n1", component="cpu")], PUE, "negative CO2e"),
        (ENERGY, [], PUE, "no CO2e series"),
        (ENERGY, CO2E, [s(1.5, node="n1")], "no PUE gauge for node"),
    ],
)
def test_inconsistent_data_is_a_temporary_error(
    energy: list[Sample], co2e: list[Sample], pue: list[Sample], fragment: str
) -> None:
    with pytest.raises(TemporaryError, match=fragment):
        build_accounting(finished_job(), T0, T0 + timedelta(hours=2), energy, co2e, pue, INTENSITY, PODS)


def test_annotations_name_the_job_uid_so_a_cloned_manifest_is_not_accounted() -> None:
    job = finished_job()
    now = T0 + timedelta(hours=1, seconds=40)
    ann = build_accounting(job, T0, now, ENERGY, CO2E, PUE, INTENSITY, PODS).annotations(now)
    assert ann["carbontrack.io/accounted-uid"] == "u-1"
    body = job_body(completionTime="2026-03-01T13:00:00Z", conditions=[
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-03-01T13:00:00Z"}])
    assert job_facts({**body, "metadata": {**body["metadata"], "annotations": ann}}).accounted
    clone = {**body, "metadata": {**body["metadata"], "uid": "u-2", "annotations": ann}}
    assert not job_facts(clone).accounted


def test_co2e_lacking_a_component_with_energy_is_temporary() -> None:
    co2e = [s for s in CO2E if s.labels.get("component") != "gpu"]
    with pytest.raises(TemporaryError, match="gpu"):
        build_accounting(finished_job(), T0, T0 + timedelta(hours=2), ENERGY, co2e, PUE, INTENSITY, PODS)


def test_job_facts_keep_only_carbontrack_annotations() -> None:
    body = job_body()
    body["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 10_000 + "}",
        "carbontrack.io/expected-duration": "2h", "carbontrack.io/suspended-by": "ml/b"}
    assert job_facts(body).annotations == {"carbontrack.io/expected-duration": "2h",
                                           "carbontrack.io/suspended-by": "ml/b"}
