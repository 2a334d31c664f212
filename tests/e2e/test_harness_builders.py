"""Unit tests (no cluster) for the harness's pure builders and its process handling.

These run by default: they are fast and need no control-plane binaries."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from carbontrack.devcluster.binaries import Binaries, bin_dir, cache_dir
from carbontrack.devcluster.kubeconfig import build_kubeconfig
from carbontrack.devcluster.kwok import kwok_args, stages_yaml
from carbontrack.devcluster.nodes import FakeNode, node_manifest
from carbontrack.devcluster.pki import create_pki
from carbontrack.devcluster.process import Supervisor
from carbontrack.devcluster.prometheus import file_sd, prometheus_config
from carbontrack.devcluster.simulator import parse_quantity, pod_load
from carbontrack.devcluster.stack import exporter_args
from carbontrack.devcluster.wait import WaitTimeout, wait_for
from carbontrack.devcluster.workloads import sim_job


def test_cache_dir_honours_env_override(tmp_path: Path) -> None:
    assert cache_dir({"CARBONTRACK_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert bin_dir({"CARBONTRACK_CACHE_DIR": str(tmp_path)}) == tmp_path / "bin"
    assert cache_dir({"HOME": "/x"}) == Path.home() / ".cache" / "carbontrack"


def test_binaries_report_missing(tmp_path: Path) -> None:
    b = Binaries.in_dir(tmp_path)
    assert {p.name for p in b.missing()} == {
        "etcd", "kwok", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
        "helm", "kubeconform"}
    exe = tmp_path / "etcd"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert "etcd" not in {p.name for p in b.missing()}


def test_pki_chain_names_and_usages(tmp_path: Path) -> None:
    pki = create_pki(tmp_path)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(pki.apiserver_cert.read_bytes())
    admin = x509.load_pem_x509_certificate(pki.admin_cert.read_bytes())
    for leaf in (server, admin):
        leaf.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "10.96.0.1"]
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    eku = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert oct(pki.ca_key.stat().st_mode & 0o777) == "0o600"
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    assert isinstance(load_pem_public_key(pki.sa_pub.read_bytes()), ec.EllipticCurvePublicKey)


def test_kubeconfig_points_at_server_with_admin_cert(tmp_path: Path) -> None:
    pki = create_pki(tmp_path)
    cfg = build_kubeconfig("https://127.0.0.1:6443", pki)
    assert cfg["clusters"] == [{"name": "carbontrack-dev", "cluster": {
        "server": "https://127.0.0.1:6443", "certificate-authority": str(pki.ca_cert)}}]
    assert cfg["users"][0]["user"] == {"client-certificate": str(pki.admin_cert),
                                       "client-key": str(pki.admin_key)}
    assert cfg["current-context"] == "carbontrack-dev"


def test_node_manifest() -> None:
    node = FakeNode(name="n1", region="eu-west-1", zone="eu-west-1a", instance_type="p4d.24xlarge",
                    provider_id="aws:///eu-west-1a/i-1", cpu_cores=96, memory="1152Gi", gpus=8)
    m = node_manifest(node)
    assert m["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert m["metadata"]["labels"]["topology.kubernetes.io/region"] == "eu-west-1"
    assert m["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "p4d.24xlarge"
    assert m["metadata"]["labels"]["type"] == "kwok"
    assert m["spec"] == {"providerID": "aws:///eu-west-1a/i-1"}
    assert m["status"]["capacity"] == {"cpu": "96", "memory": "1152Gi", "pods": "110",
                                       "ephemeral-storage": "500Gi", "nvidia.com/gpu": "8"}
    cpu_only = node_manifest(FakeNode("c", "r", "z", "m5", "aws:///z/i-2"))
    assert "nvidia.com/gpu" not in cpu_only["status"]["capacity"]


def test_amd_pool_node_and_job() -> None:
    """The AMD pool advertises amd.com/gpu, names its model with AMD's label and is tainted;
    a sim Job asking for AMD GPUs requests amd.com/gpu and tolerates the taint."""
    from carbontrack.devcluster.nodes import AMD_GPU_TAINT, DEFAULT_NODES

    amd = next(n for n in DEFAULT_NODES if n.gpu_vendor == "amd")
    m = node_manifest(amd)
    assert m["status"]["capacity"]["amd.com/gpu"] == str(amd.gpus)
    assert "nvidia.com/gpu" not in m["status"]["capacity"]
    assert m["metadata"]["labels"]["amd.com/gpu.product-name"] == "AMD-Instinct-MI300X"
    assert m["spec"]["taints"] == [{"key": "amd.com/gpu", "value": "present",
                                    "effect": "NoSchedule"}]
    spec = sim_job("ft", gpus=2, gpu_vendor="amd", node=amd.name)["spec"]["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"] == {"amd.com/gpu": "2"}
    assert spec["tolerations"] == [{"key": AMD_GPU_TAINT[0], "operator": "Equal",
                                    "value": AMD_GPU_TAINT[1], "effect": AMD_GPU_TAINT[2]}]
    assert "tolerations" not in sim_job("cpu")["spec"]["template"]["spec"]


def test_kwok_stages_cover_the_pod_lifecycle() -> None:
    stages = list(yaml.safe_load_all(stages_yaml()))
    assert [s["metadata"]["name"] for s in stages] == [
        "pod-create", "pod-ready", "pod-complete", "pod-fail", "pod-delete"]
    by_name = {s["metadata"]["name"]: s for s in stages}
    for name in ("pod-complete", "pod-fail"):
        delay = by_name[name]["spec"]["delay"]
        assert "sim.carbontrack.io/run-seconds" in delay["durationFrom"]["expressionFrom"]
        assert "jitterDurationMilliseconds" not in delay
    fail_sel = by_name["pod-fail"]["spec"]["selector"]["matchExpressions"]
    assert {"key": '.metadata.annotations["sim.carbontrack.io/fail"]', "operator": "In",
            "values": ["true"]} in fail_sel
    assert "phase: Failed" in by_name["pod-fail"]["spec"]["next"]["statusTemplate"]
    assert "phase: Succeeded" in by_name["pod-complete"]["spec"]["next"]["statusTemplate"]


def test_kwok_args(tmp_path: Path) -> None:
    assert kwok_args(Path("/b/kwok"), kubeconfig=Path("/k"), config=Path("/c"), server_port=5) == [
        "/b/kwok", "--kubeconfig=/k", "--config=/c", "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--cidr=10.244.0.1/16", "--node-ip=10.0.0.1", "--server-address=127.0.0.1:5",
        "--node-lease-duration-seconds=40"]


def test_prometheus_config_and_file_sd(tmp_path: Path) -> None:
    cfg = prometheus_config(tmp_path, 1.0)
    assert cfg["global"] == {"scrape_interval": "1000ms", "evaluation_interval": "1000ms"}
    assert [j["job_name"] for j in cfg["scrape_configs"]] == [
        "carbontrack-exporter", "carbontrack-operator", "workload-metrics"]
    assert cfg["scrape_configs"][0]["file_sd_configs"] == [
        {"files": [str(tmp_path / "carbontrack-exporter.json")], "refresh_interval": "1s"}]
    assert file_sd({"127.0.0.1:2": {"node": "b"}, "127.0.0.1:1": {"node": "a"}}) == [
        {"targets": ["127.0.0.1:1"], "labels": {"node": "a"}},
        {"targets": ["127.0.0.1:2"], "labels": {"node": "b"}}]


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    import shutil

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    (tmp_path / "carbontrack-exporter.json").write_text("[]")
    (tmp_path / "carbontrack-operator.json").write_text("[]")
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(prometheus_config(tmp_path)))
    r = subprocess.run([promtool, "check", "config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_exporter_args() -> None:
    node = FakeNode("sim-gpu-0", "eu-west-1", "eu-west-1a", "p4d.24xlarge", "aws:///x/i")
    args = exporter_args(python="py", node=node, sysfs=Path("/n/sys"), procfs=Path("/n/proc"),
                         state_dir=Path("/n/st"), port=9, kubeconfig=Path("/k"),
                         interval_s=0.5, nvml=False)
    assert args == ["py", "-m", "carbontrack", "exporter", "--node-name=sim-gpu-0",
                    "--sysfs=/n/sys", "--procfs=/n/proc", "--state-dir=/n/st",
                    "--listen=127.0.0.1:9", "--kubeconfig=/k", "--interval=0.5",
                    "--provider=aws", "--region=eu-west-1", "--no-estimate", "--no-nvml"]
    amd = exporter_args(python="py", node=node, sysfs=Path("/n/sys"), procfs=Path("/n/proc"),
                        state_dir=Path("/n/st"), port=9, kubeconfig=Path("/k"),
                        interval_s=0.5, nvml=False, amdsmi=True)
    assert amd == [*args, "--amdsmi"]


def test_sim_job_and_pod_load_agree() -> None:
    job = sim_job("t", run_seconds=7, cpu_cores=3, gpus=2, gpu_watts=300, gpu_util=80,
                  node="sim-gpu-0", labels={"team": "a"})
    tmpl = job["spec"]["template"]
    assert tmpl["metadata"]["annotations"] == {
        "sim.carbontrack.io/run-seconds": "7", "sim.carbontrack.io/cpu-cores": "3",
        "sim.carbontrack.io/gpus": "2", "sim.carbontrack.io/gpu-watts": "300",
        "sim.carbontrack.io/gpu-util": "80"}
    assert tmpl["spec"]["nodeSelector"] == {"type": "kwok", "kubernetes.io/hostname": "sim-gpu-0"}
    assert job["spec"]["backoffLimit"] == 0
    pod = {"metadata": {"uid": "u1", "name": "t-x", "namespace": "ns",
                        "annotations": tmpl["metadata"]["annotations"]},
           "spec": {**tmpl["spec"], "nodeName": "sim-gpu-0"}, "status": {"qosClass": "Burstable"}}
    load = pod_load(pod)
    assert (load.cpu_cores, load.gpus, load.gpu_watts, load.gpu_util) == (3.0, 2, 300.0, 80.0)
    assert load.containers == (("train", 3.0, 1 << 30),)
    assert load.qos == "burstable" and load.node == "sim-gpu-0"
    failing = sim_job("f", fail=True)["spec"]["template"]["metadata"]["annotations"]
    assert failing["sim.carbontrack.io/fail"] == "true"


@pytest.mark.parametrize(("q", "v"), [("500m", 0.5), ("2", 2.0), ("64Gi", 64 * 2**30),
                                      ("1k", 1000.0), ("1.5", 1.5)])
def test_parse_quantity(q: str, v: float) -> None:
    assert parse_quantity(q) == v


def test_wait_for_returns_value_and_times_out_with_last_seen() -> None:
    now = [0.0]
    values = iter([None, 0, "ok"])
    assert wait_for("x", lambda: next(values), 10, clock=lambda: now[0],
                    sleep=lambda s: now.__setitem__(0, now[0] + s)) == "ok"

    def boom() -> None:
        raise ValueError("nope")

    with pytest.raises(WaitTimeout, match=r"waiting for thing; last: ValueError\('nope'\)"):
        wait_for("thing", boom, 1, interval_s=0.5, clock=lambda: now[0],
                 sleep=lambda s: now.__setitem__(0, now[0] + s))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): check its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_supervisor_kills_whole_process_groups(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, grace_s=2.0)
    # a parent that ignores SIGTERM and has a child: both must go
    script = ("import signal,subprocess,sys,time\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "c=subprocess.Popen([sys.executable,'-c','import time; time.sleep(300)'])\n"
              "print(c.pid, flush=True)\n"
              "time.sleep(300)\n")
    proc = sup.start("stubborn", [sys.executable, "-c", script])
    child = int(wait_for("child pid", lambda: proc.log_path.read_text().strip(), 10))
    assert _alive(proc.pid) and _alive(child)
    assert os.getpgid(child) == proc.pgid != os.getpgid(0)
    sup.stop()
    assert sup.processes == []
    wait_for("child reaped by init", lambda: not _alive(child), 10)
    assert not _alive(proc.pid)


def test_supervisor_start_failure_is_clear(tmp_path: Path) -> None:
    from carbontrack.core.errors import TemporaryError

    with pytest.raises(TemporaryError, match="cannot start ghost"):
        Supervisor(tmp_path).start("ghost", [str(tmp_path / "no-such-binary")])


def test_cleanup_runs_on_sigterm(tmp_path: Path) -> None:
    """An interrupted harness (SIGTERM) still kills its children."""
    script = (
        "import sys,time\n"
        "from pathlib import Path\n"
        "from carbontrack.devcluster.process import Supervisor, install_cleanup\n"
        f"sup = Supervisor(Path({str(tmp_path)!r}))\n"
        "p = sup.start('sleeper', [sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        "install_cleanup(sup.stop)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    harness = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert harness.stdout is not None
    child = int(harness.stdout.readline())
    assert _alive(child)
    harness.terminate()
    harness.wait(timeout=20)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
    assert harness.returncode == -15  # re-raised: the exit status still says SIGTERM


def test_container_statuses_get_runtime_ids() -> None:
    from carbontrack.devcluster.simulator import container_statuses_with_ids

    pod = {"status": {"containerStatuses": [
        {"name": "train", "ready": True, "state": {"running": {"startedAt": "t"}}},
        {"name": "sidecar", "ready": True}]}}
    assert container_statuses_with_ids(pod, {"train": "ab" * 32}) == [
        {"name": "train", "ready": True, "state": {"running": {"startedAt": "t"}},
         "containerID": "containerd://" + "ab" * 32},
        {"name": "sidecar", "ready": True}]


def test_demo_workloads_fit_the_simulated_nodes() -> None:
    from carbontrack.devcluster.demo import budget_manifest, demo_jobs
    from carbontrack.devcluster.nodes import DEFAULT_NODES

    jobs = {j["metadata"]["name"]: j for j in demo_jobs(20)}
    assert sorted(jobs) == ["data-prep", "finetune-amd", "train-llm"]
    amd_job = jobs["finetune-amd"]["spec"]["template"]["spec"]
    amd_nodes = [n for n in DEFAULT_NODES if n.gpu_vendor == "amd"]
    assert int(amd_job["containers"][0]["resources"]["limits"]["amd.com/gpu"]) <= max(
        n.gpus for n in amd_nodes)
    gpu_job = jobs["train-llm"]["spec"]
    gpus_needed = gpu_job["parallelism"] * int(
        gpu_job["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert gpus_needed == max(n.gpus for n in DEFAULT_NODES)  # all at once on sim-gpu-0
    assert "nvidia.com/gpu" not in jobs["data-prep"]["spec"]["template"]["spec"]["containers"][0][
        "resources"]["limits"]
    for j in jobs.values():
        assert j["metadata"]["labels"]["team"] == "ml-research"
    b = budget_manifest("b", "6g", "ml-research")
    assert b["spec"] == {"limit": "6g", "period": {"type": "Calendar", "calendar": "Month"},
                         "selector": {"matchLabels": {"team": "ml-research"}},
                         "thresholds": [50, 80], "action": "Warn"}


def test_budget_summary_reads_like_kubectl() -> None:
    from carbontrack.devcluster.demo import budget_summary

    b = {"metadata": {"name": "b"}, "spec": {"limit": "6g"},
         "status": {"used": "1.1g", "percent": 18.1, "periodName": "2026-11", "exceeded": False,
                    "jobsCounted": 2, "conditions": [
                        {"type": "Exceeded", "status": "False", "reason": "WithinLimit",
                         "message": "1.1g of 6g used in 2026-11"}]}}
    assert budget_summary(b) == (
        "CarbonBudget b: limit 6g, used 1.1g (18.1%), period 2026-11, exceeded False, "
        "Jobs counted 2\n    Exceeded=False WithinLimit: 1.1g of 6g used in 2026-11")
    assert budget_summary({"metadata": {"name": "b"}, "spec": {"limit": "6g"}}).endswith(
        "(no status yet: the operator is not running)")
