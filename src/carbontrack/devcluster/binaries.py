"""Where the control-plane binaries live, and building them on demand.

The binaries are built from the pinned Go modules under ``tools/`` by
``scripts/build-control-plane.sh`` (the single recipe; this module only calls
it) and cached outside the checkout as ``<cache>/bin/<name>-<version>`` with a
stable symlink ``<cache>/bin/<name>``. ``<cache>`` is ``$CARBONTRACK_CACHE_DIR``
or ``~/.cache/carbontrack``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigError

# Names the build script produces, in its build order.
TOOLS = ("helm", "kubeconform", "etcd", "kwok", "k8s")
K8S_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
CONTROL_PLANE = ("etcd", "kwok", *K8S_BINARIES)


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The cache root: ``$CARBONTRACK_CACHE_DIR`` or ``~/.cache/carbontrack``."""
    env = os.environ if env is None else env
    override = env.get("CARBONTRACK_CACHE_DIR")
    return Path(override) if override else Path.home() / ".cache" / "carbontrack"


def bin_dir(env: Mapping[str, str] | None = None) -> Path:
    return cache_dir(env) / "bin"


def repo_root(cwd: Path | None = None) -> Path | None:
    """The checkout holding ``scripts/build-control-plane.sh``: the one this module lives in
    (editable install), else the current directory or one above it (an installed wheel run
    from a checkout, as CI and ``make demo`` do). None: no way to build, use the cache."""
    here = Path(__file__).resolve()
    start = (cwd or Path.cwd()).resolve()
    for parent in [*here.parents, start, *start.parents]:
        if (parent / "scripts" / "build-control-plane.sh").is_file() and (
            parent / "tools"
        ).is_dir():
            return parent
    return None


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the executables the local cluster runs."""

    etcd: Path
    kwok: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    helm: Path
    kubeconform: Path

    @classmethod
    def in_dir(cls, directory: Path) -> Binaries:
        return cls(
            etcd=directory / "etcd",
            kwok=directory / "kwok",
            kube_apiserver=directory / "kube-apiserver",
            kube_controller_manager=directory / "kube-controller-manager",
            kube_scheduler=directory / "kube-scheduler",
            helm=directory / "helm",
            kubeconform=directory / "kubeconform",
        )

    def missing(self) -> list[Path]:
        return [p for p in vars(self).values() if not os.access(p, os.X_OK)]


def run_build(cmd: list[str], env: Mapping[str, str] | None, log: Path | None) -> subprocess.CompletedProcess[bytes]:
    """Run a build command, its output appended to ``log`` (None: to this process's)."""
    if log is None:
        return subprocess.run(cmd, env=env)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def ensure_all(
    *,
    env: Mapping[str, str] | None = None,
    tools: tuple[str, ...] = TOOLS,
    root: Path | None = None,
    log: Path | None = None,
) -> Binaries:
    """Build whatever is not cached yet (cold: tens of minutes; warm: about a second) and
    return the binaries. Raises ConfigError with the fix when it cannot."""
    env = dict(os.environ if env is None else env)
    binaries = Binaries.in_dir(bin_dir(env))
    if not binaries.missing():
        return binaries
    root = root or repo_root()
    if root is None:
        missing = ", ".join(p.name for p in binaries.missing())
        raise ConfigError(
            f"control-plane binaries missing ({missing}) and no checkout to build them from: "
            "run scripts/build-control-plane.sh from a carbontrack checkout "
            "(or set CARBONTRACK_CACHE_DIR to a cache that has them)"
        )
    cmd = ["bash", str(root / "scripts" / "build-control-plane.sh"), *tools]
    result = run_build(cmd, env, log)
    if result.returncode != 0:
        where = f"; see {log}" if log is not None else ""
        raise ConfigError(
            f"scripts/build-control-plane.sh failed with exit code {result.returncode}{where}: "
            "check that Go >= 1.24 is installed and the Go module proxy is reachable"
        )
    still = binaries.missing()
    if still:
        raise ConfigError(f"build finished but {', '.join(map(str, still))} are missing")
    return binaries


@dataclass(frozen=True)
class WorkloadTools:
    """The Kubeflow training-operator and JobSet controller binaries and the workload CRDs
    (PyTorchJob, JobSet, TrainJob, RayJob, RayCluster) kept beside them by the build script."""

    training_operator: Path
    crd_dir: Path
    jobset: Path

    def crds(self) -> list[Path]:
        return sorted(self.crd_dir.glob("*.yaml"))


def ensure_workload_tools(
    *, env: Mapping[str, str] | None = None, root: Path | None = None, log: Path | None = None,
) -> WorkloadTools:
    """Build (cold: minutes) or find (warm) the training-operator, the JobSet controller and
    the workload CRDs."""
    env = dict(os.environ if env is None else env)
    tools = WorkloadTools(bin_dir(env) / "training-operator", cache_dir(env) / "share" / "workload-crds",
                          bin_dir(env) / "jobset")
    built = [tools.training_operator, tools.jobset]
    if all(os.access(p, os.X_OK) for p in built) and (tools.crd_dir / ".complete").is_file():
        return tools
    root = root or repo_root()
    if root is None:
        raise ConfigError("training-operator or workload CRDs missing and no checkout to build them "
                          "from: run scripts/build-control-plane.sh training-operator")
    cmd = ["nice", "-n", "10", "bash", str(root / "scripts" / "build-control-plane.sh"), "training-operator",
           "jobset"]
    result = run_build(cmd, env, log)
    if result.returncode != 0 or not all(os.access(p, os.X_OK) for p in built):
        where = f"; see {log}" if log is not None else ""
        raise ConfigError(f"building the training-operator and JobSet controller failed "
                          f"(exit {result.returncode}){where}")
    return tools
