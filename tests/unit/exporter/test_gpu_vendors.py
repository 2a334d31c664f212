"""GPU attribution across vendors: AMD through the real amdsmi bindings on the fake
libamd_smi.so, NVIDIA through pynvml on the fake NVML, side by side in one engine;
pod-resources answers (real gRPC) naming amd.com/gpu devices by PCI address; a vendor no
source measures is a health message, never a silent zero."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import test_gpu_engine as gpu_engine
from carbontrack.exporter.gpu_topology import GpuTopologies
from carbontrack.exporter.podresources.client import PodResourcesClient
from test_gpu_engine import Lister

from carbontrack.sim import fakeamdsmi as amd
from carbontrack.sim import fakenvml as nv
from carbontrack.sources.amdgpu import AmdSmiSource
from carbontrack.sources.nvml import NvmlSource
from carbontrack.sources.registry import AMD, NVIDIA

A = "0a0a0a0a-1111-2222-3333-444444444444"
B = "0b0b0b0b-1111-2222-3333-444444444444"
C = "0c0c0c0c-1111-2222-3333-444444444444"
BDF0, BDF1 = "0000:c1:00.0", "0000:c2:00.0"
NV0 = "GPU-00000000-0000-0000-0000-000000000000"
kubelet = gpu_engine.kubelet  # the pod-resources gRPC server fixture


@pytest.fixture(scope="session")
def fake_libs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    nv_dir = nv.build_fake_libnvml(tmp_path_factory.mktemp("fakenvml"))
    nv.load_in_process(nv_dir)
    amd_root = amd.build_fake_libamdsmi(tmp_path_factory.mktemp("fakeamdsmi"))
    amd.load_in_process(amd_root)
    return nv_dir, amd_root


@pytest.fixture
def states(fake_libs: tuple[Path, Path], tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    nv_state, amd_state = tmp_path / "nvml-state", tmp_path / "amdsmi-state"
    monkeypatch.setenv(nv.STATE_ENV, str(nv_state))
    monkeypatch.setenv(amd.STATE_ENV, str(amd_state))
    return nv_state, amd_state


def pid(node: Any, uid: str, name: str) -> int:
    return int(node.tree.pods[uid].containers[name].pid)


def gpu_only(r: Any) -> dict[Any, float]:
    return {k: v["gpu"] for k, v in r.containers.items() if "gpu" in v}


def amd_gpus(joules: list[float]) -> list[amd.FakeAmdGpu]:
    return [amd.FakeAmdGpu(BDF0, "amd-0", energy_counts=amd.counts_for_joules(joules[0])),
            amd.FakeAmdGpu(BDF1, "amd-1", energy_counts=amd.counts_for_joules(joules[1]))]


def test_amd_and_nvidia_gpus_in_one_engine(make_node: Any, states: tuple[Path, Path]) -> None:
    """Processes map to containers by PID on both vendors; each GPU's energy is counted once."""
    nv_state, amd_state = states
    node = make_node()
    node.add_pod(A, "guaranteed", {"train": (4.0, 0)})
    node.add_pod(B, "guaranteed", {"infer": (2.0, 0)})
    amd_procs = [amd.FakeAmdProcess(0, pid(node, A, "train"), vram_bytes=1 << 30)]
    nv_procs = [nv.FakeGpuProcess(0, pid(node, B, "infer"), sm_util=60)]
    amd.write_state(amd_state, amd_gpus([0.0, 0.0]), amd_procs)
    nv.write_state(nv_state, [nv.FakeGpu(NV0, energy_mj=0)], nv_procs)
    amd_src = AmdSmiSource.open(sample_interval_s=0)
    nv_src = NvmlSource.open(sample_interval_s=0)
    try:
        topo = GpuTopologies([(NVIDIA, nv_src), (AMD, amd_src)], node.pods)
        eng = node.engine(gpu=topo, extra_sources=[nv_src, amd_src])
        eng.collect()
        node.now += 10
        amd.write_state(amd_state, amd_gpus([5000.0, 1200.0]), amd_procs)
        nv.write_state(nv_state, [nv.FakeGpu(NV0, energy_mj=3_000_000)], nv_procs)
        r = eng.collect()
    finally:
        amd_src.close()
        nv_src.close()
    assert r is not None
    got = gpu_only(r)
    assert got[(A, "train")] == pytest.approx(5000.0, abs=1e-3)  # its AMD GPU, exclusively
    assert got[(B, "infer")] == pytest.approx(3000.0)  # its NVIDIA GPU
    assert r.unallocated["gpu"] == pytest.approx(1200.0, abs=1e-3)  # the idle AMD GPU
    assert r.node["gpu"] == pytest.approx(9200.0, abs=1e-3)  # conservation
    node_series = {dev for (comp, dev, _), _ in eng.snapshot.node if comp == "gpu"}
    assert node_series == {NV0, BDF0, BDF1}
    assert dict(eng.snapshot.sources)["gpu-processes"].up


