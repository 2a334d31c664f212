"""The whole local stack: control plane, node simulator, one exporter per node,
Prometheus. Used by the e2e fixtures and by ``python -m carbontrack.devcluster demo``."""

from __future__ import annotations

import logging
import os
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

from ..core.errors import ConfigError, TemporaryError
from .binaries import Binaries
from .binaries import cache_dir as default_cache_dir
from .controlplane import LocalCluster, start_local_cluster, wait_until
from .imagebuild import ImageBuilder, ImageSpec
from .nodes import DEFAULT_NODES, FakeNode
from .ports import free_port
from .process import ManagedProcess, Supervisor
from .prometheus import PrometheusServer, start_prometheus
from .realnode import RealNode, host_address, node_binary, start_real_node
from .simulator import AmdGpuBackend, GpuBackend, NodeSimulator

log = logging.getLogger("carbontrack.devcluster")


def exporter_args(
    *,
    python: str,
    node: FakeNode,
    sysfs: Path,
    procfs: Path,
    state_dir: Path,
    port: int,
    kubeconfig: Path,
    interval_s: float,
    nvml: bool,
    amdsmi: bool = False,
) -> list[str]:
    """The exporter's command line for one simulated node (pure; tested by equality)."""
    args = [
        python, "-m", "carbontrack", "exporter",
        f"--node-name={node.name}",
        f"--sysfs={sysfs}",
        f"--procfs={procfs}",
        f"--state-dir={state_dir}",
        f"--listen=127.0.0.1:{port}",
        f"--kubeconfig={kubeconfig}",
        f"--interval={interval_s}",
        # the node's cloud region, like a real node's labels would give
        "--provider=aws", f"--region={node.region}",
        # RAPL exists on every simulated node: a model estimate would double count
        "--no-estimate",
    ]
    if not nvml:
        args.append("--no-nvml")
    if amdsmi:
        args.append("--amdsmi")  # off by default: an AMD node's exporter turns it on
    return args


class Cluster(Protocol):
    """What the stack needs from a control plane (local processes or kind)."""

    kubeconfig: Path
    supervisor: Supervisor
    timings: dict[str, float]

    def stop(self) -> None: ...


class ClusterFactory(Protocol):
    def __call__(self, state_dir: Path, binaries: Binaries, supervisor: Supervisor,
                 nodes: Sequence[FakeNode]) -> Cluster: ...


def local_cluster(state_dir: Path, binaries: Binaries, supervisor: Supervisor,
                  nodes: Sequence[FakeNode], address: str = "127.0.0.1") -> Cluster:
    return start_local_cluster(state_dir, binaries, supervisor=supervisor, nodes=nodes,
                               address=address)


@dataclass
class Exporter:
    node: str
    url: str
    process: ManagedProcess


@dataclass
class DevStack:
    cluster: Cluster
    simulator: NodeSimulator
    prometheus: PrometheusServer
    exporters: dict[str, Exporter] = field(default_factory=dict)
    real_node: RealNode | None = None

    @property
    def supervisor(self) -> Supervisor:
        return self.cluster.supervisor

    def stop(self) -> None:
        if self.real_node is not None:
            problems = self.real_node.stop()
            if problems:
                log.error("real node teardown left: %s", "; ".join(problems))
        self.simulator.stop()
        self.cluster.stop()


