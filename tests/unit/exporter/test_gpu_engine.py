"""GPU attribution through the real pynvml bindings and the fake libnvidia-ml.so.1:
exclusive, time-sliced and MIG GPUs, vanished PIDs, and pod-resources over real gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from carbontrack.exporter.nvml_gpu import NvmlTopology
from carbontrack.exporter.podresources import messages as pr
from carbontrack.exporter.podresources.client import (
    SOCKET_NAME,
    PodResourcesClient,
    PodResourcesError,
)

from carbontrack.sim.fakenvml import (
    GIB,
    STATE_ENV,
    FakeGpu,
    FakeGpuProcess,
    FakeMig,
    build_fake_libnvml,
    load_in_process,
    write_state,
)
from carbontrack.sources.nvml import NvmlSource

A = "0a0a0a0a-1111-2222-3333-444444444444"
B = "0b0b0b0b-1111-2222-3333-444444444444"
C = "0c0c0c0c-1111-2222-3333-444444444444"
VANISHED_PID = 4_000_000  # listed by NVML, gone from /proc before its cgroup is read


@pytest.fixture(scope="session")
def fake_nvml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lib = build_fake_libnvml(tmp_path_factory.mktemp("fakenvml"))
    load_in_process(lib)
    return lib


@pytest.fixture
def nvml_path(fake_nvml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "nvml-state"
    monkeypatch.setenv(STATE_ENV, str(path))
    return path


def gpus(energy_j: list[float]) -> list[FakeGpu]:
    mj = [round(j * 1000) for j in energy_j]
    return [
        FakeGpu("GPU-00000000-0000-0000-0000-000000000000", energy_mj=mj[0]),  # exclusive
        FakeGpu("GPU-11111111-0000-0000-0000-000000000000", energy_mj=mj[1]),  # time-sliced
        FakeGpu("GPU-22222222-0000-0000-0000-000000000000", energy_mj=mj[2],  # MIG
                memory_total_bytes=80 * GIB,
                migs=[FakeMig("MIG-aaaaaaaa-0000-0000-0000-000000000000",
                              memory_total_bytes=40 * GIB),
                      FakeMig("MIG-bbbbbbbb-0000-0000-0000-000000000000",
                              memory_total_bytes=20 * GIB)]),
        FakeGpu("GPU-33333333-0000-0000-0000-000000000000", energy_mj=mj[3]),  # idle
    ]


def setup_node(make_node: Any) -> Any:
    node = make_node()
    node.add_pod(A, "guaranteed", {"train": (4.0, 0)})
    node.add_pod(B, "burstable", {"infer": (1.0, 0)})
    node.add_pod(C, "burstable", {"infer2": (1.0, 0)})
    return node


def pid(node: Any, uid: str, name: str) -> int:
    return int(node.tree.pods[uid].containers[name].pid)


def procs(node: Any) -> list[FakeGpuProcess]:
    return [
        FakeGpuProcess(0, pid(node, A, "train"), sm_util=80),
        FakeGpuProcess(1, pid(node, B, "infer"), sm_util=30),
        FakeGpuProcess(1, pid(node, C, "infer2"), sm_util=10),
        FakeGpuProcess(1, VANISHED_PID, sm_util=20),
        FakeGpuProcess(2, pid(node, A, "train"), sm_util=50, mig=0),
    ]


def gpu_only(r: Any) -> dict[Any, float]:
    return {k: v["gpu"] for k, v in r.containers.items() if "gpu" in v}


def test_exclusive_time_sliced_mig_and_vanished_pids(make_node: Any, nvml_path: Path) -> None:
    node = setup_node(make_node)
    write_state(nvml_path, gpus([0, 0, 0, 0]), procs(node))
    src = NvmlSource.open(sample_interval_s=0)
    try:
        eng = node.engine(gpu=NvmlTopology(src, node.pods), extra_sources=[src])
        eng.collect()
        node.now += 10
        write_state(nvml_path, gpus([1000, 1000, 700, 50]), procs(node))
        r = eng.collect()
    finally:
        src.close()
    assert r is not None
    assert r.node["gpu"] == 2750.0
    # GPU0: A alone -> all 1000 J. GPU1: 60 % SM -> 600 J active (B 300, C 100, the vanished
    # PID's 200 unallocated), 400 J idle evenly. GPU2 (MIG): instance 0 has 40 of 80 GiB ->
    # 350 J estimated, all A's; instance 1 (175 J, unused) and the 20 GiB no instance holds
    # (175 J) unallocated. GPU3: nobody -> 50 J unallocated.
    assert gpu_only(r) == {(A, "train"): 1000.0 + 350.0, (B, "infer"): 500.0,
                           (C, "infer2"): 300.0}
    assert r.unallocated["gpu"] == 200.0 + 175.0 + 175.0 + 50.0
    t = eng.ledger.containers[(A, "train")]
    assert t.joules[("gpu", "measured")] == 1000.0
    assert t.joules[("gpu", "estimated")] == 350.0  # MIG: labelled as an estimate
    assert eng.ledger.node[("gpu", "GPU-22222222-0000-0000-0000-000000000000", "measured")] == 700


def test_mig_instance_shared_by_two_containers_split_by_memory(make_node: Any, nvml_path: Path) -> None:
    """Real MIG gives no utilisation, only processes and their memory per instance: two pods
    on instance 0 share its estimated energy 3:1 by memory used, whatever SM figures the
    fake's state holds (it no longer reports them on MIG, as NVML does not)."""
    node = setup_node(make_node)
    on_mig = [
        FakeGpuProcess(2, pid(node, B, "infer"), used_memory_bytes=3 * GIB, sm_util=5, mig=0),
        FakeGpuProcess(2, pid(node, C, "infer2"), used_memory_bytes=GIB, sm_util=95, mig=0),
    ]
    write_state(nvml_path, gpus([0, 0, 0, 0]), on_mig)
    src = NvmlSource.open(sample_interval_s=0)
    try:
        eng = node.engine(gpu=NvmlTopology(src, node.pods), extra_sources=[src])
        eng.collect()
        node.now += 10
        write_state(nvml_path, gpus([0, 0, 800, 0]), on_mig)
        r = eng.collect()
    finally:
        src.close()
    assert r is not None
    # instance 0: 40 of 80 GiB -> 400 J, split 3:1 by memory -> 300 J and 100 J; instance 1
    # (200 J) and the 20 GiB no instance holds (200 J) stay unallocated
    assert gpu_only(r) == {(B, "infer"): 300.0, (C, "infer2"): 100.0}
    assert r.unallocated["gpu"] == 400.0
    assert eng.ledger.containers[(B, "infer")].joules == {("gpu", "estimated"): 300.0}


