"""Node simulator: keeps each kwok node's fake hardware tree in step with the API.

For every simulated node there is a directory with a fake ``sysfs`` (powercap RAPL
zone + ``fs/cgroup``), a fake ``procfs`` (``stat``, ``meminfo``, ``<pid>/cgroup``)
and, for GPU nodes, the state file of their vendor's fake library (NVML for NVIDIA nodes,
libamd_smi for AMD ones). A watch on Pods creates a pod's cgroup
when it is Running on the node and removes it when it ends; a ticker (every
``tick_s``) advances CPU time, the RAPL counter and the GPU energy counters.

Power model (simulated hardware, stated so tests can reason about it):
- CPU package: ``idle_cpu_watts + watts_per_busy_core * busy_cores``; a pod keeps
  ``sim.carbontrack.io/cpu-cores`` cores busy (default 1), charged to its first
  container's cgroup; ``/proc/stat`` shows the same busy cores.
- GPU: a GPU allocated to a pod (``sim.carbontrack.io/gpus``, else its GPU limit under
  any vendor's resource name: ``nvidia.com/gpu``, ``amd.com/gpu``) draws
  ``sim.carbontrack.io/gpu-watts`` (default 250), any other GPU ``idle_gpu_watts``.

``joules(pod_uid)`` returns exactly what the simulator added on the pod's behalf:
``cpu`` = its busy cores' share (``watts_per_busy_core * cores * seconds``), ``gpu`` =
the whole energy of its GPUs while allocated. Node idle energy is kept separately.

When a pod ends its CPU use stops at once, but its cgroup, its GPU processes and its GPUs'
allocation stay ``linger_s`` (2 s) longer, like the kubelet's cleanup lag, so exporters
read the final counters before they disappear.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import contract
from ..core.accelerators import gpu_count
from ..sim import fakeamdsmi
from ..sim.cgroups import FakeCgroupTree
from ..sim.fakenvml import (
    FakeGpu,
    FakeGpuProcess,
    FakeNvmlBuildError,
    build_fake_libnvml,
    write_state,
)
from ..sim.powercap import FakePowercap
from ..sim.procfs import FakeProcStat, remove_pid, write_meminfo, write_pid_cgroup
from .nodes import FakeNode

log = logging.getLogger("carbontrack.devcluster.simulator")

CPU_CORES = contract.SIM_CPU_CORES
GPU_WATTS = contract.SIM_GPU_WATTS
GPUS = contract.SIM_GPUS
GPU_UTIL = contract.SIM_GPU_UTIL
DEFAULT_CPU_CORES = 1.0
DEFAULT_GPU_WATTS = 250.0
DEFAULT_GPU_UTIL = 90.0

_UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 1000, "M": 10**6,
          "G": 10**9, "T": 10**12}


def parse_quantity(q: str) -> float:
    """Kubernetes quantity -> float (``500m`` cores, ``64Gi`` bytes)."""
    q = str(q).strip()
    if q.endswith("m"):
        return float(q[:-1]) / 1000
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if q.endswith(suffix):
            return float(q[: -len(suffix)]) * _UNITS[suffix]
    return float(q)


@dataclass(frozen=True)
class PodLoad:
    """What a running pod does to its node's hardware (from its annotations and spec)."""

    uid: str
    namespace: str
    name: str
    node: str
    qos: str
    containers: tuple[tuple[str, float, int], ...]  # (name, cpu request cores, memory bytes)
    cpu_cores: float
    gpus: int
    gpu_watts: float
    gpu_util: float


def _annotation(ann: Mapping[str, str], key: str, default: float) -> float:
    raw = ann.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        log.warning("ignoring annotation %s=%r: not a number", key, raw)
        return default
    return max(value, 0.0)


