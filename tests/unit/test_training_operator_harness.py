"""The training-operator harness pieces that need no cluster (devcluster/training_operator.py)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from carbontrack.devcluster.binaries import WorkloadTools
from carbontrack.devcluster.training_operator import _self_signed, jobset_config, jobset_defaults, operator_argv


def test_command_line_runs_niced_with_only_pytorchjob_and_no_fixed_ports() -> None:
    assert operator_argv(Path("/c/bin/training-operator"), 40123) == [
        "nice", "-n", "10", "/c/bin/training-operator", "--enable-scheme=pytorchjob",
        "--webhook-server-port=40123", "--metrics-bind-address=0", "--health-probe-bind-address=0",
        "--zap-log-level=info"]


def test_serving_pair_is_written_once_and_matches(tmp_path: Path) -> None:
    _self_signed(tmp_path / "certs")
    crt, key = (tmp_path / "certs" / "tls.crt").read_bytes(), (tmp_path / "certs" / "tls.key").read_bytes()
    cert = x509.load_pem_x509_certificate(crt)
    private = serialization.load_pem_private_key(key, password=None)
    assert cert.public_key().public_numbers() == private.public_key().public_numbers()  # type: ignore[union-attr]
    _self_signed(tmp_path / "certs")  # a pair already there (another controller's) is kept
    assert (tmp_path / "certs" / "tls.crt").read_bytes() == crt
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == ["tls.crt", "tls.key"]


def test_crds_are_the_yaml_files_of_the_share_dir(tmp_path: Path) -> None:
    for name in ("b.yaml", "a.yaml", ".complete"):
        (tmp_path / name).write_text("")
    tools = WorkloadTools(tmp_path / "bin", tmp_path, tmp_path / "js")
    assert tools.crds() == [tmp_path / "a.yaml", tmp_path / "b.yaml"]


def test_jobset_configuration_turns_off_what_needs_a_pod() -> None:
    assert jobset_config(40124, Path("/s/jobset-certs")) == {
        "apiVersion": "config.jobset.x-k8s.io/v1alpha1", "kind": "Configuration",
        "internalCertManagement": {"enable": False},
        "webhook": {"port": 40124, "certDir": "/s/jobset-certs"},
        "metrics": {"bindAddress": "0"}, "health": {"healthProbeBindAddress": "0"},
        "leaderElection": {"leaderElect": False}}


def test_jobset_defaults_are_the_webhooks_and_keep_given_values() -> None:
    pod = {"containers": [{"name": "c"}]}
    spec = {"replicatedJobs": [{"name": "w", "template": {"spec": {"template": {"spec": dict(pod)}}}},
                               {"name": "x", "template": {"spec": {"completionMode": "NonIndexed", "template": {
                                   "spec": {**pod, "restartPolicy": "Never"}}}}}],
            "network": {"enableDNSHostnames": False}}
    assert jobset_defaults(spec) == {
        "replicatedJobs": [
            {"name": "w", "template": {"spec": {"completionMode": "Indexed", "template": {
                "spec": {**pod, "restartPolicy": "OnFailure"}}}}},
            {"name": "x", "template": {"spec": {"completionMode": "NonIndexed", "template": {
                "spec": {**pod, "restartPolicy": "Never"}}}}}],
        "network": {"enableDNSHostnames": False, "publishNotReadyAddresses": True},
        "successPolicy": {"operator": "All"}, "startupPolicy": {"startupPolicyOrder": "AnyOrder"}}
    assert "successPolicy" not in spec  # the input is not changed


def test_the_jobset_controller_is_the_version_of_its_crd() -> None:
    root = Path(__file__).resolve().parents[2] / "tools"
    pinned = [line.split()[1] for f in ("jobset/go.mod", "workload-crds/go.mod")
              for line in (root / f).read_text().splitlines() if line.strip().startswith("sigs.k8s.io/jobset v")]
    assert len(pinned) == 2 and pinned[0] == pinned[1]
