"""kind (Kubernetes in Docker) as the control plane, where a Docker engine and ``kind`` exist
(a developer laptop). Everything else is the same as the local cluster: kwok, fake nodes,
simulator, exporters and Prometheus run as local processes against kind's apiserver.
Simulated workloads select ``type=kwok`` nodes, so nothing lands on kind's real node."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ConfigError
from .binaries import Binaries
from .controlplane import start_kwok_and_nodes
from .nodes import FakeNode
from .ports import free_port
from .process import Supervisor


@dataclass
class KindCluster:
    name: str
    kind: str
    kubeconfig: Path
    supervisor: Supervisor
    nodes: tuple[FakeNode, ...]
    timings: dict[str, float] = field(default_factory=dict)

    def stop(self) -> None:
        self.supervisor.stop()
        subprocess.run([self.kind, "delete", "cluster", "--name", self.name],
                       capture_output=True, check=False)


@dataclass
class KindClusterFactory:
    kind: str = "kind"
    image: str | None = None  # e.g. kindest/node:v1.36.x; kind's default otherwise

    def __call__(self, state_dir: Path, binaries: Binaries, supervisor: Supervisor,
                 nodes: Sequence[FakeNode], timeout_s: float = 180.0) -> KindCluster:
        kind = shutil.which(self.kind)
        if kind is None:
            raise ConfigError("kind is not on PATH: install kind or run with --cluster=local")
        t0 = time.monotonic()
        state_dir.mkdir(parents=True, exist_ok=True)
        name = f"carbontrack-{uuid.uuid4().hex[:8]}"
        kubeconfig = state_dir / "kubeconfig"
        cmd = [kind, "create", "cluster", "--name", name, "--kubeconfig", str(kubeconfig),
               "--wait", f"{int(timeout_s)}s"]
        if self.image:
            cmd += ["--image", self.image]
        subprocess.run(cmd, check=True)
        cluster = KindCluster(name, kind, kubeconfig, supervisor, tuple(nodes))
        try:
            start_kwok_and_nodes(state_dir, binaries, kubeconfig, supervisor, nodes,
                                 free_port(), timeout_s)
        except BaseException:
            cluster.stop()
            raise
        cluster.timings["ready"] = time.monotonic() - t0
        return cluster
