"""The local control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok as plain processes on loopback, plus the fake Nodes.

Start order: PKI -> etcd -> apiserver -> controller-manager ->
scheduler -> kwok -> Nodes. Every port is a free loopback port and every file
lives under ``state_dir``, so several clusters can run side by side.
"""

from __future__ import annotations

import shutil
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import TemporaryError
from .binaries import Binaries
from .kubeconfig import build_kubeconfig, write_kubeconfig
from .kwok import kwok_args, write_config
from .nodes import DEFAULT_NODES, FakeNode, node_manifest
from .pki import Pki, create_pki
from .ports import free_ports
from .process import ManagedProcess, Supervisor

SERVICE_CIDR = "10.96.0.0/16"  # addresses on paper only: nothing routes to them
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @classmethod
    def allocate(cls) -> Ports:
        return cls(*free_ports(6))


def etcd_args(b: Binaries, data_dir: Path, p: Ports) -> list[str]:
    client = f"http://127.0.0.1:{p.etcd_client}"
    peer = f"http://127.0.0.1:{p.etcd_peer}"
    return [
        str(b.etcd),
        "--name=default",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        # a throw-away test database: durability is worth nothing, fsync costs seconds
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_args(b: Binaries, pki: Pki, p: Ports, address: str = "127.0.0.1") -> list[str]:
    """``address``: where the apiserver listens and what it advertises as the ``kubernetes``
    Service's endpoint. Loopback for kwok-only clusters; the host's own address when a real
    node's pods must reach it (and loopback would be the pod's own)."""
    return [
        str(b.kube_apiserver),
        f"--etcd-servers=http://127.0.0.1:{p.etcd_client}",
        f"--bind-address={address}",
        # without a default route the apiserver cannot pick an address itself
        f"--advertise-address={address}",
        f"--secure-port={p.apiserver}",
        f"--tls-cert-file={pki.apiserver_cert}",
        f"--tls-private-key-file={pki.apiserver_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # Node: a real kubelet (system:node:<name>) may touch only its own Node and pods
        "--authorization-mode=Node,RBAC",
        # kubectl logs/exec on a real node go to its InternalIP with the admin certificate
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--kubelet-client-certificate={pki.admin_cert}",
        f"--kubelet-client-key={pki.admin_key}",
        # ServiceAccount admission stays on (it is in the default set): pods get
        # their token volume like on a real cluster.
        "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,LimitRanger,"
        "ResourceQuota,DefaultStorageClass,DefaultTolerationSeconds,NodeRestriction",
        "--profiling=false",
        "--v=1",
    ]


def _component_common(kubeconfig: Path, port: int) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--leader-elect=false",  # one instance; skipping the election saves ~15 s
        "--profiling=false",
    ]


def controller_manager_args(b: Binaries, pki: Pki, kubeconfig: Path, p: Ports) -> list[str]:
    return [
        str(b.kube_controller_manager),
        *_component_common(kubeconfig, p.controller_manager),
        # every controller acts with its own ServiceAccount, as on real clusters
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        # Everything a cluster runs by default except what needs real kubelets, volumes, a
        # cloud or a metrics API here (those only poll and log errors on kwok nodes).
        "--controllers=*,-horizontal-pod-autoscaler-controller,"
        "-persistentvolume-attach-detach-controller,-persistentvolume-binder-controller,"
        "-persistentvolume-expander-controller,-node-route-controller,-service-lb-controller,"
        "-cloud-node-lifecycle-controller",
        "--v=1",
    ]


def scheduler_args(b: Binaries, kubeconfig: Path, p: Ports) -> list[str]:
    return [str(b.kube_scheduler), *_component_common(kubeconfig, p.scheduler), "--v=1"]


