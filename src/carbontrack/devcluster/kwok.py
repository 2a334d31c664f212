"""kwok: the command line that runs it against our apiserver, and its stage config."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..core import contract
from .nodes import KWOK_ANNOTATION

RUN_SECONDS_ANNOTATION = contract.SIM_RUN_SECONDS
FAIL_ANNOTATION = contract.SIM_FAIL


def stages_yaml() -> str:
    """The packaged pod stages (see kwok-stages.yaml for what differs from kwok's)."""
    return (resources.files(__package__) / "kwok-stages.yaml").read_text()


def write_config(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(stages_yaml())
    return path


def kwok_args(
    kwok: Path, *, kubeconfig: Path, config: Path, server_port: int
) -> list[str]:
    """Arguments for the kwok controller: manage only our annotated fake nodes, renew their
    Leases like a kubelet (every 10 s: without the flag kwok renewed none, and its ~55 s
    status heartbeats missed the controller-manager's 50 s grace period, so every node went
    NotReady about once a minute and pods waited Pending), serve its health/metrics endpoint
    on loopback only."""
    return [
        str(kwok),
        f"--kubeconfig={kubeconfig}",
        f"--config={config}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
        "--cidr=10.244.0.1/16",
        "--node-ip=10.0.0.1",
        f"--server-address=127.0.0.1:{server_port}",
        "--node-lease-duration-seconds=40",
    ]
