"""The stack is real: a Job goes through the real apiserver, scheduler and Job controller,
runs on a kwok node, and the energy the simulator gave its pod comes back from Prometheus
through that node's exporter."""

from __future__ import annotations

from typing import Any

import pytest

from carbontrack.devcluster.workloads import sim_job

pytestmark = pytest.mark.e2e

NODE = "sim-small-0"  # 2 cores, no idle power: the pod's energy is the node's energy
RUN_S = 10.0
CORES = 2.0
WATTS_PER_CORE = 10.0


def test_job_completes_on_kwok_node_and_prometheus_returns_its_energy(
    namespace: str, batch_v1: Any, core_v1: Any, simulator: Any, prometheus: Any,
    exporters: Any, wait_for: Any,
) -> None:
    batch_v1.create_namespaced_job(
        namespace, sim_job("smoke", run_seconds=RUN_S, cpu_cores=CORES, node=NODE)
    )

    def job_pod() -> Any:
        pods = core_v1.list_namespaced_pod(namespace, label_selector="job-name=smoke").items
        return pods[0] if pods and pods[0].spec.node_name else None

    pod = wait_for("the Job's pod to be scheduled", job_pod, 30)
    assert pod.spec.node_name == NODE
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
    expected = record.joules["cpu"]
    ran_s = record.ended - record.started
    # the simulator's own bookkeeping: 2 busy cores at 10 W each for as long as it ran
    assert expected == pytest.approx(CORES * WATTS_PER_CORE * ran_s, rel=0.1)
    assert ran_s == pytest.approx(RUN_S, abs=3.0)

    promql = (f'sum(carbontrack_container_energy_joules_total{{pod_uid="{uid}",'
              f'component="cpu"}})')

    def settled() -> float | None:
        result = prometheus.query(promql)
        if not result:
            return None
        value = float(result[0]["value"][1])
        return value if value >= 0.8 * expected else None

    value = wait_for(f"Prometheus to return {promql}", settled, 60)
    assert value == pytest.approx(expected, rel=0.2)

    series = prometheus.query(
        f'carbontrack_container_energy_joules_total{{pod_uid="{uid}",component="cpu"}}')
    labels = series[0]["metric"]
    assert labels["node"] == NODE
    assert labels["namespace"] == namespace
    assert labels["owner_kind"] == "Job" and labels["owner_name"] == "smoke"
    assert labels["instance"] == exporters[NODE].url.removeprefix("http://")
