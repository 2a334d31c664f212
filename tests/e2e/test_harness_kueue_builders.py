"""Unit tests (no cluster) for the Kueue harness's pure builders: the manager's
configuration, the URL webhooks made from Kueue's own webhook list, and the serving
certificate the API server verifies them with."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from carbontrack.devcluster.kueue import (
    MANAGED_LABEL,
    KueueFiles,
    manager_config,
    private_etc_argv,
    url_webhooks,
)
from carbontrack.devcluster.pki import create_pki, issue_serving_cert

KUEUE_WEBHOOKS = [
    {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
     "metadata": {"name": "mutating-webhook-configuration"},
     "webhooks": [{"admissionReviewVersions": ["v1"], "failurePolicy": "Fail", "name": "mjob.kb.io",
                   "clientConfig": {"service": {"name": "webhook-service", "namespace": "system",
                                                "path": "/mutate-batch-v1-job"}},
                   "rules": [{"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"],
                              "resources": ["jobs"]}],
                   "sideEffects": "None"}]},
    None,  # an empty YAML document between the two
]


def test_manager_config() -> None:
    assert manager_config(webhook_port=9443, health_port=8081, cert_dir=Path("/s/certs"),
                          frameworks=["batch/job", "pod"]) == {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
        "namespace": "kueue-system",
        "health": {"healthProbeBindAddress": "127.0.0.1:8081"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": "127.0.0.1", "port": 9443, "certDir": "/s/certs"},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "managedJobsNamespaceSelector": {"matchLabels": {MANAGED_LABEL: "true"}},
        "integrations": {"frameworks": ["batch/job", "pod"]},
    }


def test_url_webhooks_point_at_the_host_with_the_ca_and_only_managed_namespaces() -> None:
    hooks = url_webhooks(KUEUE_WEBHOOKS, base_url="https://127.0.0.1:9443", ca_pem=b"PEM")  # type: ignore[arg-type]
    assert hooks == [{
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "carbontrack-kueue-mutating-webhook-configuration"},
        "webhooks": [{"admissionReviewVersions": ["v1"], "failurePolicy": "Fail", "name": "mjob.kb.io",
                      "clientConfig": {"url": "https://127.0.0.1:9443/mutate-batch-v1-job",
                                       "caBundle": base64.b64encode(b"PEM").decode()},
                      "namespaceSelector": {"matchLabels": {MANAGED_LABEL: "true"}},
                      "rules": [{"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"],
                                 "resources": ["jobs"]}],
                      "sideEffects": "None"}]}]
    # the input is Kueue's list as read: left unchanged
    assert "service" in KUEUE_WEBHOOKS[0]["webhooks"][0]["clientConfig"]  # type: ignore[index]


def test_serving_cert_is_for_the_address_and_signed_by_the_cluster_ca(tmp_path: Path) -> None:
    pki = create_pki(tmp_path / "pki")
    issue_serving_cert(pki, "kueue-webhook", ("127.0.0.1",), tmp_path / "tls.crt", tmp_path / "tls.key")
    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_kueue_files_in_cache(tmp_path: Path) -> None:
    files = KueueFiles.in_cache({"CARBONTRACK_CACHE_DIR": str(tmp_path)})
    assert files == KueueFiles(tmp_path / "bin" / "kueue", tmp_path / "share" / "kueue" / "crd",
                               tmp_path / "share" / "kueue" / "webhooks.yaml")
    assert files.missing() == [files.binary, files.crd_dir, files.webhooks]


def test_private_etc_argv_overlays_the_metrics_certs_and_execs_the_manager() -> None:
    argv = private_etc_argv(["/c/bin/kueue", "--config=/s/k.yaml"], certs=Path("/s/mc"),
                            scratch=Path("/s/ovl"))
    assert argv[:7] == ["unshare", "--mount", "--propagation", "private", "sh", "-c", argv[6]]
    assert argv[7:] == ["kueue-etc", "/s/ovl", "/s/mc", "/c/bin/kueue", "--config=/s/k.yaml"]
    script = argv[6]
    assert 'mount -t tmpfs carbontrack-kueue "$s"' in script
    assert '"lowerdir=/etc,upperdir=$s/upper,workdir=$s/work" /etc' in script
    assert script.endswith('exec "$@"')