def pod_load(pod: Mapping[str, Any]) -> PodLoad:
    """Read a pod (as a dict, ``ApiClient.sanitize_for_serialization`` form)."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    ann: Mapping[str, str] = meta.get("annotations") or {}
    containers = []
    gpu_limit = 0
    for c in spec.get("containers", []):
        res = c.get("resources") or {}
        req = res.get("requests") or {}
        lim = res.get("limits") or {}
        cpu = parse_quantity(req.get("cpu", lim.get("cpu", "0")))
        mem = int(parse_quantity(req.get("memory", lim.get("memory", "0"))))
        gpu_limit += int(gpu_count(lim, lambda q: parse_quantity(str(q))))
        containers.append((c["name"], cpu, mem))
    return PodLoad(
        uid=meta["uid"],
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        node=spec.get("nodeName") or "",
        qos=str(status.get("qosClass") or "BestEffort").lower(),
        containers=tuple(containers),
        cpu_cores=_annotation(ann, CPU_CORES, DEFAULT_CPU_CORES),
        gpus=int(_annotation(ann, GPUS, float(gpu_limit))),
        gpu_watts=_annotation(ann, GPU_WATTS, DEFAULT_GPU_WATTS),
        gpu_util=min(_annotation(ann, GPU_UTIL, DEFAULT_GPU_UTIL), 100.0),
    )


@dataclass
class PodRecord:
    load: PodLoad
    gpu_indices: tuple[int, ...]
    started: float
    ended: float | None = None
    joules: dict[str, float] = field(default_factory=lambda: {"cpu": 0.0, "gpu": 0.0})


@dataclass
class GpuState:
    index: int
    uuid: str
    energy_mj: float = 0.0
    power_w: float = 0.0
    util: float = 0.0
    pod: str | None = None  # uid of the pod it is allocated to
    busy_ns: float = 0.0  # compute-engine time of the process on it (AMD's per-process gfx)


def _gpu_uuid(node: str, index: int) -> str:
    """A stable, well-formed ``GPU-<uuid>`` per node and index."""
    import uuid

    return f"GPU-{uuid.uuid5(uuid.NAMESPACE_DNS, f'{index}.{node}.sim.{contract.API_GROUP}')}"


def _gpu_id(node: FakeNode, index: int) -> str:
    """The id the vendor's device plugin allocates: an NVML UUID, or (AMD) a PCI address."""
    if node.gpu_vendor == "amd":
        return f"0000:{0xc1 + index:02x}:00.0"
    return _gpu_uuid(node.name, index)


