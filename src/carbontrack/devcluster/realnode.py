"""A real worker node beside the kwok ones: containerd + runc + bridge CNI + kubelet on
this machine, joined to the local control plane, undone completely on stop.

Start: lock (one real node per machine: the kubelet's root and the kubepods cgroups are
machine-wide) -> snapshot the host (hostchanges) -> make /sys a shared mount (the chart
mounts it with HostToContainer propagation) -> containerd with our config -> import the
pause image -> the apiserver DNAT rule -> kubelet -> wait for the Node to be Ready.
Stop: kubelet, every container process (by the kubepods cgroups), the shims, containerd,
then restore the host to the snapshot.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ConfigError, TemporaryError
from . import hostchanges
from .containerd import (
    ContainerdPaths,
    containerd_args,
    containerd_config,
    ctr,
    import_image,
    pin_by_digest,
)
from .controlplane import wait_until
from .hostchanges import KUBEPODS, HostState, Owned
from .imagebuild import BuiltImage
from .kubeconfig import write_kubeconfig
from .kubelet import (
    BRIDGE,
    KUBELET_ROOT,
    KubeletSetup,
    apiserver_dnat_rule,
    cni_config,
    kubelet_args,
    kubelet_config,
)
from .pki import SERVICE_CLUSTER_IP, Pki, issue_client_cert
from .ports import free_ports
from .process import ManagedProcess, Supervisor
from .recovery import NodeRecord, kill_pods, record_path, recover, write_record

LOCK_NAME = "\0carbontrack-realnode"  # abstract: no file
REAL_NODE = "real-node-0"


def host_address() -> str:
    """The host's address on its default route (what pods can reach it at); no packet is
    sent. Raises ConfigError on a machine with no route (a real node needs one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("8.8.8.8", 53))
        except OSError as err:
            raise ConfigError(f"no default route: a real node needs a host address ({err})") from err
        addr = str(s.getsockname()[0])
    if addr.startswith("127."):
        raise ConfigError("the default route's address is loopback: pods could not reach it")
    return addr


def _acquire_lock(timeout_s: float) -> socket.socket:
    """Hold the machine-wide real-node lock: an abstract unix socket name, which the kernel
    frees when its holder exits however it exits, and which leaves no file behind."""
    deadline = time.monotonic() + timeout_s
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(LOCK_NAME)
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise TemporaryError(
                    f"another real node holds the lock (one per machine) for over "
                    f"{timeout_s:.0f} s; stop it (`python -m carbontrack.devcluster down`)"
                ) from None
            time.sleep(1.0)


def stale_leftovers(before: HostState, iptables: str) -> list[str]:
    """What only a real node that was never torn down leaves: its bridge, its DNAT rule,
    kubepods cgroups. Starting on top of them would make them part of the snapshot."""
    out = [f"network device {BRIDGE}"] if BRIDGE in before.links else []
    if "carbontrack-realnode" in iptables:
        out.append("iptables rule 'carbontrack-realnode' (iptables-save -t nat)")
    out += [f"cgroup /sys/fs/cgroup/{c}" for c in before.cgroups if c.endswith("/" + KUBEPODS)]
    return out


