"""The Kubeflow training-operator v1.8.1 (real controller, built from its Go module) against
the local control plane, and the real workload CRDs (PyTorchJob from the training-operator
module; JobSet, TrainJob, RayJob and RayCluster from theirs; tools/workload-crds).

Running it outside a pod needs what its Deployment would give it:
- a namespace (``MY_POD_NAMESPACE``) holding the Secret its cert rotator fills
  (pkg/cert/cert.go: the rotator reads the Secret and fails when it is absent);
- serving certificate files in the webhook server's fixed directory
  ``/tmp/k8s-webhook-server/serving-certs`` (a Deployment mounts the Secret there; the
  rotator only checks that tls.crt exists). Nothing calls the webhooks: no
  ValidatingWebhookConfiguration is installed (the rotator skips an absent one);
- ports of its own: webhook on a free port, metrics and probes off ("0").
It runs with ``nice -n 10`` and only the PyTorchJob scheme.

The JobSet controller (sigs.k8s.io/jobset v0.8.2, same module as its CRD) runs from a
Configuration file: internal cert management off (nothing calls its webhooks: no webhook
configurations are installed), its webhook server on a free port with a self-signed pair in
a directory of its own, metrics and probes off, no leader election. Without its defaulting
webhook a JobSet must carry the fields the webhook would default (``jobset_defaults``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..core.errors import TemporaryError
from .binaries import WorkloadTools
from .ports import free_port
from .process import ManagedProcess, Supervisor

NAMESPACE = "carbontrack-training-operator"
WEBHOOK_SECRET = "training-operator-webhook-cert"  # the binary's --webhook-secret-name default
CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")  # controller-runtime's default, fixed


def operator_argv(binary: Path, webhook_port: int) -> list[str]:
    """The command line (pure; tested by equality)."""
    return ["nice", "-n", "10", str(binary), "--enable-scheme=pytorchjob",
            f"--webhook-server-port={webhook_port}", "--metrics-bind-address=0",
            "--health-probe-bind-address=0", "--zap-log-level=info"]


def jobset_config(webhook_port: int, cert_dir: Path) -> dict[str, Any]:
    """The JobSet controller's Configuration (config.jobset.x-k8s.io/v1alpha1; pure)."""
    return {"apiVersion": "config.jobset.x-k8s.io/v1alpha1", "kind": "Configuration",
            "internalCertManagement": {"enable": False},
            "webhook": {"port": webhook_port, "certDir": str(cert_dir)},
            "metrics": {"bindAddress": "0"}, "health": {"healthProbeBindAddress": "0"},
            "leaderElection": {"leaderElect": False}}


def jobset_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with what JobSet's defaulting webhook sets (sigs.k8s.io/jobset@v0.8.2
    pkg/webhooks/jobset_webhook.go:105-150: success policy All, startup policy AnyOrder,
    Indexed Jobs, pod restart policy OnFailure, DNS hostnames and not-ready addresses on);
    values already given are kept."""
    out: dict[str, Any] = json.loads(json.dumps(spec))
    out.setdefault("successPolicy", {"operator": "All"})
    out.setdefault("startupPolicy", {"startupPolicyOrder": "AnyOrder"})
    network = out.setdefault("network", {})
    network.setdefault("enableDNSHostnames", True)
    network.setdefault("publishNotReadyAddresses", True)
    for rjob in out.get("replicatedJobs") or []:
        job_spec = rjob["template"]["spec"]
        job_spec.setdefault("completionMode", "Indexed")
        pod_spec = job_spec["template"]["spec"]
        if not pod_spec.get("restartPolicy"):
            pod_spec["restartPolicy"] = "OnFailure"
    return out


def start_jobset_controller(kubeconfig: Path, binary: Path, state_dir: Path,
                            supervisor: Supervisor) -> ManagedProcess:
    """Start the JobSet controller (its CRD comes with install_crds)."""
    cert_dir = state_dir / "jobset-certs"
    _self_signed(cert_dir)
    config = state_dir / "jobset-config.yaml"
    config.write_text(yaml.safe_dump(jobset_config(free_port(), cert_dir)))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return supervisor.start("jobset-controller", ["nice", "-n", "10", str(binary), f"--config={config}",
                                                  "--zap-log-level=info"], env=env)


def install_crds(api: client.ApiClient, paths: Sequence[Path], timeout_s: float = 60.0) -> list[str]:
    """Create (or replace) each CRD and wait until all are Established; their names."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for path in paths:
        # the client takes a manifest dict as it is (typed as its model class)
        body: Any = yaml.safe_load(path.read_text())
        name = str(body["metadata"]["name"])
        names.append(name)
        try:
            ext.create_custom_resource_definition(body)
        except ApiException as err:
            if err.status != 409:
                raise
            current = ext.read_custom_resource_definition(name)
            body["metadata"]["resourceVersion"] = current.metadata.resource_version if current.metadata else None
            ext.replace_custom_resource_definition(name, body)
    deadline = time.monotonic() + timeout_s
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            crd = ext.read_custom_resource_definition(name)
            conditions = (crd.status.conditions if crd.status else None) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                pending.discard(name)
        time.sleep(0.2)
    if pending:
        raise TemporaryError(f"CRDs not Established after {timeout_s:.0f} s: {', '.join(sorted(pending))}")
    return names


def _self_signed(cert_dir: Path) -> None:
    """A serving pair for the webhook server (written once; any valid pair will do, nothing
    calls it), renamed into place so a reader never sees half a file."""
    if (cert_dir / "tls.crt").is_file() and (cert_dir / "tls.key").is_file():
        return
    cert_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "training-operator.local")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    for fname, data in (("tls.key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption())),
                        ("tls.crt", cert.public_bytes(serialization.Encoding.PEM))):
        tmp = cert_dir / f".{fname}.{os.getpid()}"
        tmp.write_bytes(data)
        tmp.replace(cert_dir / fname)


def ensure_namespace_and_secret(api: client.ApiClient, namespace: str, secret: str) -> None:
    """The namespace a controller runs in and the (empty) Secret its cert rotator fills."""
    core = client.CoreV1Api(api)
    for create, body in (
        (lambda b: core.create_namespace(b), {"metadata": {"name": namespace}}),
        (lambda b: core.create_namespaced_secret(namespace, b), {"metadata": {"name": secret}}),
    ):
        try:
            create(body)
        except ApiException as err:
            if err.status != 409:
                raise


def start_training_operator(api: client.ApiClient, kubeconfig: Path, tools: WorkloadTools,
                            supervisor: Supervisor) -> ManagedProcess:
    """Install the workload CRDs and start the controller (the caller stops it)."""
    install_crds(api, tools.crds())
    ensure_namespace_and_secret(api, NAMESPACE, WEBHOOK_SECRET)
    _self_signed(CERT_DIR)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "MY_POD_NAMESPACE": NAMESPACE}
    return supervisor.start("training-operator", operator_argv(tools.training_operator, free_port()), env=env)
