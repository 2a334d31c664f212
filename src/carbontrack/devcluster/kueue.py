"""Kueue's real manager (``sigs.k8s.io/kueue``, built from its Go module by
``scripts/build-control-plane.sh kueue``) running against the local control plane.

Kueue's admission webhooks (defaulting, validation, and the suspension of a new Job or the
scheduling gate of a new Pod) must be reachable by the API server. Here the manager runs on
the host, so the webhook configurations name a URL (``https://127.0.0.1:<port>/<path>``)
instead of an in-cluster Service, and the serving certificate is issued by the harness's own
CA (``pki.issue_serving_cert``), whose PEM is the webhooks' caBundle. Kueue's internal
certificate management is off: it writes a Secret and patches webhooks that name a Service,
neither of which applies to a process on the host. With it off, Kueue 0.17 insists on a
metrics certificate at /etc/kueue/metrics/certs; ``private_etc_argv`` gives it one in a
private mount namespace instead of writing to the host.

The webhooks of namespaced objects (Jobs, Pods, Deployments, ...) only see namespaces with
the label ``MANAGED_LABEL``, and Kueue's ``managedJobsNamespaceSelector`` says the same:
the session's other tests create Pods and Jobs in their own namespaces and must neither go
through Kueue nor fail when it is stopped (``failurePolicy: Fail``). ``stop`` deletes the
webhook configurations before the manager.
"""

from __future__ import annotations

import copy
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from ..core.errors import ConfigError
from .binaries import bin_dir, cache_dir, repo_root
from .controlplane import wait_until
from .pki import Pki, issue_serving_cert
from .ports import free_port
from .process import ManagedProcess, Supervisor

MANAGED_LABEL = "carbontrack.dev/kueue-managed"
WEBHOOK_PREFIX = "carbontrack-kueue-"
# batch/Job and plain Pods always; kubeflow.org/pytorchjob when the training-operator's CRDs
# are installed (Kueue refuses to start an integration whose CRD it cannot find).
DEFAULT_FRAMEWORKS = ("batch/job", "pod")


@dataclass(frozen=True)
class KueueFiles:
    """The built manager and the module's CRDs and webhook list beside it."""

    binary: Path
    crd_dir: Path
    webhooks: Path

    @classmethod
    def in_cache(cls, env: Mapping[str, str] | None = None) -> KueueFiles:
        share = cache_dir(env) / "share" / "kueue"
        return cls(bin_dir(env) / "kueue", share / "crd", share / "webhooks.yaml")

    def missing(self) -> list[Path]:
        absent = [p for p in (self.crd_dir, self.webhooks) if not p.exists()]
        return ([self.binary] if not os.access(self.binary, os.X_OK) else []) + absent


def ensure_kueue(env: Mapping[str, str] | None = None, log: Path | None = None) -> KueueFiles:
    """Build Kueue when it is not cached (cold: minutes; warm: a second)."""
    import subprocess

    files = KueueFiles.in_cache(env)
    if not files.missing():
        return files
    root = repo_root()
    if root is None:
        raise ConfigError("Kueue is not built and there is no checkout to build it from: run "
                          "scripts/build-control-plane.sh kueue from a carbontrack checkout")
    cmd = ["nice", "-n", "10", "bash", str(root / "scripts" / "build-control-plane.sh"), "kueue"]
    out = log.open("ab") if log is not None else None
    try:
        result = subprocess.run(cmd, env=dict(env) if env is not None else None,
                                stdout=out, stderr=subprocess.STDOUT if out else None)
    finally:
        if out is not None:
            out.close()
    if result.returncode != 0 or files.missing():
        raise ConfigError(f"building Kueue failed (exit {result.returncode}); see "
                          f"{log or 'the output above'}: Go >= 1.25 and the module proxy are needed")
    return files


def manager_config(*, webhook_port: int, health_port: int, cert_dir: Path,
                   frameworks: Sequence[str]) -> dict[str, Any]:
    """Kueue's Configuration (config.kueue.x-k8s.io/v1beta2) for a manager on the host (pure)."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": "kueue-system",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},  # off: nothing here scrapes Kueue
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "managedJobsNamespaceSelector": {"matchLabels": {MANAGED_LABEL: "true"}},
        "integrations": {"frameworks": list(frameworks)},
    }


def url_webhooks(documents: Iterable[Mapping[str, Any]], *, base_url: str,
                 ca_pem: bytes) -> list[dict[str, Any]]:
    """Kueue's webhook configurations with each Service reference replaced by a URL on the
    host, the harness CA as caBundle, and namespaced objects limited to managed namespaces
    (pure)."""
    import base64

    bundle = base64.b64encode(ca_pem).decode()
    out = []
    for doc in documents:
        if not doc:
            continue
        config: dict[str, Any] = copy.deepcopy(dict(doc))
        config["metadata"] = {"name": WEBHOOK_PREFIX + config["metadata"]["name"]}
        for hook in config["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": base_url + path, "caBundle": bundle}
            # cluster-scoped objects (ClusterQueues, ResourceFlavors) ignore this selector
            hook["namespaceSelector"] = {"matchLabels": {MANAGED_LABEL: "true"}}
        out.append(config)
    return out


@dataclass
class KueueController:
    process: ManagedProcess
    supervisor: Supervisor
    kubeconfig: Path
    webhook_names: tuple[tuple[str, str], ...]  # (kind, name)

    def stop(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        from .kube import api_client

        with api_client(self.kubeconfig) as api:
            admission = client.AdmissionregistrationV1Api(api)
            for kind, name in self.webhook_names:
                delete = (admission.delete_mutating_webhook_configuration
                          if kind == "MutatingWebhookConfiguration"
                          else admission.delete_validating_webhook_configuration)
                try:
                    delete(name)
                except ApiException as err:
                    if err.status != 404:
                        raise
        self.supervisor.stop_one(self.process)


def install_crds(kubeconfig: Path, crd_dir: Path, timeout_s: float = 60.0) -> None:
    """Create Kueue's CRDs (left alone when present) and wait until they are Established."""
    from kubernetes import client

    from .kube import api_client, apply_manifests

    names = []
    for path in sorted(crd_dir.glob("*.yaml")):
        apply_manifests(kubeconfig, path)
        names.append(yaml.safe_load(path.read_text())["metadata"]["name"])

    def established() -> bool:
        with api_client(kubeconfig) as api:
            ext = client.ApiextensionsV1Api(api)
            for name in names:
                crd = ext.read_custom_resource_definition(name)
                conditions = (crd.status.conditions or []) if crd.status else []
                if not any(c.type == "Established" and c.status == "True" for c in conditions):
                    return False
        return True

    wait_until("Kueue CRDs Established", established, timeout_s, interval_s=0.3)


