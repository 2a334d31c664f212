"""The Kubeflow Trainer v2 controller manager (github.com/kubeflow/trainer/v2 v2.0.0, real,
built from its Go module by ``scripts/build-control-plane.sh trainer``) against the local
control plane, with its three CRDs (TrainJob, TrainingRuntime, ClusterTrainingRuntime) from
the same module source.

It turns a TrainJob into a JobSet (jobset.x-k8s.io/v1alpha2, run by the real JobSet
controller of devcluster/training_operator.py; both modules pin sigs.k8s.io/jobset v0.8.2).
Running it outside a pod needs what its Deployment would give it
(cmd/trainer-controller-manager/main.go, pkg/util/cert/cert.go at v2.0.0):
- its namespace: without a service-account file the cert rotator uses ``kubeflow-system``,
  and it fails when the Secret it fills (``kubeflow-trainer-webhook-cert``) is absent;
- serving certificate files in the fixed directory ``/tmp/k8s-webhook-server/serving-certs``
  (the rotator only checks that tls.crt exists; the training-operator uses the same
  directory and any valid pair will do). Its controllers start only once the rotator is
  ready; nothing calls its webhooks: no ValidatingWebhookConfiguration is installed (the
  rotator logs and skips an absent one, cert-controller v0.12.0 rotator.go ensureCerts);
- a free webhook port, metrics and health probes off ("0"), no leader election.
Without the JobSet defaulting webhook a runtime's JobSet template must carry what it would
default (``training_operator.jobset_defaults``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from ..core.errors import ConfigError
from .binaries import bin_dir, cache_dir, repo_root, run_build
from .ports import free_port
from .process import ManagedProcess, Supervisor
from .training_operator import CERT_DIR, _self_signed, ensure_namespace_and_secret, install_crds

NAMESPACE = "kubeflow-system"  # pkg/util/cert/cert.go defaultNamespace
WEBHOOK_SECRET = "kubeflow-trainer-webhook-cert"  # the binary's --webhook-secret-name default


@dataclass(frozen=True)
class TrainerTools:
    """The controller manager binary and its CRDs, kept beside it by the build script."""

    binary: Path
    crd_dir: Path

    def crds(self) -> list[Path]:
        return sorted(self.crd_dir.glob("*.yaml"))

    def ready(self) -> bool:
        return os.access(self.binary, os.X_OK) and (self.crd_dir / ".complete").is_file()


def trainer_tools(env: Mapping[str, str] | None = None) -> TrainerTools:
    return TrainerTools(bin_dir(env) / "trainer", cache_dir(env) / "share" / "trainer-crds")


def ensure_trainer(*, env: Mapping[str, str] | None = None, root: Path | None = None,
                   log: Path | None = None) -> TrainerTools:
    """Build (cold: minutes) or find (warm) the controller manager and its CRDs."""
    env = dict(os.environ if env is None else env)
    tools = trainer_tools(env)
    if tools.ready():
        return tools
    root = root or repo_root()
    if root is None:
        raise ConfigError("the Kubeflow Trainer controller or its CRDs are missing and there is no checkout "
                          "to build them from: run scripts/build-control-plane.sh trainer")
    cmd = ["nice", "-n", "10", "bash", str(root / "scripts" / "build-control-plane.sh"), "trainer"]
    result = run_build(cmd, env, log)
    if result.returncode != 0 or not tools.ready():
        where = f"; see {log}" if log is not None else ""
        raise ConfigError(f"building the Kubeflow Trainer controller failed (exit {result.returncode}){where}")
    return tools


def trainer_argv(binary: Path, webhook_port: int) -> list[str]:
    """The command line (pure; tested by equality)."""
    return ["nice", "-n", "10", str(binary), f"--webhook-server-port={webhook_port}",
            "--metrics-bind-address=0", "--health-probe-bind-address=0", "--leader-elect=false",
            "--zap-log-level=info"]


def start_trainer(api: client.ApiClient, kubeconfig: Path, tools: TrainerTools,
                  supervisor: Supervisor) -> ManagedProcess:
    """Install the Trainer CRDs and start the controller manager (the caller stops it). The
    JobSet CRD and controller must be there too (training_operator.py)."""
    install_crds(api, tools.crds())
    ensure_namespace_and_secret(api, NAMESPACE, WEBHOOK_SECRET)
    _self_signed(CERT_DIR)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return supervisor.start("trainer-controller-manager", trainer_argv(tools.binary, free_port()), env=env)
