"""A NetworkPolicy enforcer for the real node: kube-router's network-policy controller alone.

The real node's pod network (the bridge CNI plugin, realnode.py) forwards everything; a
NetworkPolicy there is stored and ignored. For tests of the chart's policies the harness can
run kube-router (``github.com/cloudnativelabs/kube-router/v2``, built from its Go module by
``scripts/build-kube-router.sh``) with only its firewall: ``--run-firewall=true
--run-router=false --run-service-proxy=false``. It watches pods, namespaces and
NetworkPolicies and programs iptables chains (``KUBE-ROUTER-*``, ``KUBE-POD-FW-*``,
``KUBE-NWPLCY-*``) and ipsets (``KUBE-SRC-*``, ``KUBE-DST-*``) for the pods of this node;
the bridge's traffic passes them because ``net.bridge.bridge-nf-call-iptables`` is 1.

v2.1.0 is the only version the Go module proxy serves here, and security flaws are reported
against it: it is a test-harness component, run on the developer's machine against the local
control plane with the harness's admin credentials, never shipped or deployed by the chart.
Its rules and ipsets are host changes like the node's own: the node's teardown (and recovery
of a killed harness) removes them through hostchanges.py, and the teardown test compares the
host, ipsets included, with the snapshot taken before the node started.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..core.errors import ConfigError, TemporaryError
from . import hostchanges
from .process import ManagedProcess
from .realnode import RealNode

VERSION = "v2.1.0"
BINARY = "kube-router"
# What it creates (constants of pkg/controllers/netpol in v2.1.0): chains and ipsets
CHAIN_PREFIXES = ("KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-")
IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-", "inet6:KUBE-SRC-", "inet6:KUBE-DST-")
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/12"  # the control plane's (controlplane.py)


def binary_path() -> Path:
    from .binaries import bin_dir

    path = bin_dir() / BINARY
    if not os.access(path, os.X_OK):
        raise ConfigError(f"{path} is not built: run scripts/build-kube-router.sh "
                          "(and apt-get install ipset)")
    return path


def kube_router_args(binary: Path, kubeconfig: Path, node_name: str) -> list[str]:
    """Only the network-policy controller; no health or metrics listener (nothing reads
    them, and a fixed port could collide)."""
    return [str(binary), f"--kubeconfig={kubeconfig}", f"--hostname-override={node_name}",
            "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
            "--enable-ipv4=true", "--enable-ipv6=false", "--health-port=0", "--metrics-port=0",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--iptables-sync-period=30s", "--v=1"]


def enforcing(iptables_save: str) -> bool:
    """Its forward chain exists, the filter table's FORWARD jumps to it, and its first full
    sync of the policies is done (the default policy chain is written with them)."""
    return ("-A FORWARD" in iptables_save and "-j KUBE-ROUTER-FORWARD" in iptables_save
            and ":KUBE-ROUTER-FORWARD" in iptables_save
            and ":KUBE-NWPLCY-DEFAULT" in iptables_save)


def start_policy_enforcer(node: RealNode, kubeconfig: Path, *, binary: Path | None = None,
                          timeout_s: float = 60.0) -> ManagedProcess:
    """Start kube-router's policy controller for ``node`` (admin ``kubeconfig``: it lists
    pods, namespaces and NetworkPolicies cluster-wide); returns once its chains are in
    place. It joins the node's processes, so ``node.stop()`` stops it before the host is
    restored; ipsets named like its own are the node's to destroy from then on."""
    binary = binary or binary_path()
    if shutil.which("ipset") is None:
        raise ConfigError("ipset is not installed: apt-get install ipset (scripts/setup.sh)")
    if IPSET_PREFIXES[0] not in node.ipset_prefixes:
        node.ipset_prefixes = node.ipset_prefixes + IPSET_PREFIXES
    proc = node.supervisor.start(BINARY, kube_router_args(binary, kubeconfig, node.name))
    node.processes.append(proc)
    node.write_record()
    deadline = time.monotonic() + timeout_s
    while not enforcing(hostchanges.iptables_save("ip")):
        if not proc.running():
            raise TemporaryError(f"kube-router exited; log {proc.log_path}:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise TemporaryError(f"kube-router set up no chains in {timeout_s} s; log "
                                 f"{proc.log_path}:\n{proc.log_tail()}")
        time.sleep(0.2)
    return proc
