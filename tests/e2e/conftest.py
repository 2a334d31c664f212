"""Fixtures for end-to-end tests on a real control plane (see docs/e2e.md).

- ``devstack`` (session): etcd, kube-apiserver, controller-manager, scheduler, kwok with
  simulated nodes, the node simulator, one exporter per node and Prometheus;
- ``namespace``: a fresh namespace per test, deleted afterwards;
- ``core_v1`` / ``batch_v1`` / ``custom_objects``: API clients bound to the cluster;
- ``start_process``: start an extra process (e.g. ``carbontrack operator``) with its log
  captured and dumped on failure, stopped after the test;
- on a failing test, the report gets the namespace's events and pod phases and the tails of
  the exporter, operator and Prometheus logs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _kind_available() -> bool:
    if shutil.which("kind") is None or shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _choose_cluster(config: pytest.Config) -> str:
    wanted = str(config.getoption("--cluster"))
    if wanted == "auto":
        return "kind" if _kind_available() else "local"
    return wanted


@pytest.fixture(scope="session")
def devstack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from carbontrack.devcluster.binaries import ensure_all
    from carbontrack.devcluster.process import install_cleanup
    from carbontrack.devcluster.stack import start_stack

    kind = _choose_cluster(request.config)
    state = tmp_path_factory.mktemp("devcluster")
    binaries = ensure_all(root=REPO_ROOT, log=state / "build.log")
    if kind == "kind":
        from carbontrack.devcluster.kind import KindClusterFactory

        stack = start_stack(state, binaries, cluster_factory=KindClusterFactory())
    else:
        stack = start_stack(state, binaries)
    unregister = install_cleanup(stack.stop)  # interrupted runs: atexit / SIGTERM
    request.config.stash[_STACK] = stack
    try:
        yield stack
    finally:
        stack.stop()
        unregister()


_STACK = pytest.StashKey[Any]()
_NAMESPACE = pytest.StashKey[str]()
_EXTRA_LOGS = pytest.StashKey[list[Path]]()


@pytest.fixture
def cluster(devstack: Any) -> Any:
    return devstack.cluster


@pytest.fixture
def prometheus(devstack: Any) -> Any:
    return devstack.prometheus


@pytest.fixture
def simulator(devstack: Any) -> Any:
    return devstack.simulator


@pytest.fixture
def exporters(devstack: Any) -> Any:
    return devstack.exporters


@pytest.fixture
def kubeconfig(devstack: Any) -> Path:
    return Path(devstack.cluster.kubeconfig)


@pytest.fixture
def api_client(kubeconfig: Path) -> Iterator[Any]:
    from carbontrack.devcluster.kube import api_client as make

    with make(kubeconfig) as api:
        yield api


@pytest.fixture
def core_v1(api_client: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client)


@pytest.fixture
def batch_v1(api_client: Any) -> Any:
    from kubernetes import client

    return client.BatchV1Api(api_client)


@pytest.fixture
def custom_objects(api_client: Any) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(api_client)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, core_v1: Any) -> Iterator[str]:
    """A fresh namespace named after the test; deleted (without waiting) afterwards."""
    import hashlib

    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"e2e-{base}-{digest}"
    core_v1.create_namespace({"metadata": {"name": name, "labels": {"carbontrack.io/e2e": "true"}}})
    request.node.stash[_NAMESPACE] = name
    yield name
    core_v1.delete_namespace(name)


@pytest.fixture
def start_process(request: pytest.FixtureRequest, devstack: Any) -> Iterator[Callable[..., Any]]:
    """``start_process(name, argv, env=None)`` -> ManagedProcess, in its own process group,
    log under the stack's log dir, stopped when the test ends and dumped if it fails."""
    started: list[Any] = []
    logs = request.node.stash.setdefault(_EXTRA_LOGS, [])

    def start(name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Any:
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = devstack.supervisor.start(name, list(argv), env=full_env)
        started.append(proc)
        logs.append(proc.log_path)
        return proc

    yield start
    for proc in reversed(started):
        devstack.supervisor.stop_one(proc)


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """``wait_for(what, probe, timeout_s)``: see carbontrack.devcluster.wait."""
    from carbontrack.devcluster.wait import wait_for as wait

    return wait


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    if rep.when != "call" or not rep.failed:
        return
    stack = item.config.stash.get(_STACK, None)
    if stack is None:
        return
    try:
        rep.sections.append(("carbontrack e2e dump", _dump(stack, item)))
    except Exception as err:  # a broken dump must not hide the failure
        rep.sections.append(("carbontrack e2e dump", f"(dump failed: {err!r})"))


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"(unreadable: {err})"


def _dump(stack: Any, item: pytest.Item) -> str:
    from kubernetes import client

    from carbontrack.devcluster.kube import api_client

    out: list[str] = []
    ns = item.stash.get(_NAMESPACE, None)
    with api_client(stack.cluster.kubeconfig) as api:
        core = client.CoreV1Api(api)
        if ns:
            out.append(f"== pods in {ns}")
            for p in core.list_namespaced_pod(ns).items:
                out.append(f"{p.metadata.name}: phase={p.status.phase} node={p.spec.node_name}")
            out.append(f"== events in {ns}")
            for e in core.list_namespaced_event(ns).items:
                out.append(f"{e.last_timestamp} {e.type} {e.involved_object.kind}/"
                           f"{e.involved_object.name} {e.reason}: {e.message}")
    logs = [e.process.log_path for e in stack.exporters.values()]
    logs.append(stack.prometheus.process.log_path)
    logs += item.stash.get(_EXTRA_LOGS, [])
    for path in logs:
        out.append(f"== {path.name} ({path})")
        out.append(_tail(path))
    # the control plane rarely is the culprit: a few lines each, full logs beside them
    log_dir = stack.supervisor.log_dir
    for name in ("kwok", "kube-controller-manager", "kube-scheduler"):
        path = log_dir / f"{name}.log"
        if path.exists():
            out.append(f"== {path.name} ({path})")
            out.append(_tail(path, 10))
    return "\n".join(out)