def start_exporters(
    stack_dir: Path,
    cluster: Cluster,
    simulator: NodeSimulator,
    prometheus: PrometheusServer,
    *,
    interval_s: float = 0.5,
    timeout_s: float = 60.0,
) -> dict[str, Exporter]:
    sup = cluster.supervisor
    exporters: dict[str, Exporter] = {}
    for name, sim in simulator.nodes.items():
        port = free_port()
        env = dict(os.environ)
        backend = sim.gpu_backend
        if backend is not None:  # the node's vendor library (fake), found where it looks
            env.update(backend.env(sim.gpu_state, env))
        args = exporter_args(
            python=sys.executable, node=sim.node, sysfs=sim.sysfs, procfs=sim.procfs,
            state_dir=sim.state_dir, port=port, kubeconfig=cluster.kubeconfig,
            interval_s=interval_s, nvml=isinstance(backend, GpuBackend),
            amdsmi=isinstance(backend, AmdGpuBackend),
        )
        proc = sup.start(f"exporter-{name}", args, env=env)
        exporters[name] = Exporter(name, f"http://127.0.0.1:{port}", proc)
    for e in exporters.values():
        wait_until(
            f"exporter for {e.node} to serve /metrics",
            lambda e=e: _http_ok(e.url + "/metrics"),  # type: ignore[misc]
            timeout_s, interval_s=0.2, procs=[e.process],
        )
    prometheus.set_targets(
        "carbontrack-exporter",
        # no target labels: the exporter's own `node` label must not become `exported_node`
        {e.url.removeprefix("http://"): {} for e in exporters.values()},
    )
    return exporters


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2.0) as r:
        return int(r.status) == 200


def _join_real_node(state_dir: Path, cluster: Cluster, sup: Supervisor, address: str,
                    specs: Sequence[ImageSpec], cache: Path) -> RealNode:
    assert isinstance(cluster, LocalCluster)
    from .binaries import repo_root

    builder = ImageBuilder(cache / "images", state_dir / "logs" / "image-build.log")
    root = repo_root()
    if specs and root is None:
        raise ConfigError("building the exporter/operator images needs a checkout")
    images = [builder.debian()]  # the test workloads' shell and Python
    images += [builder.app(s, root) for s in specs] if root is not None else []
    return start_real_node(
        state_dir / "realnode", kubelet=node_binary("kubelet"), pki=cluster.pki,
        admin_kubeconfig=cluster.kubeconfig, apiserver_port=cluster.ports.apiserver,
        address=address, supervisor=sup, pause=builder.pause(), images=images,
    )


def start_stack(
    state_dir: Path,
    binaries: Binaries,
    *,
    nodes: Sequence[FakeNode] = DEFAULT_NODES,
    tick_s: float = 0.5,
    exporter_interval_s: float = 0.5,
    scrape_interval_s: float = 1.0,
    exporters: bool = True,
    cache_dir: Path | None = None,
    cluster_factory: ClusterFactory = local_cluster,
    real_node: bool = False,
    real_node_images: Sequence[ImageSpec] = (),
) -> DevStack:
    """Start everything; on failure stop what was started and re-raise. ``real_node``: also
    a real kubelet node on this machine (root; see realnode.py) with ``real_node_images``
    imported into its containerd."""
    t0 = time.monotonic()
    sup = Supervisor(state_dir / "logs")
    address = "127.0.0.1"
    if real_node:
        if cluster_factory is not local_cluster:
            raise ConfigError("a real node joins the local control plane only (not kind)")
        address = host_address()
        cluster_factory = partial(local_cluster, address=address)
    cluster = cluster_factory(state_dir / "cluster", binaries, sup, nodes)
    simulator: NodeSimulator | None = None
    node: RealNode | None = None
    try:
        if real_node:
            node = _join_real_node(state_dir, cluster, sup, address, real_node_images,
                                   cache_dir or default_cache_dir())
        cache = cache_dir or default_cache_dir()
        simulator = NodeSimulator(cluster.kubeconfig, nodes, state_dir / "nodes",
                                  tick_s=tick_s, gpu_backend=GpuBackend.build(cache),
                                  amd_backend=AmdGpuBackend.build(cache))
        simulator.start()
        prom = start_prometheus(sup, state_dir / "prometheus",
                                scrape_interval_s=scrape_interval_s, address=address)
        stack = DevStack(cluster, simulator, prom, real_node=node)
        if exporters:
            stack.exporters = start_exporters(state_dir, cluster, simulator, prom,
                                              interval_s=exporter_interval_s)
    except BaseException:
        if node is not None:
            node.stop()
        if simulator is not None:
            simulator.stop()
        cluster.stop()
        raise
    cluster.timings["stack"] = time.monotonic() - t0
    if not cluster.supervisor.processes:
        raise TemporaryError("no process is running after start")
    return stack
