"""A fake Linux cgroup tree as the kubelet and a container runtime leave it: ``<sysfs>/fs/cgroup``.

Covers the layouts the exporter must recognise (docs/exporter.md, exporter/cgroups.py):

- cgroup v2 (one unified hierarchy, ``cpu.stat`` ``usage_usec``, ``memory.current``,
  ``cpu.weight``) and v1 (the same paths under ``cpu,cpuacct/`` with ``cpuacct.usage`` in ns
  and ``cpu.shares``, and under ``memory/`` with ``memory.usage_in_bytes``);
- the systemd driver (``kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<UID>.slice``,
  UID dashes as underscores) and the cgroupfs driver (``kubepods/burstable/pod<UID>``);
  guaranteed pods sit directly under the kubepods root;
- containerd (``cri-containerd-<id>.scope`` / bare ``<id>``), CRI-O (``crio-<id>.scope`` plus a
  ``crio-conmon-<id>.scope`` monitor) and Docker (``docker-<id>.scope`` / bare ``<id>``);
- a pause/sandbox container per pod whose process runs ``/pause`` (its ``cmdline`` is written
  under the procfs root when one is given);
- non-Kubernetes cgroups: ``system.slice`` (with a Docker container that is *not* a pod) and
  ``user.slice``.

The root's CPU usage is the sum of every cgroup ever created, removed ones included, like
the kernel's hierarchical ``cpu.stat``; ``advance_cpu`` keeps it consistent.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from carbontrack.core.cpu_shares import kubelet_shares, linear_weight, quadratic_weight

from ._atomic import write_atomic
from .procfs import write_pid_cgroup

QOS_CLASSES = ("guaranteed", "burstable", "besteffort")
RUNTIMES = ("containerd", "crio", "docker")
DRIVERS = ("systemd", "cgroupfs")


def container_id(seed: str) -> str:
    """A deterministic 64-hex container id (what runtimes use) from any string."""
    return hashlib.sha256(seed.encode()).hexdigest()


WEIGHT_MAPS = ("quadratic", "linear")


def cpu_stat_v2_text(usec: int) -> str:
    """A v2 ``cpu.stat`` with ``usec`` of CPU time, 70 % of it user time."""
    return (f"usage_usec {usec}\nuser_usec {usec * 7 // 10}\n"
            f"system_usec {usec - usec * 7 // 10}\n")


def shares_for_request(cpu_cores: float) -> int:
    """cpu.shares the kubelet sets for a CPU request (2 is its floor, for besteffort)."""
    return kubelet_shares(cpu_cores)


def weight_for_shares(shares: int, weight_map: str = "quadratic") -> int:
    """The v2 ``cpu.weight`` the runtime derives from the kubelet's shares: ``quadratic``
    for runc >= 1.3.2 / crun >= 1.23, ``linear`` for older ones (carbontrack.core.cpu_shares)."""
    return quadratic_weight(shares) if weight_map == "quadratic" else linear_weight(shares)


@dataclass
class FakeContainer:
    id: str
    name: str
    cpu_request_cores: float = 0.0
    memory_bytes: int = 0
    pid: int = 0
    pause: bool = False
    cpu_usec: int = 0
    conmon_cpu_usec: int = 0
    dirs: list[Path] = field(default_factory=list)  # one per v1 controller, one on v2
    conmon_dirs: list[Path] = field(default_factory=list)


@dataclass
class FakePod:
    uid: str
    qos: str
    containers: dict[str, FakeContainer]  # by name; the sandbox is "POD"
    dirs: list[Path]


class FakeCgroupTree:
    """Writer for a fake ``<sysfs>/fs/cgroup``. One runtime and one driver per node, like a
    real node. ``procfs_root`` (optional) receives ``<pid>/cmdline`` for container processes."""

    def __init__(
        self,
        sysfs_root: Path,
        *,
        version: int = 2,
        driver: str = "systemd",
        runtime: str = "containerd",
        procfs_root: Path | None = None,
        weight_map: str = "quadratic",
    ) -> None:
        if version not in (1, 2):
            raise ValueError(f"cgroup version must be 1 or 2, not {version!r}")
        if driver not in DRIVERS:
            raise ValueError(f"driver must be one of {DRIVERS}, not {driver!r}")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
        if weight_map not in WEIGHT_MAPS:
            raise ValueError(f"weight_map must be one of {WEIGHT_MAPS}, not {weight_map!r}")
        self.weight_map = weight_map  # the runtime's shares -> cpu.weight map (v2)
        self.root = Path(sysfs_root) / "fs" / "cgroup"
        self.version, self.driver, self.runtime = version, driver, runtime
        self.procfs_root = procfs_root
        self.pods: dict[str, FakePod] = {}
        self._next_pid = 1000
        self._root_usec = 0
        self._system_usec = 0
        self._controllers = [""] if version == 2 else ["cpu,cpuacct", "memory"]
        for ctl in self._controllers:
            (self.root / ctl).mkdir(parents=True, exist_ok=True)
        if version == 2:
            write_atomic(self.root / "cgroup.controllers", "cpuset cpu io memory pids\n")
        self._write_root()
        self._make_system_slices()

    # -- building -------------------------------------------------------------
    def add_pod(
        self,
        uid: str,
        qos: str = "burstable",
        containers: dict[str, tuple[float, int]] | None = None,
    ) -> FakePod:
        """Add a pod with a pause sandbox and ``containers`` (name -> (cpu request cores,
        memory bytes)). Returns the pod; container ids derive from uid and name."""
        if qos not in QOS_CLASSES:
            raise ValueError(f"qos must be one of {QOS_CLASSES}, not {qos!r}")
        pod_rel = self._pod_rel(uid, qos)
        pod = FakePod(uid, qos, {}, [self.root / ctl / pod_rel for ctl in self._controllers])
        for d in pod.dirs:
            d.mkdir(parents=True, exist_ok=True)
        self.pods[uid] = pod
        self._add_container(pod, "POD", 0.0, 0, pause=True)
        for name, (cores, mem) in (containers or {"main": (1.0, 1 << 30)}).items():
            self._add_container(pod, name, cores, mem)
        return pod

    def add_container(self, uid: str, name: str, cpu_cores: float, memory_bytes: int) -> str:
        """Add a container to an existing pod (a restart gets a new id); return its id."""
        return self._add_container(self.pods[uid], name, cpu_cores, memory_bytes).id

    def remove_container(self, uid: str, name: str) -> None:
        c = self.pods[uid].containers.pop(name)
        for d in [*c.dirs, *c.conmon_dirs]:
            shutil.rmtree(d, ignore_errors=True)

    def remove_pod(self, uid: str) -> None:
        """The pod finished: its cgroups go away (its CPU time stays in the root's total)."""
        pod = self.pods.pop(uid)
        for d in pod.dirs:
            shutil.rmtree(d, ignore_errors=True)

    # -- driving --------------------------------------------------------------
    def advance_cpu(self, uid: str, name: str, seconds: float, conmon_seconds: float = 0.0) -> None:
        """Charge CPU time to a container (and its CRI-O conmon), and to the root."""
        c = self.pods[uid].containers[name]
        usec = round(seconds * 1e6)
        c.cpu_usec += usec
        self._write_cpu(c.dirs, c.cpu_usec)
        if conmon_seconds:
            if not c.conmon_dirs:
                raise ValueError(f"runtime {self.runtime} has no conmon cgroup")
            cu = round(conmon_seconds * 1e6)
            c.conmon_cpu_usec += cu
            self._write_cpu(c.conmon_dirs, c.conmon_cpu_usec)
            usec += cu
        self._root_usec += usec
        self._write_root()

    def advance_system(self, seconds: float) -> None:
        """CPU time of non-pod work (system.slice daemons, users): root only, never a pod."""
        usec = round(seconds * 1e6)
        self._system_usec += usec
        self._root_usec += usec
        self._write_cpu([self.root / self._controllers[0] / "system.slice"], self._system_usec)
        self._write_root()

    def set_memory(self, uid: str, name: str, memory_bytes: int) -> None:
        c = self.pods[uid].containers[name]
        c.memory_bytes = memory_bytes
        self._write_memory(c.dirs, memory_bytes)

    @property
    def root_cpu_seconds(self) -> float:
        return self._root_usec / 1e6

    def container_dir(self, uid: str, name: str) -> Path:
        """The container's cgroup directory (the cpu controller's on v1)."""
        return self.pods[uid].containers[name].dirs[0]

    # -- internals ------------------------------------------------------------
    def _pod_rel(self, uid: str, qos: str) -> str:
        if self.driver == "systemd":
            u = uid.replace("-", "_")
            if qos == "guaranteed":
                return f"kubepods.slice/kubepods-pod{u}.slice"
            return f"kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{u}.slice"
        if qos == "guaranteed":
            return f"kubepods/pod{uid}"
        return f"kubepods/{qos}/pod{uid}"

    def _container_leaf(self, cid: str, conmon: bool = False) -> str:
        if self.driver == "systemd":
            prefix = {"containerd": "cri-containerd", "crio": "crio", "docker": "docker"}
            p = "crio-conmon" if conmon else prefix[self.runtime]
            return f"{p}-{cid}.scope"
        if self.runtime == "crio":
            return f"crio-conmon-{cid}" if conmon else f"crio-{cid}"
        return cid

    def _add_container(
        self, pod: FakePod, name: str, cores: float, mem: int, pause: bool = False
    ) -> FakeContainer:
        cid = container_id(f"{pod.uid}/{name}/{self._next_pid}")
        self._next_pid += 1
        c = FakeContainer(cid, name, cores, mem, self._next_pid, pause)
        c.dirs = [d / self._container_leaf(cid) for d in pod.dirs]
        if self.runtime == "crio":
            c.conmon_dirs = [d / self._container_leaf(cid, conmon=True) for d in pod.dirs]
        for d in [*c.dirs, *c.conmon_dirs]:
            d.mkdir(parents=True, exist_ok=True)
            write_atomic(d / "cgroup.procs", f"{c.pid}\n")
        self._write_cpu(c.dirs, 0)
        self._write_cpu(c.conmon_dirs, 0)
        self._write_memory(c.dirs, mem)
        shares = shares_for_request(cores)
        cpu_dir = c.dirs[0]  # v2: the only dir; v1: the cpu,cpuacct one
        if self.version == 2:
            write_atomic(cpu_dir / "cpu.weight", f"{weight_for_shares(shares, self.weight_map)}\n")
        else:
            write_atomic(cpu_dir / "cpu.shares", f"{shares}\n")
        if self.procfs_root is not None:
            argv = ["/pause"] if pause else [f"/usr/bin/{name}", "--serve"]
            write_atomic(self.procfs_root / str(c.pid) / "cmdline", "\0".join(argv) + "\0")
            rel = "/" + str(cpu_dir.relative_to(self.root / self._controllers[0]))
            ctls = None if self.version == 2 else ["cpu,cpuacct", "memory"]
            write_pid_cgroup(self.procfs_root, c.pid, rel, v1_controllers=ctls)
        pod.containers[name] = c
        return c

    def _write_cpu(self, dirs: list[Path], usec: int) -> None:
        # v1 dirs come in controller order (cpu,cpuacct first, memory second): cpu files
        # go to the first only; on v2 there is one dir
        for d in dirs[:1]:
            if self.version == 2:
                write_atomic(d / "cpu.stat", cpu_stat_v2_text(usec))
            else:
                write_atomic(d / "cpuacct.usage", f"{usec * 1000}\n")

    def _write_memory(self, dirs: list[Path], mem: int) -> None:
        if self.version == 2:
            write_atomic(dirs[0] / "memory.current", f"{mem}\n")
        else:
            write_atomic(dirs[1] / "memory.usage_in_bytes", f"{mem}\n")

    def _write_root(self) -> None:
        self._write_cpu([self.root / self._controllers[0]], self._root_usec)

    def _make_system_slices(self) -> None:
        """systemd's own slices, with a plain Docker container that is not a pod."""
        for ctl in self._controllers:
            base = self.root / ctl
            stray = container_id("not-a-pod")
            for rel in (
                "system.slice/containerd.service",
                f"system.slice/docker-{stray}.scope",
                "user.slice/user-1000.slice/session-1.scope",
            ):
                (base / rel).mkdir(parents=True, exist_ok=True)
        self._write_cpu([self.root / self._controllers[0] / "system.slice"], 0)
