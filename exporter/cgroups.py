"""Kubernetes containers from the cgroup tree (v1 and v2, systemd and cgroupfs drivers).

Only the kubelet's subtree (``kubepods.slice`` / ``kubepods``) is walked, so ``system.slice``,
``user.slice`` and containers started outside Kubernetes are never attributed to a pod: their
CPU time shows up only in the root's total and its energy stays unallocated.

Layouts recognised (docs/exporter.md)::

    v2 systemd : kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<UID_>.slice/<rt>-<id>.scope
    v2 cgroupfs: kubepods/<qos>/pod<UID>/<id>              (CRI-O: crio-<id>, crio-conmon-<id>)
    guaranteed : the pod directory sits directly under the kubepods root
    v1         : the same paths under cpu,cpuacct/ (cpuacct.usage, ns) and memory/
    UID        : 36-character UUID (UID_: dashes as underscores), or a static pod's 32 hex digits

A CRI-O ``crio-conmon-<id>`` cgroup holds the monitor of container ``<id>``; its CPU time is
charged to that container (it exists only to run it). Parsed names are cached, so a cycle does
one ``scandir`` per directory and one small read per container.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .cpu_weight import CpuWeightMap, cores_from_shares

# The pod UID as the kubelet names the pod's cgroup: an API pod's UUID (36 characters; the
# systemd driver writes its dashes as underscores), or a static pod's, which the kubelet
# derives from an MD5 of the manifest as 32 hex digits without dashes (pkg/kubelet/config
# applyDefaults). Both are kept as the kubelet spells them, dashes restored and lower-cased.
_POD_RE = re.compile(
    r"^(?:kubepods(?:-(burstable|besteffort))?-)?pod([0-9a-fA-F_-]{36}|[0-9a-fA-F]{32})(?:\.slice)?$"
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
# a pod's container list is re-read every call for this many calls after the pod directory
# appeared (its containers' directories follow the pod's; see CgroupReader.discover)
YOUNG_POD_CYCLES = 8


@dataclass(frozen=True, eq=False)
class ContainerCgroup:
    """One container cgroup. ``conmon`` marks a CRI-O monitor cgroup of container ``id``.

    Compared and hashed by identity (eq=False): the reader returns the same object for a
    directory for as long as it exists, and identity hashing keeps the per-cycle dict work
    cheap; a re-created directory is a new container."""

    pod_uid: str
    qos: str  # guaranteed | burstable | besteffort
    id: str  # 64-hex runtime id
    runtime: str  # containerd | crio | docker | "" (cgroupfs bare id)
    conmon: bool
    cpu_file: bytes  # path of cpu.stat (v2) or cpuacct.usage (v1)
    memory_file: bytes  # memory.current (v2) or memory.usage_in_bytes (v1)
    dir: bytes
    # cpu_file relative to the CPU hierarchy's root: read() opens it relative to a directory
    # descriptor, so the kernel walks 3-4 path components instead of 8-10 per file
    cpu_rel: bytes = b""


# a pod directory: (uid, its container cgroups, them by directory name, call first seen)
_PodEntry = tuple[str, list["ContainerCgroup"], dict[bytes, "ContainerCgroup"], int]


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

    def __init__(self, cgroup_root: Path, rescan_cycles: int = 4) -> None:
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
        # cpu.shares lives in the cpu controller's hierarchy; where the kernel mounts cpu and
        # cpuacct apart (seen on the harness's real node: /sys/fs/cgroup/cpu and .../cpuacct)
        # the same relative path under "cpu" holds it
        separate = self.version == 1 and self._cpu_root.name == "cpuacct" and (self.root / "cpu").is_dir()
        self._shares_root_b = os.fsencode(self.root / "cpu") if separate else None
        self._cpu_name = b"cpu.stat" if self.version == 2 else b"cpuacct.usage"
        self._mem_name = b"memory.current" if self.version == 2 else b"memory.usage_in_bytes"
        self._root_file = os.fsencode(self._cpu_root) + b"/" + self._cpu_name
        self._cpu_root_b = os.fsencode(self._cpu_root)
        # pod dir -> (uid, its container cgroups, by dir name, cycle first seen); None: not
        # a pod directory
        self._pods: dict[bytes, _PodEntry | None] = {}
        self._cycle = 0
        self.rescan_cycles = max(1, rescan_cycles)

    def exists(self) -> bool:
        return self._cpu_root.is_dir()

    # -- discovery ------------------------------------------------------------
    def discover(self) -> list[ContainerCgroup]:
        """Container cgroups under the kubelet's subtree. Missing trees give [].

        Pod directories are listed every call; a known pod's container directories are
        re-listed every ``rescan_cycles`` calls (staggered across pods), a new pod's at once
        and then every call for its first ``YOUNG_POD_CYCLES`` calls: the runtime creates
        the pod's directory (and sandbox) before its containers', and a short pod (a 2-s
        Job) can be gone before a staggered rescan would find them. A container added to a
        running pod later (a restart) can so be found up to ``rescan_cycles`` calls late;
        its CPU counter starts at zero, so none of its usage is lost, only attributed in a
        later interval. Removed cgroups simply fail to read.
        """
        kube = next((self._cpu_root / n for n in _KUBE_ROOTS if (self._cpu_root / n).is_dir()),
                     None)
        if kube is None:
            return []
        self._cycle += 1
        out: list[ContainerCgroup] = []
        # rebuilt every cycle from what still exists: memory stays bounded under pod churn
        old, self._pods = self._pods, {}
        for entry in _scandir_dirs(os.fsencode(kube)):
            qos = _QOS_DIRS.get(os.fsdecode(entry.name))
            if qos is not None:
                for pod_entry in _scandir_dirs(entry.path):
                    self._pod(pod_entry, qos, old, out)
            else:
                self._pod(entry, "guaranteed", old, out)
        return out

    def _pod(self, entry: os.DirEntry[bytes], qos: str,
             old: dict[bytes, _PodEntry | None],
             out: list[ContainerCgroup]) -> None:
        path = entry.path
        known = old.get(path, _NOT_SEEN)
        if known is _NOT_SEEN:
            m = _POD_RE.match(os.fsdecode(entry.name))
            known = (m.group(2).replace("_", "-").lower(), [], {}, self._cycle) if m else None
            rescan = True
        else:
            rescan = ((known is not None and self._cycle - known[3] < YOUNG_POD_CYCLES)
                      or (self._cycle + hash(path)) % self.rescan_cycles == 0)
        self._pods[path] = known
        if known is None:
            return  # not a pod directory (remembered, so the regex runs once)
        uid, ctrs, by_name, _ = known
        if rescan:
            seen: dict[bytes, ContainerCgroup] = {}
            for ctr_entry in _scandir_dirs(path):
                c = by_name.get(ctr_entry.name)
                if c is None:
                    c = self._parse_container(uid, qos, ctr_entry)
                if c is not None:
                    seen[ctr_entry.name] = c
            by_name.clear()
            by_name.update(seen)
            ctrs[:] = seen.values()
        out.extend(ctrs)

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
        rel = os.path.relpath(entry.path, self._cpu_root_b)
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
            cpu_rel=rel + b"/" + self._cpu_name,
        )

    # -- reading --------------------------------------------------------------
    def read(self, cgroups: list[ContainerCgroup]) -> Usage:
        """Cumulative CPU seconds of each cgroup that still exists, and of the root.

        The hot loop of a cycle (one small file per container): inlined open/read/close and
        parse, no per-file function calls. Files are opened relative to a descriptor of the
        CPU hierarchy's root (opened once per call): the path walk is most of open()'s cost."""
        out: dict[ContainerCgroup, float] = {}
        try:
            root_fd = os.open(self._cpu_root_b, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            root_fd = -1  # no hierarchy: nothing to read (as every open would fail)
        if root_fd >= 0:
            try:
                self._read_cpu_files(cgroups, root_fd, out)
            finally:
                os.close(root_fd)
        raw_root = _read_small(self._root_file)
        parse = _parse_v2_usage if self.version == 2 else _parse_v1_usage
        root = parse(raw_root) if raw_root is not None else None
        return Usage(root, out)

    def _read_cpu_files(self, cgroups: list[ContainerCgroup], root_fd: int,
                        out: dict[ContainerCgroup, float]) -> None:
        open_, read_, close_, flags = os.open, os.read, os.close, os.O_RDONLY
        v2 = self.version == 2
        for c in cgroups:
            try:
                fd = open_(c.cpu_rel, flags, dir_fd=root_fd)
            except OSError:
                continue  # removed since discovery: the container finished
            try:
                raw = read_(fd, 512)
            except OSError:
                continue
            finally:
                close_(fd)
            if v2:
                i = raw.find(b"usage_usec ")
                if i < 0:
                    continue
                j = raw.find(b"\n", i)
                value = _counter(raw[i + 11 : j if j >= 0 else None])
                if value is not None:
                    out[c] = value / 1e6
            else:
                value = _counter(raw)
                if value is not None:
                    out[c] = value / 1e9

    def memory_bytes(self, c: ContainerCgroup) -> int | None:
        raw = _read_small(c.memory_file)
        return _counter(raw) if raw is not None else None

    def cpu_weight(self, c: ContainerCgroup) -> int | None:
        """The container's v2 ``cpu.weight`` (None on v1, or unreadable)."""
        if self.version != 2:
            return None
        raw = _read_small(c.dir + b"/cpu.weight")
        weight = _counter(raw) if raw is not None else None
        return weight if weight is not None and 1 <= weight <= 10000 else None  # the kernel's range

    def cpu_request_cores(self, c: ContainerCgroup, weights: CpuWeightMap | None = None) -> float | None:
        """The CPU request the kubelet encoded in cpu.weight (v2) / cpu.shares (v1): a
        fallback for when the pod spec is not available (exporter/cpu_weight.py).

        v1 shares are the kubelet's own value (exact). A v2 weight went through the
        runtime's shares->weight map, linear or quadratic by runtime version; ``weights``
        says which (default: the quadratic map of runc>=1.3.2 / crun>=1.23).
        """
        if self.version == 2:
            weight = self.cpu_weight(c)
            if weight is None:
                return None
            return (weights or CpuWeightMap()).cores(weight)
        directory = c.dir
        if self._shares_root_b is not None and directory.startswith(self._cpu_root_b):
            directory = self._shares_root_b + directory[len(self._cpu_root_b):]
        raw = _read_small(directory + b"/cpu.shares")
        shares = _counter(raw) if raw is not None else None
        return cores_from_shares(shares) if shares is not None else None

    def first_pid(self, c: ContainerCgroup) -> int | None:
        raw = _read_small(c.dir + b"/cgroup.procs")
        if not raw:
            return None
        return _counter(raw.split(b"\n", 1)[0])


def container_from_cgroup_path(path: str) -> tuple[str, str] | None:
    """(pod uid, container id) from a cgroup path as ``/proc/<pid>/cgroup`` gives it (same
    grammar as the tree walk), or None for a process outside Kubernetes' pods."""
    uid = None
    for part in path.split("/"):
        if not part:
            continue
        m = _POD_RE.match(part)
        if m:
            uid = m.group(2).replace("_", "-").lower()
            continue
        if uid is not None:
            c = _CTR_RE.match(part)
            if c:
                return uid, c.group(2)
    return None


_NOT_SEEN: _PodEntry | None = ("", [], {}, 0)


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
    value = _counter(raw[i + 11 : j if j >= 0 else None])
    return value / 1e6 if value is not None else None


def _parse_v1_usage(raw: bytes) -> float | None:
    value = _counter(raw)
    return value / 1e9 if value is not None else None


def _counter(raw: bytes) -> int | None:
    """A kernel counter: digits with optional surrounding whitespace. ``int()`` alone would
    also take "-5" (a negative CPU time) and "1_0"; None for anything but digits."""
    text = raw.strip()
    return int(text) if text.isdigit() else None
