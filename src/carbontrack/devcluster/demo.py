"""``python -m carbontrack.devcluster up|demo|down|status`` (``make demo`` / ``make demo-down``).

``up`` runs the whole stack in the foreground until SIGTERM/Ctrl-C and records its state
(pids, process groups, URLs, kubeconfig) in ``<cache>/demo/state.json``. ``demo`` starts
``up`` in the background if it is not running, waits for it, applies the CRDs, submits an
example training Job (GPU pods) and a data-preparation Job (CPU pods) with a CarbonBudget,
waits for them, and prints what a user would look at. ``down`` stops everything recorded in
the state file and removes the demo's data.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ..core import contract
from ..core.errors import ConfigError
from .binaries import bin_dir, cache_dir, ensure_all, repo_root
from .demo_real import REAL_BANNER, install_real_exporter, real_exporter_targets, real_job
from .imagebuild import EXPORTER
from .ports import free_port
from .process import kill_group
from .recovery import record_path, recover
from .wait import wait_for
from .workloads import sim_job

BANNER = ("SIMULATED HARDWARE: kwok nodes, fake RAPL/NVML/AMD SMI counters; numbers are not "
          "measurements")
DEMO_NS = "carbontrack-demo"


def demo_dir() -> Path:
    return cache_dir() / "demo"


def state_file() -> Path:
    return demo_dir() / "state.json"


def read_state() -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None
    return data


def _dead(pid: int) -> bool:
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def operator_argv(prometheus_url: str, kubeconfig: Path, port: int) -> list[str] | None:
    """``carbontrack operator`` once the operator exists, else None (the demo says so)."""
    if importlib.util.find_spec("carbontrack.operator.cli") is None:
        return None
    return [sys.executable, "-m", "carbontrack", "operator",
            f"--prometheus-url={prometheus_url}", f"--kubeconfig={kubeconfig}", "--standalone",
            f"--listen=127.0.0.1:{port}", "--scrape-interval=1", "--accounting-delay=2",
            "--budget-interval=2"]


# -- up -------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    from .process import install_cleanup
    from .stack import start_stack

    run_dir = Path(args.state_dir) if args.state_dir else demo_dir() / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    binaries = ensure_all(log=demo_dir() / "build.log")
    stack = start_stack(run_dir, binaries, real_node=args.real_node,
                        real_node_images=(EXPORTER,) if args.real_node else ())
    install_cleanup(stack.stop)
    real: dict[str, Any] | None = None
    if stack.real_node is not None:
        node = stack.real_node
        target = install_real_exporter(stack.cluster.kubeconfig, node.images["exporter"],
                                       node.name)
        stack.prometheus.set_targets("carbontrack-exporter", {
            **{e.url.removeprefix("http://"): {} for e in stack.exporters.values()},
            **real_exporter_targets(stack.cluster.kubeconfig, node.name)})
        real = {"name": node.name, "images": node.images, "exporter": f"http://{target}",
                "timings": node.timings}
    op_port = free_port()
    op = operator_argv(stack.prometheus.url, stack.cluster.kubeconfig, op_port)
    operator_pid = None
    if op is not None:
        operator_pid = stack.supervisor.start("operator", op).pid
        stack.prometheus.set_targets("carbontrack-operator", {f"127.0.0.1:{op_port}": {}})
    state = {
        "pid": os.getpid(),
        "pgids": stack.supervisor.pgids(),
        "run_dir": str(run_dir),
        "kubeconfig": str(stack.cluster.kubeconfig),
        "prometheus": stack.prometheus.url,
        "exporters": {n: e.url for n, e in stack.exporters.items()},
        "operator_pid": operator_pid,
        "logs": str(stack.supervisor.log_dir),
        "timings": stack.cluster.timings,
        "real_node": real,
    }
    state_file().parent.mkdir(parents=True, exist_ok=True)
    tmp = state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, state_file())
    print(f"carbontrack devcluster up: kubeconfig {stack.cluster.kubeconfig}, "
          f"Prometheus {stack.prometheus.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    stack.stop()
    return 0


# -- down -----------------------------------------------------------------------
def cmd_down(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None:
        print("carbontrack devcluster: nothing to stop (no demo state file)")
        return 0
    pid = int(state["pid"])
    if _alive(pid):
        # `up` stops its own children in order; give it time, then kill what is left
        kill_group(pid, 20.0, lambda: not _alive(pid))
    for pgid in state.get("pgids", []):
        kill_group(int(pgid), 2.0, partial(_dead, int(pgid)))
    # a real node whose `up` did not get to its teardown (killed): undo it from its record
    left = recover(record_path())
    if left:
        print(f"carbontrack devcluster: the real node left: {left}", file=sys.stderr)
    run_dir = Path(state["run_dir"])
    shutil.rmtree(run_dir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        state_file().unlink()
    print("carbontrack devcluster: stopped and cleaned up")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None or not _alive(int(state["pid"])):
        print("carbontrack devcluster: not running")
        return 1
    print(json.dumps(state, indent=1))
    return 0


# -- demo -----------------------------------------------------------------------
def _ensure_up(timeout_s: float, real_node: bool = True) -> dict[str, Any]:
    state = read_state()
    if state is not None and _alive(int(state["pid"])):
        return state
    if state is not None:  # stale: a previous run died
        cmd_down(argparse.Namespace())
    demo_dir().mkdir(parents=True, exist_ok=True)
    log = demo_dir() / "up.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "carbontrack.devcluster", "up",
             *([] if real_node else ["--no-real-node"])],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # survives this command; `down` stops it
        )
    print(f"starting the local cluster (log: {log}) ...", flush=True)

    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise ConfigError(f"`carbontrack.devcluster up` exited ({proc.returncode}):\n{tail}")
        st = read_state()
        if st is not None and int(st["pid"]) == proc.pid:  # the new `up` wrote its state
            return st
        if time.monotonic() > deadline:
            raise ConfigError(f"the local cluster did not start in {timeout_s:g} s; see {log}")
        time.sleep(0.5)


def budget_manifest(name: str, limit: str, team: str) -> dict[str, Any]:
    return {
        "apiVersion": contract.GROUP_VERSION,
        "kind": "CarbonBudget",
        "metadata": {"name": name},
        "spec": {
            "limit": limit,
            "period": {"type": "Calendar", "calendar": "Month"},
            "selector": {"matchLabels": {"team": team}},
            "thresholds": [50, 80],
            "action": "Warn",
        },
    }


def budget_summary(budget: dict[str, Any]) -> str:
    """What `kubectl get carbonbudget -o wide` and `describe` would tell a user."""
    st = budget.get("status") or {}
    name, spec = budget["metadata"]["name"], budget["spec"]
    lines = [f"CarbonBudget {name}: limit {spec['limit']}, used {st.get('used', '-')} "
             f"({st.get('percent', '-')}%), period {st.get('periodName', '-')}, "
             f"exceeded {st.get('exceeded', '-')}, Jobs counted {st.get('jobsCounted', '-')}"]
    for c in st.get("conditions") or []:
        lines.append(f"    {c.get('type')}={c.get('status')} {c.get('reason', '')}: "
                     f"{c.get('message', '')}")
    if not st:
        lines.append("    (no status yet: the operator is not running)")
    return "\n".join(lines)


def demo_jobs(run_seconds: float) -> list[dict[str, Any]]:
    labels = {"team": "ml-research", "app.kubernetes.io/part-of": "carbontrack-demo"}
    return [
        sim_job("train-llm", run_seconds=run_seconds, cpu_cores=8, memory_request="64Gi",
                gpus=4, gpu_watts=320, gpu_util=95, parallelism=2, labels=labels),
        sim_job("data-prep", run_seconds=run_seconds, cpu_cores=2, memory_request="4Gi",
                parallelism=3, labels=labels),
        # the AMD Instinct pool: amd.com/gpu, read through amdsmi on the simulated node
        sim_job("finetune-amd", run_seconds=run_seconds, cpu_cores=4, memory_request="32Gi",
                gpus=2, gpu_watts=550, gpu_util=90, labels=labels, gpu_vendor="amd"),
    ]


def cmd_demo(args: argparse.Namespace) -> int:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from .kube import api_client, apply_manifests
    from .prometheus import query

    state = _ensure_up(args.timeout, args.real_node)
    kubeconfig = Path(state["kubeconfig"])
    real = state.get("real_node")
    root = repo_root()
    crds = sorted((root / "crds").glob("*.yaml")) if root else []
    for crd in crds:
        apply_manifests(kubeconfig, crd)
    print(f"\n=== {BANNER} ===")
    if real:
        print(f"=== {REAL_BANNER.format(node=real['name'])} ===")
    print()
    print(f"cluster up in {state['timings'].get('stack', 0):.1f} s; "
          f"export KUBECONFIG={kubeconfig}")
    with api_client(kubeconfig) as api:
        # Any: the client's generated types would need a cast at every plain-dict body
        core: Any = client.CoreV1Api(api)
        batch: Any = client.BatchV1Api(api)
        custom: Any = client.CustomObjectsApi(api)
        with contextlib.suppress(ApiException):
            core.create_namespace({"metadata": {"name": DEMO_NS}})
        if crds:
            wait_for("the CarbonBudget CRD", lambda: custom.list_namespaced_custom_object(
                contract.API_GROUP, contract.API_VERSION, DEMO_NS, "carbonbudgets") is not None, 30)
            with contextlib.suppress(ApiException):
                custom.create_namespaced_custom_object(
                    contract.API_GROUP, contract.API_VERSION, DEMO_NS, "carbonbudgets",
                    budget_manifest("ml-research-monthly", "6g", "ml-research"))
        names = []
        manifests = demo_jobs(args.run_seconds)
        if real:
            manifests.append(real_job("real-burn", real["images"]["debian"], threads=2,
                                      seconds=int(args.run_seconds),
                                      labels={"team": "ml-research"}))
        for manifest in manifests:
            name = manifest["metadata"]["name"]
            with contextlib.suppress(ApiException):
                batch.delete_namespaced_job(name, DEMO_NS, propagation_policy="Foreground")
            wait_for(f"old Job {name} gone", partial(_job_gone, batch, name), 60)
            batch.create_namespaced_job(DEMO_NS, manifest)
            names.append(name)
            print(f"submitted Job {DEMO_NS}/{name}")

        def finished() -> bool:
            return all(_job_finished(batch, n) for n in names)

        print(f"waiting for the Jobs (pods run {args.run_seconds:g} s on simulated nodes)...")
        wait_for("the demo Jobs to finish", finished, args.run_seconds + 120, interval_s=1.0)
        operator = state.get("operator_pid") is not None
        if operator:
            wait_for("the operator to annotate the Jobs", lambda: all(
                contract.CO2E_GRAMS in (batch.read_namespaced_job(n, DEMO_NS)
                                                .metadata.annotations or {})
                for n in names), 120, interval_s=1.0)
        print()
        for n in names:
            job = batch.read_namespaced_job(n, DEMO_NS)
            ann = {k: v for k, v in (job.metadata.annotations or {}).items()
                   if k.startswith(contract.KEY_PREFIX) and k != contract.REPORT}
            cond = [c.type for c in job.status.conditions or [] if c.status == "True"]
            print(f"Job {n}: {', '.join(cond)}")
            for k, v in sorted(ann.items()):
                print(f"    {k}: {v}")
            if not ann:
                print("    (no carbontrack.io annotations: the operator is not running)")
        if crds:
            b = custom.get_namespaced_custom_object(contract.API_GROUP, contract.API_VERSION, DEMO_NS,
                                                    "carbonbudgets", "ml-research-monthly")
            print("\n" + budget_summary(b))
        print("\nEvents:")
        for e in core.list_namespaced_event(DEMO_NS).items[-15:]:
            print(f"  {e.type} {e.involved_object.kind}/{e.involved_object.name} "
                  f"{e.reason}: {e.message}")
    promql = (f'sum by (owner_name, component, node) ({contract.CONTAINER_ENERGY.sample}'
              f'{{namespace="{DEMO_NS}"}})')
    print(f"\nPrometheus {state['prometheus']}\n  query: {promql}")
    time.sleep(2)  # one more scrape after the pods ended
    for r in query(state["prometheus"], promql):
        m = r["metric"]
        kind = "REAL" if real and m.get("node") == real["name"] else "SIMULATED"
        print(f"  {m.get('owner_name', '?'):<10} {m.get('component', '?'):<4} "
              f"{float(r['value'][1]):10.1f} J  {kind} ({m.get('node', '?')})")
    print(f"\n=== {BANNER} ===")
    if real:
        print(f"=== {REAL_BANNER.format(node=real['name'])} ===")
    print("\nThe cluster keeps running: try `KUBECONFIG="
          f"{kubeconfig} {bin_dir() / 'kubectl'} get carbonbudgets -A` (kubectl "
          "v1.36.3, built with the control plane).\n"
          "Stop it with `make demo-down` (python -m carbontrack.devcluster down).")
    return 0


def _job_gone(batch: Any, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        batch.read_namespaced_job(name, DEMO_NS)
    except ApiException as err:
        return bool(err.status == 404)
    return False


def _job_finished(batch: Any, name: str) -> bool:
    job = batch.read_namespaced_job(name, DEMO_NS)
    return any(c.type in ("Complete", "Failed") and c.status == "True"
               for c in job.status.conditions or [])


def cmd_measure(args: argparse.Namespace) -> int:
    """Warm start times (binaries cached): control plane alone, then the whole stack."""
    import statistics
    import tempfile

    from .controlplane import start_local_cluster
    from .stack import start_stack

    binaries = ensure_all()
    ready: list[float] = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="ct-measure-") as tmp:
            c = start_local_cluster(Path(tmp), binaries)
            c.stop()
            ready.append(c.timings["ready"])
    with tempfile.TemporaryDirectory(prefix="ct-measure-") as tmp:
        s = start_stack(Path(tmp), binaries)
        s.stop()
        stack_s = s.cluster.timings["stack"]
    print(f"control plane warm start (PKI -> fake nodes Ready): "
          f"median {statistics.median(ready):.1f} s, max {max(ready):.1f} s over {len(ready)} runs")
    print(f"whole stack warm start (+ simulator, exporters, Prometheus): {stack_s:.1f} s")
    if args.real_node:
        node_ready: list[float] = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="ct-measure-") as tmp:
                s = start_stack(Path(tmp), binaries, real_node=True)
                s.stop()
                assert s.real_node is not None
                node_ready.append(s.real_node.timings["node_ready"])
        print(f"real node warm start (containerd -> Node Ready, after the control plane): "
              f"median {statistics.median(node_ready):.1f} s, max {max(node_ready):.1f} s "
              f"over {len(node_ready)} runs")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m carbontrack.devcluster",
                                description="local Kubernetes control plane with simulated "
                                            "hardware (tests and `make demo`)")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="run the stack in the foreground until stopped")
    up.add_argument("--state-dir", default=None, help="data dir (default: <cache>/demo/run)")
    demo = sub.add_parser("demo", help="start the stack (if needed) and run the demo")
    demo.add_argument("--run-seconds", type=float, default=20.0,
                      help="how long each simulated pod runs (seconds)")
    demo.add_argument("--timeout", type=float, default=1800.0,
                      help="seconds to wait for the cluster (a cold build takes minutes)")
    for sp in (up, demo):
        sp.add_argument("--no-real-node", dest="real_node", action="store_false",
                        help="kwok nodes only (the real node needs root, containerd, runc)")
    sub.add_parser("down", help="stop the stack and remove its data")
    sub.add_parser("status", help="print the running stack's state")
    measure = sub.add_parser("measure", help="measure warm start times (docs/e2e.md)")
    measure.add_argument("--repeat", type=int, default=3)
    measure.add_argument("--real-node", action="store_true",
                         help="also time a real node's start (root; see docs/e2e.md)")
    args = p.parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "up": cmd_up, "demo": cmd_demo, "down": cmd_down, "status": cmd_status,
        "measure": cmd_measure,
    }
    try:
        return commands[args.cmd](args)
    except ConfigError as err:
        print(f"carbontrack devcluster {args.cmd}: error: {err}", file=sys.stderr)
        return 2
