"""Recovering the host from a real node whose harness was killed (SIGKILL, a crash).

While a real node runs, its host snapshot, what it owns and the pids of its kubelet and
containerd are recorded in ``<cache>/realnode-record.json``; a clean stop deletes the file.
kubelet and containerd run in sessions of their own, so they outlive a killed harness; the
next real node start (or ``python -m carbontrack.devcluster down``) finds the record, stops
them and undoes the host changes with the same :func:`hostchanges.restore` as a clean stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import hostchanges
from .hostchanges import CGROUP_ROOT, KUBEPODS, HostState, Owned


@dataclass(frozen=True)
class NodeRecord:
    before: HostState
    raw_iptables: dict[str, str]
    owned: Owned
    socket: str  # containerd's, named in its shims' argv
    pids: dict[str, int]  # "kubelet" / "containerd" -> pid


def record_path() -> Path:
    from .binaries import cache_dir

    return cache_dir() / "realnode-record.json"


def to_json(r: NodeRecord) -> str:
    return json.dumps(asdict(r))


def from_json(text: str) -> NodeRecord:
    d: dict[str, Any] = json.loads(text)
    b = d["before"]
    before = HostState(
        mounts=tuple((m, p) for m, p in b["mounts"]), links=tuple(b["links"]),
        iptables=b["iptables"], cgroups=tuple(b["cgroups"]), sysctls=b["sysctls"],
        paths=b["paths"], ipsets=tuple(b.get("ipsets", ())),
    )
    o = d["owned"]
    owned = Owned(tuple(o["mount_prefixes"]), tuple(o["propagation_roots"]),
                  tuple(o["link_prefixes"]), tuple(o.get("ipset_prefixes", ())))
    return NodeRecord(before, d["raw_iptables"], owned, d["socket"], d["pids"])


def write_record(path: Path, r: NodeRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(to_json(r))
    tmp.replace(path)


def _cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def shim_pids(socket_path: str) -> list[int]:
    """containerd's shims leave its process group; they name its socket in argv."""
    out = []
    for d in list(Path("/proc").iterdir()):
        if d.name.isdigit():
            argv = _cmdline(int(d.name))
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and socket_path.encode() in argv:
                out.append(int(d.name))
    return out


def kubepods_pids(cgroup_root: Path = CGROUP_ROOT) -> set[int]:
    """Every pid in a kubepods cgroup of any hierarchy.

    The kubelet and runc remove cgroups while this walks them (a container's cgroup is
    gone within 0.3 s of its exit), so a directory that vanishes mid-walk is skipped:
    ``os.walk`` ignores scandir errors, where ``Path.rglob`` on Python 3.11 raises
    FileNotFoundError and would abort the whole teardown."""
    pids: set[int] = set()
    try:
        hierarchies = list(cgroup_root.iterdir())
    except OSError:
        return pids
    for hierarchy in hierarchies:
        for dirpath, _dirs, files in os.walk(hierarchy / KUBEPODS):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError, ValueError):
                    pids |= {int(x) for x in Path(dirpath, "cgroup.procs").read_text().split()}
    return pids


def kill_pods(socket_path: str, cgroup_root: Path = CGROUP_ROOT) -> None:
    """SIGKILL every process in the kubepods cgroups, then the shims of ``socket_path``."""
    shims = shim_pids(socket_path)
    for _ in range(50):
        pids = kubepods_pids(cgroup_root)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    for pid in shims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def recover(path: Path) -> list[str]:
    """Undo a killed real node recorded at ``path``; [] (and the record deleted) on success,
    else what is left. No record: nothing to do."""
    try:
        r = from_json(path.read_text())
    except FileNotFoundError:
        return []
    # kube-router first: it would re-create its rules while they are being undone
    for name in ("kube-router", "kubelet", "containerd"):  # only if the pid is still that program
        pid = r.pids.get(name)
        if pid and any(a.endswith(name.encode()) for a in _cmdline(pid)[:1]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if name == "kubelet":
            kill_pods(r.socket)
    deadline = time.monotonic() + 10
    while any(_cmdline(p) for p in r.pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    problems = hostchanges.restore(r.before, r.owned, r.raw_iptables)
    if not problems:
        path.unlink(missing_ok=True)
    return problems