def wait_until(
    what: str,
    check: Callable[[], bool],
    timeout_s: float,
    *,
    interval_s: float = 0.1,
    procs: Sequence[ManagedProcess] = (),
) -> None:
    """Poll ``check`` until true; fail fast (with its log) if a watched process died."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except Exception:  # "not yet" in any form; the deadline decides
            pass
        for p in procs:
            if not p.running():
                raise TemporaryError(
                    f"{p.name} exited with code {p.popen.returncode} while waiting for {what}; "
                    f"last log lines ({p.log_path}):\n{p.log_tail()}"
                )
        if time.monotonic() > deadline:
            logs = "".join(f"\n--- {p.name} ({p.log_path}):\n{p.log_tail(20)}" for p in procs)
            raise TemporaryError(f"timed out after {timeout_s:.0f} s waiting for {what}{logs}")
        time.sleep(interval_s)


@dataclass
class LocalCluster:
    """A running local control plane. Create with :func:`start_local_cluster`."""

    state_dir: Path
    binaries: Binaries
    pki: Pki
    ports: Ports
    kubeconfig: Path
    supervisor: Supervisor
    nodes: tuple[FakeNode, ...]
    timings: dict[str, float] = field(default_factory=dict)
    address: str = "127.0.0.1"

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.ports.apiserver}"

    def https_get(self, path: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
        """GET ``path`` on the apiserver as admin (no client library needed)."""
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        try:
            with urllib.request.urlopen(self.server + path, context=ctx, timeout=timeout_s) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as err:
            return int(err.code), err.read()

    def stop(self) -> None:
        self.supervisor.stop()


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1.0) as r:
        return int(r.status) == 200


def start_kwok_and_nodes(
    state_dir: Path,
    binaries: Binaries,
    kubeconfig: Path,
    sup: Supervisor,
    nodes: Sequence[FakeNode],
    kwok_port: int,
    timeout_s: float,
    *,
    watch: Sequence[ManagedProcess] = (),
) -> ManagedProcess:
    """Start kwok with our stages, create the fake Nodes, and wait until pods can be admitted
    (the default ServiceAccount exists) and every fake Node is Ready."""
    from .kube import create_nodes, nodes_ready, service_account_exists

    kwok_cfg = write_config(state_dir / "kwok.yaml")
    kwok = sup.start(
        "kwok",
        kwok_args(binaries.kwok, kubeconfig=kubeconfig, config=kwok_cfg, server_port=kwok_port),
    )
    procs = [*watch, kwok]
    create_nodes(kubeconfig, [node_manifest(n) for n in nodes])
    wait_until(
        "the default ServiceAccount (controller-manager up)",
        lambda: service_account_exists(kubeconfig, "default", "default"),
        timeout_s, interval_s=0.2, procs=procs,
    )
    wait_until(
        "fake nodes Ready (kwok up)",
        lambda: nodes_ready(kubeconfig, [n.name for n in nodes]),
        timeout_s, interval_s=0.2, procs=procs,
    )
    return kwok


PORT_CLASH = "address already in use"
START_ATTEMPTS = 3


def start_local_cluster(
    state_dir: Path,
    binaries: Binaries,
    *,
    supervisor: Supervisor | None = None,
    nodes: Sequence[FakeNode] = DEFAULT_NODES,
    timeout_s: float = 90.0,
    address: str = "127.0.0.1",
) -> LocalCluster:
    """Start everything and return once the API serves, the default ServiceAccount exists
    (pods can be admitted) and every fake Node is Ready. On failure the processes already
    started are stopped before the error propagates. A free port taken by another process
    between choosing and binding it (other clusters start on the same machine) is retried
    with fresh ports and a fresh data dir. ``address``: see :func:`apiserver_args`."""
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return _start_local_cluster(
                state_dir, binaries, supervisor, nodes, timeout_s, address
            )
        except TemporaryError as err:
            if PORT_CLASH not in str(err) or attempt == START_ATTEMPTS:
                raise
            shutil.rmtree(state_dir / "etcd", ignore_errors=True)
    raise AssertionError("unreachable")


def _start_local_cluster(
    state_dir: Path,
    binaries: Binaries,
    supervisor: Supervisor | None,
    nodes: Sequence[FakeNode],
    timeout_s: float,
    address: str,
) -> LocalCluster:
    t0 = time.monotonic()
    state_dir.mkdir(parents=True, exist_ok=True)
    sup = supervisor or Supervisor(state_dir / "logs")
    loopback = address == "127.0.0.1"
    pki = create_pki(state_dir / "pki", extra_ips=() if loopback else (address,))
    ports = Ports.allocate()
    kubeconfig = write_kubeconfig(
        state_dir / "kubeconfig", build_kubeconfig(f"https://{address}:{ports.apiserver}", pki)
    )
    cluster = LocalCluster(
        state_dir, binaries, pki, ports, kubeconfig, sup, tuple(nodes), address=address
    )
    timings = cluster.timings
    try:
        etcd = sup.start("etcd", etcd_args(binaries, state_dir / "etcd", ports))
        wait_until(
            "etcd /health",
            lambda: _http_ok(f"http://127.0.0.1:{ports.etcd_client}/health"),
            timeout_s, procs=[etcd],
        )
        timings["etcd"] = time.monotonic() - t0
        api = sup.start("kube-apiserver", apiserver_args(binaries, pki, ports, address))
        wait_until(
            "kube-apiserver /readyz",
            lambda: cluster.https_get("/readyz")[0] == 200,
            timeout_s, interval_s=0.2, procs=[etcd, api],
        )
        timings["apiserver"] = time.monotonic() - t0
        cm = sup.start(
            "kube-controller-manager",
            controller_manager_args(binaries, pki, kubeconfig, ports),
        )
        sched = sup.start("kube-scheduler", scheduler_args(binaries, kubeconfig, ports))
        start_kwok_and_nodes(state_dir, binaries, kubeconfig, sup, nodes, ports.kwok,
                             timeout_s, watch=[etcd, api, cm, sched])
        timings["ready"] = time.monotonic() - t0
    except BaseException:
        sup.stop()
        raise
    return cluster
