"""The stack is real: a Job goes through the real apiserver, scheduler and Job controller,
runs on a kwok node, and the energy the simulator gave its pod comes back from Prometheus
through that node's exporter."""

from __future__ import annotations

from typing import Any

import pytest

from carbontrack.devcluster.workloads import sim_job

pytestmark = pytest.mark.e2e

RUN_S = 10.0

# case -> (component, node, Job): CPU on sim-small-0 (2 cores at 10 W, no idle power, so a
# pod that keeps both busy gets exactly the energy it causes); GPU on sim-gpu-0 (an
# exclusively allocated GPU's whole energy is its pod's, read through the real pynvml
# bindings); AMD GPU on sim-amd-0 (the Job asks for amd.com/gpu and tolerates the pool's
# taint; the node's exporter reads it through the real amdsmi bindings, ticks x 15.3 uJ).
CASES = {
    "cpu": ("cpu", "sim-small-0",
            sim_job("smoke", run_seconds=RUN_S, cpu_cores=2, node="sim-small-0")),
    "gpu": ("gpu", "sim-gpu-0", sim_job("smoke", run_seconds=RUN_S, cpu_cores=1, gpus=1,
                                        gpu_watts=300, node="sim-gpu-0")),
    "amd-gpu": ("gpu", "sim-amd-0", sim_job("smoke", run_seconds=RUN_S, cpu_cores=1, gpus=1,
                                            gpu_watts=300, node="sim-amd-0",
                                            gpu_vendor="amd")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_job_completes_on_kwok_node_and_prometheus_returns_its_energy(
    case: str, namespace: str, batch_v1: Any, core_v1: Any, simulator: Any,
    prometheus: Any, exporters: Any, wait_for: Any,
) -> None:
    component, node, job = CASES[case]
    watts = 2 * 10.0 if component == "cpu" else 300.0
    batch_v1.create_namespaced_job(namespace, job)

    def job_pod() -> Any:
        pods = core_v1.list_namespaced_pod(namespace, label_selector="job-name=smoke").items
        return pods[0] if pods and pods[0].spec.node_name else None

    pod = wait_for("the Job's pod to be scheduled", job_pod, 30)
    assert pod.spec.node_name == node
    uid = pod.metadata.uid
    wait_for("the pod to run", lambda: core_v1.read_namespaced_pod(
        pod.metadata.name, namespace).status.phase == "Running", 30)

    def complete() -> bool:
        job = batch_v1.read_namespaced_job("smoke", namespace)
        return any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or [])

    wait_for("the Job controller to mark the Job Complete", complete, RUN_S + 40)
    done = core_v1.read_namespaced_pod(pod.metadata.name, namespace)
    assert done.status.phase == "Succeeded"
    job = batch_v1.read_namespaced_job("smoke", namespace)
    assert job.status.succeeded == 1

    record = wait_for("the simulator to see the pod end", lambda: (
        (r := simulator.record(uid)) is not None and r.ended is not None and r), 20)
    expected = record.joules[component]
    ran_s = record.ended - record.started
    # the simulator's own bookkeeping: its power for as long as the pod ran
    assert expected == pytest.approx(watts * ran_s, rel=0.1)
    assert ran_s == pytest.approx(RUN_S, abs=3.0)

    promql = (f'sum(carbontrack_container_energy_joules_total{{pod_uid="{uid}",'
              f'component="{component}"}})')

    def settled() -> float | None:
        result = prometheus.query(promql)
        if not result:
            return None
        value = float(result[0]["value"][1])
        return value if value >= 0.8 * expected else None

    value = wait_for(f"Prometheus to return {promql}", settled, 60)
    # exact up to float rounding when every exporter cycle ran; 5% leaves room for a cycle
    # delayed on a loaded machine
    assert value == pytest.approx(expected, rel=0.05)

    series = prometheus.query(
        f'carbontrack_container_energy_joules_total{{pod_uid="{uid}",component="{component}"}}')
    labels = series[0]["metric"]
    assert labels["node"] == node
    assert labels["namespace"] == namespace
    assert labels["owner_kind"] == "Job" and labels["owner_name"] == "smoke"
    assert labels["instance"] == exporters[node].url.removeprefix("http://")