class NodeSim:
    """One node's fake tree. Not thread-safe on its own: NodeSimulator serialises calls."""

    def __init__(self, node: FakeNode, root: Path, gpu_backend: GpuBackend | AmdGpuBackend | None,
                 linger_s: float = 2.0) -> None:
        self.node = node
        self.linger_s = linger_s
        self.lingering: dict[str, float] = {}  # uid -> when its cgroup goes
        self.root = root
        self.sysfs = root / "sys"
        self.procfs = root / "proc"
        self.state_dir = root / "exporter-state"
        for d in (self.sysfs, self.procfs, self.state_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.powercap = FakePowercap(self.sysfs)
        self.zone = self.powercap.add_package(0, dram=False, tdp_watts=node.idle_cpu_watts
                                              + node.watts_per_busy_core * node.cpu_cores)
        self.cgroups = FakeCgroupTree(self.sysfs, procfs_root=self.procfs)
        self.stat = FakeProcStat(self.procfs, node.cpu_cores)
        write_meminfo(self.procfs, int(parse_quantity(node.memory)))
        self.gpus = [GpuState(i, _gpu_id(node, i)) for i in range(node.gpus)]
        self.gpu_backend = gpu_backend if node.gpus else None
        self.nvml_state = root / "nvml-state.json"
        self.amdsmi_state = root / "amdsmi-state"
        self.gpu_state = self.amdsmi_state if node.gpu_vendor == "amd" else self.nvml_state
        self.pods: dict[str, PodRecord] = {}
        self.finished: dict[str, PodRecord] = {}
        self.idle_joules: dict[str, float] = {"cpu": 0.0, "gpu": 0.0}
        self._write_gpus()

    # -- pods ---------------------------------------------------------------
    def start_pod(self, load: PodLoad, now: float) -> dict[str, str] | None:
        """Create the pod's cgroups; return container name -> runtime id (None if known)."""
        if load.uid in self.pods or load.uid in self.finished:
            return None
        free = [g for g in self.gpus if g.pod is None]
        take = free[: load.gpus]
        if len(take) < load.gpus:
            log.warning("pod %s/%s wants %d GPUs, node %s has %d free", load.namespace,
                        load.name, load.gpus, self.node.name, len(free))
        for g in take:
            g.pod = load.uid
        containers = {name: (cpu, mem) for name, cpu, mem in load.containers} or None
        qos = load.qos if load.qos in ("guaranteed", "burstable", "besteffort") else "burstable"
        self.cgroups.add_pod(load.uid, qos, containers)
        self.pods[load.uid] = PodRecord(load, tuple(g.index for g in take), now)
        if take:
            main = self._main_container(load.uid)
            c = self.cgroups.pods[load.uid].containers[main]
            rel = "/" + str(c.dirs[0].relative_to(self.cgroups.root))
            write_pid_cgroup(self.procfs, c.pid, rel)
        self._write_gpus()
        return {n: c.id for n, c in self.cgroups.pods[load.uid].containers.items() if n != "POD"}

    def end_pod(self, uid: str, now: float) -> None:
        """The pod stopped: no more CPU use from now on. Its cgroup (and its GPUs' allocation)
        stays for ``linger_s`` like a kubelet's cleanup lag, so an exporter reads the final
        counters before they vanish; then :meth:`_reap` removes them."""
        rec = self.pods.pop(uid, None)
        if rec is None:
            return
        rec.ended = now
        self.finished[uid] = rec
        self.lingering[uid] = now + self.linger_s

    def _reap(self, now: float) -> None:
        for uid, remove_at in list(self.lingering.items()):
            if remove_at > now:
                continue
            del self.lingering[uid]
            pid = self.cgroups.pods[uid].containers[self._main_container(uid)].pid
            self.cgroups.remove_pod(uid)
            remove_pid(self.procfs, pid)
            for g in self.gpus:
                if g.pod == uid:
                    g.pod = None
        self._write_gpus()

    def _main_container(self, uid: str) -> str:
        names = [n for n in self.cgroups.pods[uid].containers if n != "POD"]
        return names[0] if names else "POD"

    # -- time -----------------------------------------------------------------
    def tick(self, dt: float, now: float) -> None:
        n = self.node
        busy = 0.0
        for uid, rec in self.pods.items():
            cores = min(rec.load.cpu_cores, n.cpu_cores - busy)
            if cores <= 0:
                continue
            busy += cores
            self.cgroups.advance_cpu(uid, self._main_container(uid), cores * dt)
            rec.joules["cpu"] += n.watts_per_busy_core * cores * dt
        self.stat.advance(dt, busy)
        self.powercap.advance(self.zone, (n.idle_cpu_watts + n.watts_per_busy_core * busy) * dt)
        self.idle_joules["cpu"] += n.idle_cpu_watts * dt
        for g in self.gpus:
            owner = self.pods.get(g.pod) if g.pod else None
            if owner is not None:
                g.power_w, g.util = owner.load.gpu_watts, owner.load.gpu_util
                owner.joules["gpu"] += g.power_w * dt
                g.busy_ns += g.util / 100.0 * dt * 1e9
            elif g.pod is not None:
                # still allocated to a pod that ended (cleanup lag): idle power, and an
                # exclusively allocated GPU's energy is still its pod's
                g.power_w, g.util = n.idle_gpu_watts, 0.0
                self.finished[g.pod].joules["gpu"] += g.power_w * dt
            else:
                g.power_w, g.util = n.idle_gpu_watts, 0.0
                self.idle_joules["gpu"] += g.power_w * dt
            g.energy_mj += g.power_w * dt * 1000
        self._reap(now)

    def _write_gpus(self) -> None:
        if self.gpu_backend is None:
            return
        procs = []
        for g in self.gpus:
            if g.pod is not None and g.pod in self.cgroups.pods:
                c = self.cgroups.pods[g.pod].containers[self._main_container(g.pod)]
                procs.append((g.index, c.pid))
        self.gpu_backend.write(self.gpu_state, self.node, self.gpus, procs)


class GpuBackend:
    """Writes a node's GPU state for the fake ``libnvidia-ml.so.1`` (carbontrack.sim.fakenvml)
    that the node's exporter loads through ``LD_LIBRARY_PATH``."""

    def __init__(self, lib_dir: Path) -> None:
        self.lib_dir = lib_dir

    def env(self, state: Path, base: Mapping[str, str]) -> dict[str, str]:
        """What the node's exporter needs in its environment to load the fake library."""
        path = os.pathsep.join([str(self.lib_dir), *filter(None, [base.get("LD_LIBRARY_PATH")])])
        return {"LD_LIBRARY_PATH": path, "CARBONTRACK_FAKE_NVML_STATE": str(state)}

    @classmethod
    def build(cls, cache_dir: Path) -> GpuBackend | None:
        """Compile the fake library (cached); None where there is no C compiler."""
        try:
            return cls(build_fake_libnvml(cache_dir))
        except FakeNvmlBuildError as err:
            log.warning("GPU nodes run without NVML: %s", err)
            return None

    def write(self, path: Path, node: FakeNode, gpus: Sequence[GpuState],
              procs: Sequence[tuple[int, int]]) -> None:
        write_state(
            path,
            [FakeGpu(uuid=g.uuid, name=node.gpu_model, energy_mj=int(g.energy_mj),
                     power_mw=int(g.power_w * 1000), util_gpu=int(g.util),
                     memory_used_bytes=(8 << 30) if g.pod else 0) for g in gpus],
            [FakeGpuProcess(gpu=i, pid=pid, used_memory_bytes=8 << 30,
                            sm_util=int(gpus[i].util)) for i, pid in procs],
        )


class AmdGpuBackend:
    """Writes an AMD node's GPU state for the fake ``libamd_smi.so``
    (carbontrack.sim.fakeamdsmi), which the node's exporter's real amdsmi bindings load from
    ``$ROCM_PATH/lib``. Energy goes in as accumulator ticks of 15.3 uJ, as the library's."""

    def __init__(self, rocm_root: Path) -> None:
        self.rocm_root = rocm_root

    @classmethod
    def build(cls, cache_dir: Path) -> AmdGpuBackend | None:
        """Compile the fake library (cached); None where there is no C compiler."""
        try:
            return cls(fakeamdsmi.build_fake_libamdsmi(cache_dir))
        except fakeamdsmi.FakeAmdSmiBuildError as err:
            log.warning("AMD GPU nodes run without amdsmi: %s", err)
            return None

    def env(self, state: Path, base: Mapping[str, str]) -> dict[str, str]:
        return {"ROCM_PATH": str(self.rocm_root), fakeamdsmi.STATE_ENV: str(state)}

    def write(self, path: Path, node: FakeNode, gpus: Sequence[GpuState],
              procs: Sequence[tuple[int, int]]) -> None:
        fakeamdsmi.write_state(
            path,
            [fakeamdsmi.FakeAmdGpu(
                bdf=g.uuid, uuid=f"{node.name}-{g.index}", name=node.gpu_model,
                energy_counts=fakeamdsmi.counts_for_joules(g.energy_mj / 1000.0),
                power_w=round(g.power_w)) for g in gpus],
            [fakeamdsmi.FakeAmdProcess(gpu=i, pid=pid, vram_bytes=8 << 30,
                                       gfx_ns=int(gpus[i].busy_ns)) for i, pid in procs],
        )


class NodeSimulator:
    """Runs the node sims: a Pod watch thread and a ticker thread."""

    def __init__(
        self,
        kubeconfig: Path,
        nodes: Sequence[FakeNode],
        root: Path,
        *,
        tick_s: float = 0.5,
        gpu_backend: GpuBackend | None = None,
        linger_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        amd_backend: AmdGpuBackend | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.tick_s = tick_s
        self.clock = clock
        self.nodes = {n.name: NodeSim(n, root / n.name,
                                      amd_backend if n.gpu_vendor == "amd" else gpu_backend,
                                      linger_s) for n in nodes}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last = clock()

    # -- queries (thread-safe) -------------------------------------------------
    def record(self, uid: str) -> PodRecord | None:
        with self._lock:
            for ns in self.nodes.values():
                rec = ns.pods.get(uid) or ns.finished.get(uid)
                if rec is not None:
                    return PodRecord(rec.load, rec.gpu_indices, rec.started, rec.ended,
                                     dict(rec.joules))
        return None

    def joules(self, uid: str) -> dict[str, float]:
        """Exact simulated joules of a pod by component (``{}`` if never seen running)."""
        rec = self.record(uid)
        return dict(rec.joules) if rec else {}

    # -- driving ----------------------------------------------------------------
    def observe(self, pod: Mapping[str, Any]) -> dict[str, str] | None:
        """Apply one pod state (from the watch, or a test). Returns container name -> runtime
        id when the pod just started running here (the caller posts them, like a kubelet)."""
        node = (pod.get("spec") or {}).get("nodeName")
        sim = self.nodes.get(node or "")
        if sim is None:
            return None
        phase = (pod.get("status") or {}).get("phase")
        uid = pod["metadata"]["uid"]
        deleted = pod["metadata"].get("deletionTimestamp") is not None
        with self._lock:
            now = self.clock()
            if phase == "Running" and not deleted:
                return sim.start_pod(pod_load(pod), now)
            if phase in ("Succeeded", "Failed") or deleted:
                sim.end_pod(uid, now)
        return None

    def forget(self, uid: str) -> None:
        """The pod object is gone: end it wherever it ran."""
        with self._lock:
            now = self.clock()
            for sim in self.nodes.values():
                sim.end_pod(uid, now)

    def tick(self) -> None:
        with self._lock:
            now = self.clock()
            dt, self._last = now - self._last, now
            for sim in self.nodes.values():
                sim.tick(dt, now)

    def start(self) -> None:
        self._last = self.clock()
        for target, name in ((self._watch_loop, "sim-watch"), (self._tick_loop, "sim-tick")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception:  # keep ticking; the log says what broke
                log.exception("simulator tick failed")

    def _watch_loop(self) -> None:
        """List once, then watch from the last resourceVersion seen, re-listing only when the
        apiserver says it is too old (410) or the connection broke. Re-listing every time a
        watch times out left a gap in which a short pod could start and end unseen, and such a
        pod never got a simulated cgroup."""
        from kubernetes import client, watch

        from .kube import api_client

        while not self._stop.is_set():
            try:
                with api_client(self.kubeconfig) as api:
                    core = client.CoreV1Api(api)
                    pods = core.list_pod_for_all_namespaces()
                    for p in pods.items:
                        obj = api.sanitize_for_serialization(p)
                        post_container_ids(core, obj, self.observe(obj))
                    rv = pods.metadata.resource_version if pods.metadata else None
                    while not self._stop.is_set():
                        rv = self._watch_from(core, watch.Watch(), rv)  # type: ignore[no-untyped-call]
            except Exception as err:  # the apiserver may be restarting, or rv expired (410)
                if self._stop.is_set():
                    return
                log.warning("pod watch failed (%s); listing again", err)
                self._stop.wait(0.5)

    def _watch_from(self, core: Any, w: Any, rv: str | None) -> str | None:
        """One watch request from ``rv``; returns the last resourceVersion it saw."""
        for ev in w.stream(
            core.list_pod_for_all_namespaces, resource_version=rv, allow_watch_bookmarks=True,
            timeout_seconds=30, _request_timeout=35, deserialize=False,
        ):
            if self._stop.is_set():
                w.stop()
                break
            obj = ev["object"]
            rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
            if ev["type"] == "BOOKMARK":
                continue
            if ev["type"] == "DELETED":
                self.forget(obj["metadata"]["uid"])
            else:
                post_container_ids(core, obj, self.observe(obj))
        return rv


def container_statuses_with_ids(
    pod: Mapping[str, Any], ids: Mapping[str, str], runtime: str = "containerd"
) -> list[dict[str, Any]]:
    """The pod's containerStatuses with ``containerID`` set from the fake cgroup tree's ids."""
    out = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        cs = dict(cs)
        if cs.get("name") in ids:
            cs["containerID"] = f"{runtime}://{ids[cs['name']]}"
        out.append(cs)
    return out


def post_container_ids(core: Any, pod: Mapping[str, Any], ids: Mapping[str, str] | None) -> None:
    """Post a started pod's container ids to its status, as the kubelet does: the exporter
    names a cgroup's container through them. containerStatuses has no merge key, so the
    whole list is sent back with the ids filled in."""
    if not ids:
        return
    meta = pod["metadata"]
    body = {"status": {"containerStatuses": container_statuses_with_ids(pod, ids)}}
    try:
        core.patch_namespaced_pod_status(meta["name"], meta["namespace"], body)
    except Exception as err:  # the pod may be gone already; the exporter then says "POD"
        log.warning("cannot post container ids of %s/%s: %s", meta["namespace"], meta["name"], err)
