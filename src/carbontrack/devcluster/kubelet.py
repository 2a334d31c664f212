"""The real node's kubelet: its KubeletConfiguration, command line and CNI network config
(pure builders, tested by equality)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import contract

# The kubelet's root stays the default: the chart mounts the pod-resources socket from
# /var/lib/kubelet/pod-resources, and /var/lib/kubelet/device-plugins is used whatever
# --root-dir says. So one real node per machine (realnode.py holds a lock).
KUBELET_ROOT = Path("/var/lib/kubelet")
POD_SUBNET = "10.88.0.0/24"  # apart from kwok's fake pod IPs (10.244.0.0/16)
BRIDGE = "ctbr0"  # the pod network's bridge; hostchanges deletes it on teardown
REGION = "eu-west-1"  # like the simulated nodes, so the demo shows one grid zone


@dataclass(frozen=True)
class KubeletSetup:
    node_name: str
    node_ip: str
    state_dir: Path  # this node's files (config, certificates, pod logs, static pods)
    runtime_socket: Path
    ca_cert: Path
    port: int
    healthz_port: int

    @property
    def config_path(self) -> Path:
        return self.state_dir / "kubelet-config.yaml"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubelet.kubeconfig"

    @property
    def cert_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def static_pods(self) -> Path:
        return self.state_dir / "manifests"

    @property
    def pod_logs(self) -> Path:
        return self.state_dir / "pod-logs"


def kubelet_config(s: KubeletSetup) -> dict[str, Any]:
    """KubeletConfiguration (kubelet.config.k8s.io/v1beta1)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # cgroup v1 here: kubelet 1.36 refuses to start on v1 unless told (KEP-5573)
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",  # no systemd on this machine
        "containerRuntimeEndpoint": f"unix://{s.runtime_socket}",
        "address": s.node_ip,
        "port": s.port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": s.healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(s.ca_cert)},
        },
        # only the apiserver holds a certificate of the cluster CA that it presents here
        "authorization": {"mode": "AlwaysAllow"},
        "staticPodPath": str(s.static_pods),
        "fileCheckFrequency": "2s",
        "podLogsDir": str(s.pod_logs),
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        "failSwapOn": False,
        "providerID": f"aws:///{REGION}a/i-carbontrack-{s.node_name}",
        # a shared dev machine's disk is often past the defaults (85 % image GC, 10 %
        # nodefs.available): neither must evict the test pods or taint the node
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
        "nodeStatusReportFrequency": "10s",
    }


def kubelet_args(kubelet: Path, s: KubeletSetup) -> list[str]:
    return [
        str(kubelet),
        f"--config={s.config_path}",
        f"--kubeconfig={s.kubeconfig}",
        f"--root-dir={KUBELET_ROOT}",
        f"--cert-dir={s.cert_dir}",  # else /var/lib/kubelet/pki
        f"--hostname-override={s.node_name}",
        f"--node-ip={s.node_ip}",
        f"--node-labels={contract.NODE_KIND_LABEL}=real,topology.kubernetes.io/region={REGION}",
        "--v=1",
    ]


def cni_config(ipam_dir: Path) -> str:
    """A bridge network for pods. No masquerading: pods talk to this host only (the
    apiserver through the DNAT rule, Prometheus scrapes them over the bridge)."""
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": "carbontrack",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": True,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(ipam_dir),  # else /var/lib/cni/networks
            },
        }],
    }, indent=2)


def apiserver_dnat_rule(service_ip: str, address: str, port: int) -> list[str]:
    """The one iptables rule that stands in for kube-proxy: pods' connections to the
    ``kubernetes`` Service go to the apiserver on the host's address."""
    return ["-t", "nat", "-A", "PREROUTING", "-i", BRIDGE, "-d", f"{service_ip}/32",
            "-p", "tcp", "--dport", "443", "-m", "comment", "--comment",
            "carbontrack-realnode", "-j", "DNAT", "--to-destination", f"{address}:{port}"]