def node_kubeconfig(server: str, pki: Pki, cert: Path, key: Path) -> dict[str, object]:
    return {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": server, "certificate-authority": str(pki.ca_cert)}}],
        "users": [{"name": "kubelet", "user": {
            "client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "kubelet"}}],
        "current-context": "local",
    }


@dataclass
class RealNode:
    """A started real node. Create with :func:`start_real_node`; ``stop()`` undoes it."""

    name: str
    address: str
    state_dir: Path
    supervisor: Supervisor
    containerd: ContainerdPaths
    setup: KubeletSetup
    before: HostState
    raw_iptables: dict[str, str]
    lock: socket.socket
    record: Path  # what recovery.py needs if this harness is killed; gone after stop()
    processes: list[ManagedProcess] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # name ("exporter") -> reference
    # name -> the manifest digest containerd recorded; the image is also named repo@digest
    digests: dict[str, str] = field(default_factory=dict)
    # ipsets this node may destroy at teardown (the policy enforcer's, policyenforcer.py)
    ipset_prefixes: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    stopped: bool = False

    def ctr(self, *args: str) -> str:
        return ctr(self.containerd, *args)

    def owned(self) -> Owned:
        return Owned(
            mount_prefixes=(str(self.state_dir), "/run/containerd", "/run/netns",
                            str(KUBELET_ROOT)),
            propagation_roots=("/sys",),
            link_prefixes=(BRIDGE, "veth"),
            ipset_prefixes=self.ipset_prefixes,
        )

    def write_record(self) -> None:
        write_record(self.record, NodeRecord(
            self.before, self.raw_iptables, self.owned(), str(self.containerd.socket),
            {p.name: p.pid for p in self.processes}))

    def stop(self) -> list[str]:
        """Stop everything and restore the host; returns what could not be undone."""
        if self.stopped:
            return self.problems
        self.stopped = True
        try:
            for proc in reversed([p for p in self.processes if p.name.startswith("kubelet")]):
                self.supervisor.stop_one(proc)
            try:
                kill_pods(str(self.containerd.socket))
            except OSError as err:  # a pid or cgroup gone meanwhile: restore still runs
                self.problems.append(f"killing containers: {err!r}")
            for proc in reversed(self.processes):
                if proc.running() or proc in self.supervisor.processes:
                    self.supervisor.stop_one(proc)
            self.problems += hostchanges.restore(self.before, self.owned(), self.raw_iptables)
            if not self.problems:
                self.record.unlink(missing_ok=True)
        finally:
            self.lock.close()
        return self.problems


def _run(argv: Sequence[str]) -> None:
    r = subprocess.run(list(argv), capture_output=True, text=True)
    if r.returncode != 0:
        raise TemporaryError(f"{' '.join(argv)} failed: {r.stderr.strip()}")


def start_real_node(
    state_dir: Path,
    *,
    kubelet: Path,
    pki: Pki,
    admin_kubeconfig: Path,
    apiserver_port: int,
    address: str,
    supervisor: Supervisor,
    pause: BuiltImage,
    images: Sequence[BuiltImage] = (),
    name: str = REAL_NODE,
    timeout_s: float = 120.0,
    lock_timeout_s: float = 600.0,
) -> RealNode:
    """Start a real node joined to the apiserver at ``address:apiserver_port`` and return
    once its Node is Ready; ``images`` are imported into containerd first. On failure
    everything done so far is undone before the error propagates."""
    if os.geteuid() != 0:
        raise ConfigError("a real node needs root (kubelet, containerd, iptables, mounts)")
    t0 = time.monotonic()
    lock = _acquire_lock(lock_timeout_s)
    record = record_path()
    left = recover(record)  # a node whose harness was killed: undo it first
    if left:
        lock.close()
        raise ConfigError(f"could not undo a killed real node ({record}): {left}")
    raw = {"ip": hostchanges.iptables_save("ip"), "ip6": hostchanges.iptables_save("ip6")}
    before = hostchanges.take()
    leftovers = stale_leftovers(before, raw["ip"])
    if leftovers:
        lock.close()
        raise ConfigError(
            "a previous real node was stopped without its teardown (killed?); remove what it "
            f"left before starting another (docs/e2e.md, real node teardown): {leftovers}")
    state_dir.mkdir(parents=True, exist_ok=True)
    paths = ContainerdPaths(state_dir / "containerd")
    port, healthz = free_ports(2)
    setup = KubeletSetup(name, address, state_dir / "kubelet", paths.socket, pki.ca_cert,
                         port, healthz)
    node = RealNode(name, address, state_dir, supervisor, paths, setup, before, raw, lock,
                    record)
    try:
        _start(node, kubelet, pki, admin_kubeconfig, apiserver_port, pause, images, timeout_s)
    except BaseException:
        problems = node.stop()
        if problems:
            supervisor.log_dir.joinpath("realnode-teardown.log").write_text("\n".join(problems))
        raise
    node.timings["ready"] = time.monotonic() - t0
    return node


def _start(node: RealNode, kubelet: Path, pki: Pki, admin: Path, apiserver_port: int,
           pause: BuiltImage, images: Sequence[BuiltImage], timeout_s: float) -> None:
    from .kube import nodes_ready

    t0 = time.monotonic()
    sup, paths, setup = node.supervisor, node.containerd, node.setup
    node.write_record()  # from the first host change on, a killed harness is recoverable
    if dict(node.before.mounts).get("/sys") != "shared":
        _run(["mount", "--make-rshared", "/sys"])
    paths.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    (paths.cni_conf_dir / "10-carbontrack.conflist").write_text(
        cni_config(node.state_dir / "cni-ipam"))
    paths.config.write_text(containerd_config(paths, pause.ref))
    cd = sup.start("containerd", containerd_args(paths))
    node.processes.append(cd)
    node.write_record()
    wait_until("containerd to answer", lambda: bool(ctr(paths, "version")), timeout_s,
               interval_s=0.1, procs=[cd])
    import_image(paths, pause.archive, pause.ref)
    node.timings["containerd"] = time.monotonic() - t0
    _run(["iptables", *apiserver_dnat_rule(SERVICE_CLUSTER_IP, node.address, apiserver_port)])
    for d in (setup.static_pods, setup.pod_logs, setup.cert_dir):
        d.mkdir(parents=True, exist_ok=True)
    cert, key = setup.state_dir / "client.crt", setup.state_dir / "client.key"
    issue_client_cert(pki, f"system:node:{node.name}", "system:nodes", cert, key)
    server = f"https://{node.address}:{apiserver_port}"
    write_kubeconfig(setup.kubeconfig, node_kubeconfig(server, pki, cert, key))
    write_kubeconfig(setup.config_path, kubelet_config(setup))
    kl = sup.start("kubelet", kubelet_args(kubelet, setup))
    node.processes.append(kl)
    node.write_record()

    def import_all() -> None:  # meanwhile: no pod needs these before the node is Ready
        for image in images:
            import_image(paths, image.archive, image.ref)
            name = image.ref.rsplit("/", 1)[-1].split(":")[0]
            node.digests[name] = pin_by_digest(paths, image.ref)
            node.images[name] = image.ref
        node.timings["images"] = time.monotonic() - t0

    with ThreadPoolExecutor(1) as pool:
        imported = pool.submit(import_all)
        wait_until(f"real node {node.name} Ready", lambda: nodes_ready(admin, [node.name]),
                   timeout_s, interval_s=0.2, procs=[cd, kl])
        node.timings["node_ready"] = time.monotonic() - t0
        imported.result(timeout=timeout_s)


def node_binary(name: str) -> Path:
    """kubelet/kubectl from the cache, built (with the control plane's module) if missing."""
    from .binaries import bin_dir, repo_root

    path = bin_dir() / name
    if not os.access(path, os.X_OK):
        root = repo_root()
        if root is None:
            raise ConfigError(f"{name} is not built and there is no checkout to build it from")
        r = subprocess.run(["bash", str(root / "scripts" / "build-control-plane.sh"), "k8s"])
        if r.returncode != 0 or not os.access(path, os.X_OK):
            raise ConfigError(f"scripts/build-control-plane.sh k8s did not build {name}")
    return path
