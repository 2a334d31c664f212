"""Teardown leaves no processes or ports behind: after a normal stop, and when the process
running the harness is interrupted (SIGTERM) — each on its own, separate control plane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carbontrack.devcluster.binaries import ensure_all
from carbontrack.devcluster.controlplane import start_local_cluster
from carbontrack.devcluster.nodes import DEFAULT_NODES
from carbontrack.devcluster.ports import port_open

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _group_members(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(d.name))
    return out


def _wait_gone(pids: list[int], ports: list[int], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids) and not any(port_open(p) for p in ports):
            return
        time.sleep(0.1)
    assert [p for p in pids if _alive(p)] == []
    assert [p for p in ports if port_open(p)] == []


def test_stop_leaves_no_process_or_port(tmp_path: Path) -> None:
    binaries = ensure_all(root=REPO_ROOT)
    cluster = start_local_cluster(tmp_path, binaries, nodes=DEFAULT_NODES[:1])
    try:
        pids = [p.pid for p in cluster.supervisor.processes]
        names = [p.name for p in cluster.supervisor.processes]
        assert names == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                         "kwok"]
        ports = [cluster.ports.etcd_client, cluster.ports.apiserver, cluster.ports.kwok]
        assert all(port_open(p) for p in ports)
        status, body = cluster.https_get("/version")
        assert status == 200 and json.loads(body)["gitVersion"].startswith("v1.")
    finally:
        cluster.stop()
    _wait_gone(pids, ports)
    assert all(_group_members(pid) == [] for pid in pids)


def test_sigterm_to_the_harness_leaves_no_process_or_port(tmp_path: Path) -> None:
    ensure_all(root=REPO_ROOT)
    script = f"""
import json, sys, time
from pathlib import Path
from carbontrack.devcluster.binaries import ensure_all
from carbontrack.devcluster.controlplane import start_local_cluster
from carbontrack.devcluster.nodes import DEFAULT_NODES
from carbontrack.devcluster.process import install_cleanup
c = start_local_cluster(Path({str(tmp_path)!r}), ensure_all(), nodes=DEFAULT_NODES[:1])
install_cleanup(c.stop)
print(json.dumps({{"pids": [p.pid for p in c.supervisor.processes],
                  "ports": [c.ports.etcd_client, c.ports.apiserver, c.ports.kwok]}}), flush=True)
time.sleep(600)
"""
    harness = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        assert harness.stdout is not None
        info = json.loads(harness.stdout.readline())
        assert all(_alive(p) for p in info["pids"])
        harness.terminate()
        harness.wait(timeout=60)
        _wait_gone(info["pids"], info["ports"])
    finally:
        if harness.poll() is None:
            os.killpg(harness.pid, 9)


def test_port_taken_between_choice_and_bind_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Other clusters start on the same machine: a chosen free port can be gone by the time
    etcd binds it. The start is retried with fresh ports instead of failing the session."""
    import socket

    from carbontrack.devcluster import controlplane

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real = controlplane.Ports.allocate
    calls: list[controlplane.Ports] = []

    def allocate() -> controlplane.Ports:
        p = real()
        if not calls:  # first attempt: etcd's client port is already taken
            p = controlplane.Ports(taken, *list(vars(p).values())[1:])
        calls.append(p)
        return p

    monkeypatch.setattr(controlplane.Ports, "allocate", staticmethod(allocate))
    try:
        cluster = start_local_cluster(tmp_path, ensure_all(root=REPO_ROOT), nodes=DEFAULT_NODES[:1])
        try:
            assert len(calls) == 2 and calls[0].etcd_client == taken
            assert cluster.ports == calls[1]
            assert cluster.https_get("/readyz")[0] == 200
        finally:
            cluster.stop()
    finally:
        squatter.close()
