"""The training-operator harness pieces that need no cluster (devcluster/training_operator.py)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from carbontrack.devcluster.binaries import WorkloadTools
from carbontrack.devcluster.training_operator import _self_signed, operator_argv


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
    assert WorkloadTools(tmp_path / "bin", tmp_path).crds() == [tmp_path / "a.yaml", tmp_path / "b.yaml"]
