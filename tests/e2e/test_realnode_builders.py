"""Unit tests of the real node's pure parts: containerd/kubelet/CNI config, the host
snapshot's parsers and undo script, image packing (no root, no network)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import tomllib
from cryptography import x509
from cryptography.x509.oid import NameOID

from carbontrack.devcluster.binaries import Binaries
from carbontrack.devcluster.containerd import ContainerdPaths, containerd_config
from carbontrack.devcluster.controlplane import Ports, apiserver_args
from carbontrack.devcluster.hostchanges import (
    HostState,
    iptables_undo,
    normalise_iptables,
    parse_mountinfo,
)
from carbontrack.devcluster.imagebuild import EXPORTER, mmdebstrap_args, venv_files
from carbontrack.devcluster.images import (
    ImageConfig,
    config_json,
    tree_layer,
    write_docker_archive,
)
from carbontrack.devcluster.kubelet import (
    KubeletSetup,
    apiserver_dnat_rule,
    cni_config,
    kubelet_args,
    kubelet_config,
)
from carbontrack.devcluster.pki import create_pki, issue_client_cert


def test_containerd_config() -> None:
    p = ContainerdPaths(Path("/s/cd"))
    cfg = tomllib.loads(containerd_config(p, "carbontrack.local/pause:abc"))
    assert (cfg["root"], cfg["state"], cfg["grpc"]) == (
        "/s/cd/root", "/s/cd/state", {"address": "/s/cd/containerd.sock"})
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "carbontrack.local/pause:abc"
    assert cri["restrict_oom_score_adj"] is True
    assert cri["containerd"]["runtimes"]["runc"] == {
        "runtime_type": "io.containerd.runc.v2",
        "options": {"SystemdCgroup": False, "Root": "/s/cd/runc"}}
    assert cri["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": "/s/cd/net.d"}
    assert cfg["plugins"]["io.containerd.internal.v1.opt"] == {"path": "/s/cd/opt"}


def _setup() -> KubeletSetup:
    return KubeletSetup("real-node-0", "192.0.2.2", Path("/s/kl"), Path("/s/cd/c.sock"),
                        Path("/s/pki/ca.crt"), 10250, 10248)


def test_kubelet_config_and_args() -> None:
    s = _setup()
    cfg = kubelet_config(s)
    assert {k: cfg[k] for k in ("failCgroupV1", "cgroupDriver", "containerRuntimeEndpoint",
                                "address", "port", "readOnlyPort", "staticPodPath",
                                "podLogsDir", "authorization")} == {
        "failCgroupV1": False, "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": "unix:///s/cd/c.sock", "address": "192.0.2.2",
        "port": 10250, "readOnlyPort": 0, "staticPodPath": "/s/kl/manifests",
        "podLogsDir": "/s/kl/pod-logs", "authorization": {"mode": "AlwaysAllow"}}
    assert cfg["authentication"]["x509"] == {"clientCAFile": "/s/pki/ca.crt"}
    assert kubelet_args(Path("/b/kubelet"), s) == [
        "/b/kubelet", "--config=/s/kl/kubelet-config.yaml",
        "--kubeconfig=/s/kl/kubelet.kubeconfig", "--root-dir=/var/lib/kubelet",
        "--cert-dir=/s/kl/pki", "--hostname-override=real-node-0", "--node-ip=192.0.2.2",
        "--node-labels=carbontrack.io/node-kind=real,topology.kubernetes.io/region=eu-west-1",
        "--v=1"]


def test_cni_config_and_dnat_rule() -> None:
    plugin = json.loads(cni_config(Path("/s/ipam")))["plugins"][0]
    assert (plugin["type"], plugin["bridge"], plugin["isGateway"], plugin["ipMasq"]) == (
        "bridge", "ctbr0", True, False)
    assert plugin["ipam"]["dataDir"] == "/s/ipam"
    assert apiserver_dnat_rule("10.96.0.1", "192.0.2.2", 6443) == [
        "-t", "nat", "-A", "PREROUTING", "-i", "ctbr0", "-d", "10.96.0.1/32", "-p", "tcp",
        "--dport", "443", "-m", "comment", "--comment", "carbontrack-realnode", "-j", "DNAT",
        "--to-destination", "192.0.2.2:6443"]


def test_apiserver_address_is_bound_advertised_and_in_the_certificate(tmp_path: Path) -> None:
    b = Binaries.in_dir(Path("/b"))
    pki = create_pki(tmp_path, extra_ips=("192.0.2.2",))
    ports = Ports(1, 2, 3, 4, 5, 6)
    args = apiserver_args(b, pki, ports, "192.0.2.2")
    assert "--bind-address=192.0.2.2" in args and "--advertise-address=192.0.2.2" in args
    assert "--authorization-mode=Node,RBAC" in args
    assert "--bind-address=127.0.0.1" in apiserver_args(b, pki, ports)
    cert = x509.load_pem_x509_certificate(pki.apiserver_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1", "10.96.0.1", "192.0.2.2"]
    issue_client_cert(pki, "system:node:n", "system:nodes", tmp_path / "c.crt", tmp_path / "c.key")
    node = x509.load_pem_x509_certificate((tmp_path / "c.crt").read_bytes())
    node.verify_directly_issued_by(x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()))
    assert node.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n"
    assert node.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"


MOUNTINFO = """\
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:22 / /sys rw,relatime shared:5 - sysfs sysfs rw
40 23 0:30 / /run/netns/cni-1 rw master:3 - nsfs nsfs rw
41 23 0:31 / /a\\040b rw - tmpfs tmpfs rw
"""


def test_parse_mountinfo() -> None:
    assert parse_mountinfo(MOUNTINFO) == (
        ("/a b", "private"), ("/run/netns/cni-1", "slave"), ("/sys", "private"),
        ("/sys", "shared"))


BEFORE = """\
# Generated by iptables-save v1.8.9 (nf_tables) on Sun Dec  6 22:00:00 2026
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
*filter
:INPUT ACCEPT [5:100]
:OLD - [0:0]
-A INPUT -j OLD
COMMIT
"""
AFTER = """\
*nat
:PREROUTING ACCEPT [3:180]
:POSTROUTING ACCEPT [0:0]
:KUBE-KUBELET-CANARY - [0:0]
-A PREROUTING -d 10.96.0.1/32 -i ctbr0 -p tcp -m comment --comment "carbontrack-realnode" \
-j DNAT --to-destination 192.0.2.2:6443
COMMIT
*filter
:INPUT ACCEPT [9:200]
:OLD - [0:0]
-A INPUT -j OLD
-A INPUT -j OLD
COMMIT
"""


def test_iptables_undo_deletes_only_new_rules_and_chains() -> None:
    assert iptables_undo(BEFORE, AFTER) == (
        "*filter\n-D INPUT -j OLD\nCOMMIT\n"
        "*nat\n"
        '-D PREROUTING -d 10.96.0.1/32 -i ctbr0 -p tcp -m comment --comment "carbontrack-realnode"'
        " -j DNAT --to-destination 192.0.2.2:6443\n"
        "-F KUBE-KUBELET-CANARY\n-X KUBE-KUBELET-CANARY\nCOMMIT\n")
    assert iptables_undo(AFTER, AFTER) == ""


def test_normalised_iptables_ignore_counters_and_empty_tables() -> None:
    # the nat table of BEFORE holds nothing: the same as no nat table at all
    assert normalise_iptables(BEFORE) == "*filter\n:INPUT ACCEPT\n:OLD -\n-A INPUT -j OLD"
    assert normalise_iptables(BEFORE.replace("[5:100]", "[7:1]")) == normalise_iptables(BEFORE)


def test_host_state_differences() -> None:
    a = HostState((("/sys", "private"),), ("eth0",), {"ip": ""}, ("cpu/x",),
                  {"kernel.panic_on_oops": "0"}, {"/var/lib/cni": False})
    b = HostState((("/sys", "shared"),), ("ctbr0", "eth0"), {"ip": ""}, ("cpu/x",),
                  {"kernel.panic_on_oops": "1"}, {"/var/lib/cni": True})
    assert a.differences(a) == []
    assert a.differences(b) == [
        "mounts: gone ('/sys', 'private')", "mounts: new ('/sys', 'shared')",
        "links: new ctbr0", "sysctls: kernel.panic_on_oops '0' -> '1'",
        "paths: /var/lib/cni False -> True"]


def test_docker_archive_is_reproducible(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "pause").write_bytes(b"\x7fELF")
    (root / "bin" / "pause").chmod(0o755)
    layer = tree_layer(root, tmp_path / "layer.tar")
    with tarfile.open(layer) as t:
        assert [(m.name, m.mtime, m.uid, m.mode & 0o777) for m in t.getmembers()] == [
            ("bin", 0, 0, 0o755), ("bin/pause", 0, 0, 0o755)]
    cfg = ImageConfig(entrypoint=("/pause",), user="65535:65535")
    a = write_docker_archive(tmp_path / "a.tar", "x/pause:1", cfg, [layer])
    b = write_docker_archive(tmp_path / "b.tar", "x/pause:1", cfg, [layer])
    assert a == b
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    diff_id = hashlib.sha256(layer.read_bytes()).hexdigest()
    with tarfile.open(tmp_path / "a.tar") as t:
        manifest = json.loads(t.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config = json.loads(t.extractfile(f"{a}.json").read())  # type: ignore[union-attr]
    assert manifest == [{"Config": f"{a}.json", "RepoTags": ["x/pause:1"],
                         "Layers": [f"{diff_id}/layer.tar"]}]
    assert config["rootfs"] == {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]}
    assert config["config"] == {"Entrypoint": ["/pause"], "Env": [], "User": "65535:65535"}
    assert hashlib.sha256(config_json(cfg, [diff_id])).hexdigest() == a


def test_image_recipe() -> None:
    assert mmdebstrap_args(Path("/o.tar"))[:5] == [
        "mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar",
        "--include=python3.11,ca-certificates"]
    assert mmdebstrap_args(Path("/o.tar"))[-3:] == [
        "bookworm", "/o.tar", "http://deb.debian.org/debian"]
    files = venv_files()
    assert files["pyvenv.cfg"].startswith("home = /usr/bin\n")
    assert files["bin/carbontrack"].startswith("#!/opt/carbontrack/bin/python\n")
    assert EXPORTER.config().user == "65534:65534"


def test_demo_real_job_and_helm_args() -> None:
    from carbontrack.devcluster.demo_real import helm_install_args, real_job

    job = real_job("b", "x/debian:1", threads=2, seconds=12, labels={"team": "t"})
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"carbontrack.io/node-kind": "real"}
    assert pod["containers"][0]["command"] == [
        "sh", "-c", "for i in $(seq 2); do timeout 12 sh -c 'while :; do :; done' & done; "
        "wait; sleep 6"]
    assert helm_install_args(Path("/c"), "r/exporter:abc") == [
        "upgrade", "--install", "carbontrack", "/c", "-n", "carbontrack-system",
        "--create-namespace", "--set", "operator.enabled=false",
        "--set", "exporter.image.repository=r/exporter", "--set", "exporter.image.tag=abc",
        "--set", "exporter.provider=aws", "--set", "exporter.region=eu-west-1"]


def test_stale_leftovers_of_a_killed_real_node() -> None:
    from carbontrack.devcluster.realnode import stale_leftovers

    clean = HostState((), ("eth0",), {}, ("cpu/process_api",), {}, {})
    assert stale_leftovers(clean, "*nat\n") == []
    dirty = HostState((), ("ctbr0", "eth0"), {}, ("cpu/kubepods", "cpu/kubepods/besteffort"), {}, {})
    assert stale_leftovers(dirty, '-A PREROUTING -m comment --comment "carbontrack-realnode"') == [
        "network device ctbr0", "iptables rule 'carbontrack-realnode' (iptables-save -t nat)",
        "cgroup /sys/fs/cgroup/cpu/kubepods"]



def test_annotated_pod_targets() -> None:
    from types import SimpleNamespace as NS

    from carbontrack.devcluster.podtargets import annotated_targets

    def pod(node: str, ip: str | None, ann: dict[str, str], phase: str = "Running") -> NS:
        return NS(metadata=NS(annotations=ann), spec=NS(node_name=node),
                  status=NS(phase=phase, pod_ip=ip))

    scrape = {"prometheus.io/scrape": "true", "prometheus.io/port": "9875"}
    pods = [
        pod("real-node-0", "10.88.0.2", scrape),
        pod("real-node-0", "10.88.0.3", {**scrape, "prometheus.io/path": "/m"}),
        pod("sim-cpu-0", "10.244.0.1", scrape),  # kwok: nothing listens there
        pod("real-node-0", "10.88.0.4", scrape, "Pending"),
        pod("real-node-0", "10.88.0.5", {"prometheus.io/scrape": "false",
                                         "prometheus.io/port": "1"}),
        pod("real-node-0", "10.88.0.6", {}),
    ]
    assert annotated_targets(pods, {"real-node-0"}) == {
        "10.88.0.2:9875": {}, "10.88.0.3:9875": {"__metrics_path__": "/m"}}


def test_node_record_round_trips_through_json() -> None:
    from carbontrack.devcluster.hostchanges import Owned
    from carbontrack.devcluster.recovery import NodeRecord, from_json, to_json

    r = NodeRecord(
        HostState((("/sys", "private"),), ("eth0",), {"ip": "*nat"}, ("cpu/x",),
                  {"kernel.panic": "1"}, {"/var/lib/cni": False}),
        {"ip": "*filter\n", "ip6": ""}, Owned(("/s",), ("/sys",), ("ctbr0", "veth")),
        "/s/containerd.sock", {"kubelet": 12, "containerd": 11})
    assert from_json(to_json(r)) == r
    # with the policy enforcer's ipsets; a record written before they existed still loads
    r2 = NodeRecord(
        HostState((), (), {}, (), {}, {}, ("KUBE-DST-X", "other")), {}, Owned(
            (), (), (), ("KUBE-SRC-", "KUBE-DST-")), "/s", {"kube-router": 13})
    assert from_json(to_json(r2)) == r2
    old = json.loads(to_json(r2))
    del old["before"]["ipsets"], old["owned"]["ipset_prefixes"]
    assert from_json(json.dumps(old)).before.ipsets == ()


def test_ipsets_are_part_of_the_host_state_and_kube_router_runs_only_its_firewall() -> None:
    from carbontrack.devcluster.policyenforcer import enforcing, kube_router_args

    a = HostState((), (), {}, (), {}, {}, ("mine",))
    b = HostState((), (), {}, (), {}, {}, ("KUBE-SRC-ABC", "mine"))
    assert a.differences(b) == ["ipsets: new KUBE-SRC-ABC"]
    args = kube_router_args(Path("/c/kube-router"), Path("/k"), "real-node-0")
    assert {"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
            "--hostname-override=real-node-0", "--kubeconfig=/k", "--health-port=0"} <= set(args)
    assert enforcing("*filter\n:KUBE-NWPLCY-DEFAULT - [0:0]\n:KUBE-ROUTER-FORWARD - [0:0]\n"
                     "-A FORWARD -j KUBE-ROUTER-FORWARD")
    assert not enforcing("*filter\n:KUBE-ROUTER-FORWARD - [0:0]\n-A FORWARD -j KUBE-ROUTER-FORWARD")
    assert not enforcing("*filter\n:KUBE-ROUTER-FORWARD - [0:0]\n")


def test_kubepods_pids_skip_cgroups_removed_during_the_walk(tmp_path: Path, monkeypatch) -> None:
    """CI saw teardown fail with FileNotFoundError: runc removed a container's cgroup while
    kill_pods walked the tree. A directory that vanishes mid-walk must be skipped."""
    import os
    import shutil

    from carbontrack.devcluster.recovery import kubepods_pids

    kept = tmp_path / "cpu" / "kubepods" / "podA" / "c1"
    gone = tmp_path / "cpu" / "kubepods" / "podB" / "c2"
    for d, pid in ((kept, "123\n"), (gone, "456\n")):
        d.mkdir(parents=True)
        (d / "cgroup.procs").write_text(pid)
    (tmp_path / "memory").mkdir()  # a hierarchy without kubepods
    real_scandir = os.scandir

    def vanishing(path):  # type: ignore[no-untyped-def]
        if not isinstance(path, int) and Path(path) == gone.parent:  # rmtree scans fds
            shutil.rmtree(gone.parent)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", vanishing)
    assert kubepods_pids(tmp_path) == {123}