class Lister(grpc.GenericRpcHandler):
    """A real gRPC server implementing pod-resources List from a fixed allocation table."""

    def __init__(self, pods: list[tuple[str, str, list[tuple[str, str, list[str]]]]]) -> None:
        self.pods = pods

    def service(self, details: Any) -> Any:
        if details.method != pr.LIST_METHOD:
            return None

        def handle(req: Any, ctx: Any) -> Any:
            return pr.ListPodResourcesResponse(pod_resources=[
                pr.PodResources(name=n, namespace=ns, containers=[
                    pr.ContainerResources(name=c, devices=[
                        pr.ContainerDevices(resource_name=res, device_ids=ids)])
                    for c, res, ids in ctrs])
                for ns, n, ctrs in self.pods])

        return grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=pr.ListPodResourcesRequest.FromString,
            response_serializer=lambda m: m.SerializeToString())


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[tuple[Path, Lister]]:
    d = tmp_path / "pod-resources"
    d.mkdir()
    lister = Lister([])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((lister,))
    server.add_insecure_port(f"unix://{d / SOCKET_NAME}")
    server.start()
    yield d, lister
    server.stop(None)


def test_pod_resources_list_over_a_unix_socket(kubelet: tuple[Path, Lister]) -> None:
    d, lister = kubelet
    lister.pods = [("ml", "train-x", [("train", "nvidia.com/gpu", ["GPU-0", "GPU-1"])]),
                   ("ml", "other", [("c", "example.com/fpga", ["F-0"])])]
    client = PodResourcesClient(d)
    try:
        got = client.list()
    finally:
        client.close()
    assert [(a.namespace, a.pod, a.container, a.resource, a.device_id) for a in got] == [
        ("ml", "train-x", "train", "nvidia.com/gpu", "GPU-0"),
        ("ml", "train-x", "train", "nvidia.com/gpu", "GPU-1")]


def test_pod_resources_missing_socket_is_a_clear_error(tmp_path: Path) -> None:
    client = PodResourcesClient(tmp_path, timeout_s=0.5)
    with pytest.raises(PodResourcesError, match="is the kubelet's pod-resources directory"):
        client.list()
    client.close()


def test_allocations_from_pod_resources_win_over_pids(make_node: Any, nvml_path: Path,
                                                      kubelet: tuple[Path, Lister]) -> None:
    """An exclusively allocated GPU with no process (idle) is still wholly its pod's; a
    GPU shared by allocation is split by SM utilisation."""
    node = setup_node(make_node)
    d, lister = kubelet
    g0, g1 = "GPU-00000000-0000-0000-0000-000000000000", "GPU-11111111-0000-0000-0000-000000000000"
    lister.pods = [
        ("ml", f"pod-{A[:4]}", [("train", "nvidia.com/gpu", [g0])]),
        ("ml", f"pod-{B[:4]}", [("infer", "nvidia.com/gpu", [g1])]),
        ("ml", f"pod-{C[:4]}", [("infer2", "nvidia.com/gpu", [g1])]),
    ]
    only_g1 = [FakeGpuProcess(1, pid(node, B, "infer"), sm_util=40)]
    write_state(nvml_path, gpus([0, 0, 0, 0]), only_g1)
    src = NvmlSource.open(sample_interval_s=0)
    client = PodResourcesClient(d)
    try:
        eng = node.engine(gpu=NvmlTopology(src, node.pods, client), extra_sources=[src])
        eng.collect()
        node.now += 10
        write_state(nvml_path, gpus([300, 1000, 0, 0]), only_g1)
        r = eng.collect()
    finally:
        client.close()
        src.close()
    assert r is not None
    # GPU0 idle but allocated to A: all 300 J. GPU1: 400 J active to B, 600 J idle evenly.
    assert gpu_only(r) == {(A, "train"): 300.0, (B, "infer"): 700.0, (C, "infer2"): 300.0}
    assert r.unallocated["gpu"] == 0.0
