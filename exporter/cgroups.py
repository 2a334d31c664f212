"""Kubernetes containers from the cgroup tree (v1 and v2, systemd and cgroupfs drivers).

Only the kubelet's subtree (``kubepods.slice`` / ``kubepods``) is walked, so ``system.slice``,
``user.slice`` and containers started outside Kubernetes are never attributed to a pod: their
CPU time shows up only in the root's total and its energy stays unallocated.

Layouts recognised (design notes §3)::

    v2 systemd : kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<UID_>.slice/<rt>-<id>.scope
    v2 cgroupfs: kubepods/<qos>/pod<UID>/<id>              (CRI-O: crio-<id>, crio-conmon-<id>)
    guaranteed : the pod directory sits directly under the kubepods root
    v1         : the same paths under cpu,cpuacct/ (cpuacct.usage, ns) and memory/

A CRI-O ``crio-conmon-<id>`` cgroup holds the monitor of container ``<id>``; its CPU time is
charged to that container (it exists only to run it). Parsed names are cached, so a cycle does
one ``scandir`` per directory and one small read per container.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_POD_RE = re.compile(
    r"^(?:kubepods(?:-(burstable|besteffort))?-)?pod([0-9a-fA-F_-]{36})(?:\.slice)?$"
)
_CTR_RE = re.compile(
    r"^(?:(cri-containerd|crio-conmon|crio|docker|cri-o)-)?([0-9a-f]{64})(?:\.scope)?$"
)
_QOS_DIRS = {
    "kubepods-burstable.slice": "burstable",
    "kubepods-besteffort.slice": "besteffort",
    "burstable": "burstable",
    "besteffort": "besteffort",
}
_KUBE_ROOTS = ("kubepods.slice", "kubepods")
_V1_CPU = ("cpu,cpuacct", "cpuacct,cpu", "cpuacct")


@dataclass(frozen=True)
class ContainerCgroup:
    """One container cgroup. ``conmon`` marks a CRI-O monitor cgroup of container ``id``."""

    pod_uid: str
    qos: str  # guaranteed | burstable | besteffort
    id: str  # 64-hex runtime id
    runtime: str  # containerd | crio | docker | "" (cgroupfs bare id)
    conmon: bool
    cpu_file: bytes  # path of cpu.stat (v2) or cpuacct.usage (v1)
    memory_file: bytes  # memory.current (v2) or memory.usage_in_bytes (v1)
    dir: bytes


@dataclass(frozen=True)
class Usage:
    """Cumulative CPU seconds per container cgroup and for the whole machine (root)."""

    root_cpu_s: float | None
    containers: dict[ContainerCgroup, float]


class CgroupReader:
    """Discovers container cgroups and reads their cumulative CPU time.

    ``cgroup_root`` is ``<sysfs>/fs/cgroup``. The version is detected once: v2 when the root
    has ``cgroup.controllers``, else v1 (the ``cpu,cpuacct`` and ``memory`` hierarchies).
    """

    def __init__(self, cgroup_root: Path) -> None:
        self.root = Path(cgroup_root)
        if (self.root / "cgroup.controllers").exists():
            self.version = 2
            self._cpu_root = self.root
            self._mem_root = self.root
        else:
            self.version = 1
            cpu = next((self.root / n for n in _V1_CPU if (self.root / n).is_dir()), None)
            self._cpu_root = cpu if cpu is not None else self.root / "cpu,cpuacct"
            self._mem_root = self.root / "memory"
        self._cpu_name = b"cpu.stat" if self.version == 2 else b"cpuacct.usage"
        self._mem_name = b"memory.current" if self.version == 2 else b"memory.usage_in_bytes"
        self._root_file = os.fsencode(self._cpu_root) + b"/" + self._cpu_name
        # name -> parsed entry (None: not ours); names are immutable, so this never goes stale
        self._pod_cache: dict[str, tuple[str, str | None] | None] = {}
        self._ctr_cache: dict[tuple[bytes, str], ContainerCgroup | None] = {}
        self._old_pods = self._pod_cache
        self._old_ctrs = self._ctr_cache

    def exists(self) -> bool:
        return self._cpu_root.is_dir()

    # -- discovery ------------------------------------------------------------
    def discover(self) -> list[ContainerCgroup]:
        """All container cgroups under the kubelet's subtree now. Missing trees give []."""
        kube = next((self._cpu_root / n for n in _KUBE_ROOTS if (self._cpu_root / n).is_dir()),
                     None)
        if kube is None:
            return []
        out: list[ContainerCgroup] = []
        # rebuilt every cycle from what still exists: memory stays bounded under pod churn
        self._old_pods, self._pod_cache = self._pod_cache, {}
        self._old_ctrs, self._ctr_cache = self._ctr_cache, {}
        for entry in _scandir_dirs(os.fsencode(kube)):
            name = os.fsdecode(entry.name)
            qos = _QOS_DIRS.get(name)
            if qos is not None:
                for pod_entry in _scandir_dirs(entry.path):
                    self._pod(pod_entry, qos, out)
            else:
                self._pod(entry, "guaranteed", out)
        return out

    def _pod(self, entry: os.DirEntry[bytes], qos: str, out: list[ContainerCgroup]) -> None:
        name = os.fsdecode(entry.name)
        parsed = self._old_pods.get(name, ("", None))
        if parsed == ("", None):
            m = _POD_RE.match(name)
            parsed = (m.group(2).replace("_", "-").lower(), m.group(1)) if m else None
        self._pod_cache[name] = parsed
        if parsed is None:
            return
        uid = parsed[0]
        for ctr_entry in _scandir_dirs(entry.path):
            key = (entry.path, os.fsdecode(ctr_entry.name))
            c = self._old_ctrs.get(key, _MISSING)
            if c is _MISSING:
                c = self._parse_container(uid, qos, ctr_entry)
            self._ctr_cache[key] = c
            if c is not None:
                out.append(c)

    def _parse_container(
        self, uid: str, qos: str, entry: os.DirEntry[bytes]
    ) -> ContainerCgroup | None:
        m = _CTR_RE.match(os.fsdecode(entry.name))
        if m is None:
            return None
        prefix = m.group(1) or ""
        runtime = {"cri-containerd": "containerd", "crio-conmon": "crio", "cri-o": "crio"}.get(
            prefix, prefix
        )
        rel = os.path.relpath(entry.path, os.fsencode(self._cpu_root))
        mem_dir = os.fsencode(self._mem_root) + b"/" + rel
        return ContainerCgroup(
            pod_uid=uid,
            qos=qos,
            id=m.group(2),
            runtime=runtime,
            conmon=prefix == "crio-conmon",
            cpu_file=entry.path + b"/" + self._cpu_name,
            memory_file=mem_dir + b"/" + self._mem_name,
            dir=entry.path,
        )

    # -- reading --------------------------------------------------------------
    def read(self, cgroups: list[ContainerCgroup]) -> Usage:
        """Cumulative CPU seconds of each cgroup that still exists, and of the root."""
        parse = _parse_v2_usage if self.version == 2 else _parse_v1_usage
        out: dict[ContainerCgroup, float] = {}
        for c in cgroups:
            raw = _read_small(c.cpu_file)
            if raw is not None:
                v = parse(raw)
                if v is not None:
                    out[c] = v
        raw = _read_small(self._root_file)
        root = parse(raw) if raw is not None else None
        return Usage(root, out)

    def memory_bytes(self, c: ContainerCgroup) -> int | None:
        raw = _read_small(c.memory_file)
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None

    def cpu_request_cores(self, c: ContainerCgroup) -> float | None:
        """The CPU request the kubelet encoded in cpu.weight (v2) / cpu.shares (v1).

        shares = request millicores * 1024 / 1000 (floor 2 = none); runc maps shares to
        weight as 1 + (shares - 2) * 9999 / 262142. Inverting loses < 1 % to rounding.
        """
        if self.version == 2:
            raw = _read_small(c.dir + b"/cpu.weight")
            if raw is None:
                return None
            weight = int(raw)
            shares = 2 + (weight - 1) * 262142 / 9999
        else:
            raw = _read_small(c.dir + b"/cpu.shares")
            if raw is None:
                return None
            shares = int(raw)
        return 0.0 if shares <= 2.5 else shares / 1024

    def first_pid(self, c: ContainerCgroup) -> int | None:
        raw = _read_small(c.dir + b"/cgroup.procs")
        if not raw:
            return None
        try:
            return int(raw.split(b"\n", 1)[0])
        except ValueError:
            return None


_MISSING: ContainerCgroup | None = ContainerCgroup("", "", "", "", False, b"", b"", b"")


def _scandir_dirs(path: bytes) -> list[os.DirEntry[bytes]]:
    try:
        with os.scandir(path) as it:
            return [e for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:  # removed between listing and reading: the pod just finished
        return []


def _read_small(path: bytes) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)


def _parse_v2_usage(raw: bytes) -> float | None:
    # cpu.stat starts with "usage_usec N"; search rather than assume the order
    i = raw.find(b"usage_usec ")
    if i < 0:
        return None
    j = raw.find(b"\n", i)
    return int(raw[i + 11 : j if j >= 0 else None]) / 1e6


def _parse_v1_usage(raw: bytes) -> float | None:
    try:
        return int(raw) / 1e9
    except ValueError:
        return None