def _healthy(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0, context=ctx) as r:
            return int(r.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def start_kueue(*, files: KueueFiles, kubeconfig: Path, pki: Pki, supervisor: Supervisor,
                state_dir: Path, frameworks: Sequence[str] = DEFAULT_FRAMEWORKS,
                timeout_s: float = 120.0) -> KueueController:
    """Install the CRDs, start the manager, wait until its webhooks serve, then register
    them with the API server."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from .kube import api_client

    install_crds(kubeconfig, files.crd_dir)
    with api_client(kubeconfig) as api:
        try:
            client.CoreV1Api(api).create_namespace(cast(Any, {"metadata": {"name": "kueue-system"}}))
        except ApiException as err:
            if err.status != 409:
                raise
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "etc-overlay").mkdir(exist_ok=True)
    cert_dir = state_dir / "certs"
    issue_serving_cert(pki, "kueue-webhook", ("127.0.0.1",),
                       cert_dir / "tls.crt", cert_dir / "tls.key")
    webhook_port, health_port = free_port(), free_port()
    config_path = state_dir / "kueue-config.yaml"
    config_path.write_text(yaml.safe_dump(manager_config(
        webhook_port=webhook_port, health_port=health_port, cert_dir=cert_dir,
        frameworks=frameworks)))
    metrics_certs = state_dir / "metrics-certs"
    issue_serving_cert(pki, "kueue-metrics", ("127.0.0.1",),
                       metrics_certs / "tls.crt", metrics_certs / "tls.key")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    proc = supervisor.start("kueue", private_etc_argv(
        [str(files.binary), f"--config={config_path}",
         # the visibility API is an aggregated API server: it needs in-cluster wiring and
         # nothing here reads it
         "--feature-gates=VisibilityOnDemand=false", "--zap-log-level=info"],
        certs=metrics_certs, scratch=state_dir / "etc-overlay"), env=env)
    try:
        wait_until("Kueue /readyz", lambda: _healthy(f"http://127.0.0.1:{health_port}/readyz"),
                   timeout_s, interval_s=0.5, procs=[proc])
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        # any path answers once the TLS listener is up (404 for unknown ones)
        wait_until("Kueue's webhook server",
                   lambda: _tls_up(f"https://127.0.0.1:{webhook_port}/", ctx),
                   timeout_s, interval_s=0.5, procs=[proc])
        docs = list(yaml.safe_load_all(files.webhooks.read_text()))
        hooks = url_webhooks(docs, base_url=f"https://127.0.0.1:{webhook_port}",
                             ca_pem=pki.ca_cert.read_bytes())
        names = []
        with api_client(kubeconfig) as api:
            admission = client.AdmissionregistrationV1Api(api)
            for hook in hooks:
                if hook["kind"] == "MutatingWebhookConfiguration":
                    admission.create_mutating_webhook_configuration(cast(Any, hook))
                else:
                    admission.create_validating_webhook_configuration(cast(Any, hook))
                names.append((hook["kind"], hook["metadata"]["name"]))
    except BaseException:
        supervisor.stop_one(proc)
        raise
    return KueueController(proc, supervisor, kubeconfig, tuple(names))


def private_etc_argv(argv: Sequence[str], *, certs: Path, scratch: Path) -> list[str]:
    """``argv`` run in a private mount namespace whose /etc is the host's with
    ``kueue/metrics/certs`` added on top (overlayfs, its upper layer on a tmpfs), pure.

    Without internal certificate management Kueue 0.17 reads its metrics certificate from the
    fixed path /etc/kueue/metrics/certs and exits when it is missing, even with metrics off
    (cmd/kueue/main.go). The overlay gives it one without writing to the host's /etc, and
    it vanishes with the process. Needs root (CAP_SYS_ADMIN), as the real node does."""
    script = (
        'set -e; s="$1"; c="$2"; shift 2; '
        'mount -t tmpfs carbontrack-kueue "$s"; '
        'mkdir -p "$s/upper/kueue/metrics/certs" "$s/work"; '
        'cp "$c/tls.crt" "$c/tls.key" "$s/upper/kueue/metrics/certs/"; '
        'mount -t overlay carbontrack-kueue -o "lowerdir=/etc,upperdir=$s/upper,workdir=$s/work" /etc; '
        'exec "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
            "kueue-etc", str(scratch), str(certs), *argv]


def _tls_up(url: str, ctx: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0, context=ctx):
            return True
    except urllib.error.HTTPError:
        return True  # TLS handshake done, the server answered
    except (urllib.error.URLError, OSError):
        return False
