#!/usr/bin/env python3
"""Capture the cgroup and /proc files the exporter reads, from the harness's REAL node.

Starts the local stack with its real worker node (kubelet + containerd + runc on this
machine), runs two pods there (a guaranteed one burning CPU, a best-effort one sleeping),
then copies, for the kubelet's pods only, the files CarbonTrack's readers open:

- every cgroup v1 hierarchy the kernel mounts for cpu, cpuacct and memory: the root's
  usage files and, under ``kubepods``, each directory's ``cpuacct.usage``, ``cpu.shares``,
  ``memory.usage_in_bytes`` and ``cgroup.procs`` (v2: ``cpu.stat``, ``cpu.weight``,
  ``memory.current``, ``cgroup.procs``);
- ``/proc/stat``, ``/proc/meminfo``, and ``/proc/<pid>/cgroup`` and ``cmdline`` of every
  process in those cgroups;

and what the API server says about the pods (UIDs, QoS, container IDs) into
``capture.json``, the independent truth the golden test compares discovery with.
Nothing is edited: the files are byte copies. Provenance goes into PROVENANCE.md.

Run as root: ``python3 scripts/capture_realnode_tree.py tests/fixtures/captured/realnode-...``
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CGROUP = Path("/sys/fs/cgroup")
V1_FILES = ("cpuacct.usage", "cpu.shares", "memory.usage_in_bytes", "cgroup.procs")
V2_FILES = ("cpu.stat", "cpu.weight", "memory.current", "cgroup.procs")
KUBE_ROOTS = ("kubepods", "kubepods.slice")


def copy_file(src: Path, out: Path) -> None:
    try:
        data = src.read_bytes()
    except OSError:
        return  # a cgroup removed meanwhile, or a file this hierarchy does not have
    dst = out / src.relative_to("/")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)


def capture_cgroups(out: Path) -> set[int]:
    """Copy the kubelet's subtree of each hierarchy; returns the pids found in it."""
    pids: set[int] = set()
    v2 = (CGROUP / "cgroup.controllers").exists()
    hierarchies = [CGROUP] if v2 else [p for p in CGROUP.iterdir() if p.is_dir() and not p.is_symlink()
                                         and any(c in p.name.split(",") for c in ("cpu", "cpuacct", "memory"))]
    files = V2_FILES if v2 else V1_FILES
    for h in hierarchies:
        for name in files:
            if name != "cgroup.procs":
                copy_file(h / name, out)
        for root in KUBE_ROOTS:
            if not (h / root).is_dir():
                continue
            for d, _dirs, _files in os.walk(h / root):
                for name in files:
                    copy_file(Path(d) / name, out)
                procs = Path(d) / "cgroup.procs"
                if procs.exists():
                    pids |= {int(p) for p in procs.read_text().split()}
    return pids


def capture_proc(out: Path, pids: set[int]) -> None:
    for name in ("stat", "meminfo"):
        copy_file(Path("/proc") / name, out)
    for pid in sorted(pids):
        for name in ("cgroup", "cmdline"):
            copy_file(Path(f"/proc/{pid}/{name}"), out)


def tool_version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0]).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    from kubernetes import client

    from carbontrack.devcluster.binaries import cache_dir, ensure_all
    from carbontrack.devcluster.imagebuild import ImageBuilder
    from carbontrack.devcluster.kube import api_client
    from carbontrack.devcluster.process import install_cleanup
    from carbontrack.devcluster.realnode import node_binary
    from carbontrack.devcluster.stack import start_stack

    state = Path("/tmp/carbontrack-capture")
    shutil.rmtree(state, ignore_errors=True)
    binaries = ensure_all(root=REPO, log=state / "build.log")
    image = str(ImageBuilder(cache_dir() / "images", Path(os.devnull)).debian().ref)
    stack = start_stack(state, binaries, real_node=True, exporters=False)
    unregister = install_cleanup(stack.stop)
    try:
        with api_client(stack.cluster.kubeconfig) as api:
            core = client.CoreV1Api(api)
            core.create_namespace({"metadata": {"name": "capture"}})
            deadline = time.monotonic() + 60
            while not core.list_namespaced_service_account("capture").items:
                assert time.monotonic() < deadline, "no default ServiceAccount"
                time.sleep(0.5)
            pods = {
                "burn": ({"cpu": "1", "memory": "64Mi"}, ["sh", "-c", "while :; do :; done"]),
                "idle": ({}, ["sleep", "3600"]),
            }
            for name, (resources, command) in pods.items():
                container: dict[str, Any] = {"name": "main", "image": image, "imagePullPolicy": "Never",
                                             "command": command}
                if resources:
                    container["resources"] = {"requests": resources, "limits": resources}
                core.create_namespaced_pod("capture", {
                    "metadata": {"name": name},
                    "spec": {"nodeSelector": {"carbontrack.io/node-kind": "real"}, "restartPolicy": "Never",
                             "containers": [container]}})
            deadline = time.monotonic() + 120
            while True:
                got = {p.metadata.name: p for p in core.list_namespaced_pod("capture").items}
                if all(p.status.phase == "Running" for p in got.values()) and len(got) == 2:
                    break
                assert time.monotonic() < deadline, {n: p.status.phase for n, p in got.items()}
                time.sleep(0.5)
            time.sleep(5)  # some CPU time on the burner
            truth = {
                n: {"uid": p.metadata.uid, "qos": p.status.qos_class,
                    "containers": {c.name: c.container_id for c in p.status.container_statuses or []}}
                for n, p in got.items()
            }
            pids = capture_cgroups(out)
            capture_proc(out, pids)
            meta = {
                "captured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "kernel": platform.release(),
                "containerd": tool_version(["containerd", "--version"]),
                "runc": tool_version(["runc", "--version"]),
                "kubelet": tool_version([str(node_binary("kubelet")), "--version"]),
                "pods": truth,
            }
            (out / "capture.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    finally:
        stack.stop()
        unregister()
    print(f"captured into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