def test_amd_gpu_allocated_through_pod_resources(make_node: Any, states: tuple[Path, Path],
                                                 kubelet: tuple[Path, Lister]) -> None:
    """AMD's device plugin allocates by PCI address: an idle allocated GPU is its pod's."""
    _, amd_state = states
    node = make_node()
    node.add_pod(A, "guaranteed", {"train": (4.0, 0)})
    node.add_pod(C, "guaranteed", {"eval": (1.0, 0)})
    d, lister = kubelet
    lister.pods = [("ml", f"pod-{A[:4]}", [("train", "amd.com/gpu", [BDF0])]),
                   ("ml", f"pod-{C[:4]}", [("eval", "amd.com/gpu", [BDF1])])]
    amd.write_state(amd_state, amd_gpus([0.0, 0.0]))  # no processes at all
    src = AmdSmiSource.open(sample_interval_s=0)
    client = PodResourcesClient(d)
    try:
        eng = node.engine(gpu=GpuTopologies([(AMD, src)], node.pods, client),
                          extra_sources=[src])
        eng.collect()
        node.now += 10
        amd.write_state(amd_state, amd_gpus([800.0, 200.0]))
        r = eng.collect()
    finally:
        client.close()
        src.close()
    assert r is not None
    assert gpu_only(r) == {(A, "train"): pytest.approx(800.0, abs=1e-3),
                           (C, "eval"): pytest.approx(200.0, abs=1e-3)}
    assert r.unallocated["gpu"] == pytest.approx(0.0, abs=1e-3)


def test_unmeasured_vendor_resources_are_named_in_health(make_node: Any, states: tuple[Path, Path],
                                                         kubelet: tuple[Path, Lister]) -> None:
    """intel.com/gpu (no module) and amd.com/gpu on a node measuring NVIDIA only: each
    named once in gpu-processes' health; the NVIDIA GPU is still attributed; no crash."""
    nv_state, _ = states
    node = make_node()
    node.add_pod(A, "guaranteed", {"train": (4.0, 0)})
    node.add_pod(B, "guaranteed", {"render": (1.0, 0)})
    node.add_pod(C, "guaranteed", {"infer": (1.0, 0)})
    d, lister = kubelet
    lister.pods = [("ml", f"pod-{A[:4]}", [("train", "nvidia.com/gpu", [NV0])]),
                   ("media", f"pod-{B[:4]}", [("render", "gpu.intel.com/i915", ["card1"])]),
                   ("ml", f"pod-{C[:4]}", [("infer", "amd.com/gpu", [BDF0])])]
    nv.write_state(nv_state, [nv.FakeGpu(NV0, energy_mj=0)])
    src = NvmlSource.open(sample_interval_s=0)
    client = PodResourcesClient(d)
    try:
        eng = node.engine(gpu=GpuTopologies([(NVIDIA, src)], node.pods, client),
                          extra_sources=[src])
        eng.collect()
        node.now += 10
        nv.write_state(nv_state, [nv.FakeGpu(NV0, energy_mj=400_000)])
        r = eng.collect()
    finally:
        client.close()
        src.close()
    assert r is not None
    assert gpu_only(r) == {(A, "train"): pytest.approx(400.0)}
    status = dict(eng.snapshot.sources)["gpu-processes"]
    assert not status.up
    assert status.message == (
        "amd.com/gpu device 0000:c1:00.0 is allocated to ml/pod-0c0c container infer, but its "
        "energy is not measured here (GPU sources: nvidia): enable its source on this node "
        "(--amdsmi); "
        "gpu.intel.com/i915 device card1 is allocated to media/pod-0b0b container render, but "
        "its energy is not measured here (GPU sources: nvidia): no GPU vendor module measures "
        "it (carbontrack.sources.registry)")
