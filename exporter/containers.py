"""Which container each cgroup and GPU process is, and its CPU time this interval.

Per container cgroup a track keeps its ledger key (``(pod uid, container name)``), whether
that label is final, its last CPU counter and a stagger so rare reads spread over cycles.
Part of the reading pass: labelling a new cgroup reads its first process's cmdline (is it
the pause sandbox?), mapping a GPU process reads /proc/<pid>/cgroup — once per new one.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .cgroups import CgroupReader, ContainerCgroup, container_from_cgroup_path
from .pods import PodCache, PodMeta
from .state import ContainerKey, Ledger, Owner

log = logging.getLogger("carbontrack.exporter")

POD_SANDBOX = "POD"  # kubelet's name for the pause/sandbox container
SANDBOX_READ_CYCLES = 12


@dataclass(slots=True)
class _Track:
    key: ContainerKey
    final: bool
    sandbox: bool
    prev: float | None
    stagger: int


class ContainerTracker:
    def __init__(self, cgroups: CgroupReader, pods: PodCache, procfs_root: Path, *,
                 kube: bool, sandbox_read_cycles: int = SANDBOX_READ_CYCLES) -> None:
        self.cgroups = cgroups
        self.pods = pods
        self.procfs = Path(procfs_root)
        self.kube = kube
        self.sandbox_read_cycles = sandbox_read_cycles
        self.tracks: dict[ContainerCgroup, _Track] = {}
        self._pid_keys: dict[int, ContainerKey | None] = {}
        # (ledger, its structure version, pod cache generation) at the last late-label pass
        self._late_stamp: tuple[Ledger, int, int] | None = None

    def to_read(self, cgs: list[ContainerCgroup], seq: int) -> list[ContainerCgroup]:
        """Cgroups to read this cycle: all but the pause sandboxes, which are read every
        ``sandbox_read_cycles`` cycles (staggered). A pause process uses next to no CPU; its
        counter keeps what it used, so the skipped time is attributed when next read."""
        tracks = self.tracks
        out = []
        for cg in cgs:
            tr = tracks.get(cg)
            if (tr is None or not tr.sandbox or tr.prev is None
                    or (seq + tr.stagger) % self.sandbox_read_cycles == 0):
                out.append(cg)
        return out

    def usage_deltas(self, cgs: list[ContainerCgroup], cur: Mapping[ContainerCgroup, float],
                     first: bool
                     ) -> tuple[dict[ContainerKey, float], dict[ContainerKey, ContainerCgroup]]:
        """CPU seconds per container this interval, and the cgroup of each container present.
        A container first seen after the baseline started at zero inside the interval, so
        all of its usage is this interval's."""
        old = self.tracks
        tracks: dict[ContainerCgroup, _Track] = {}
        deltas: dict[ContainerKey, float] = {}
        present: dict[ContainerKey, ContainerCgroup] = {}
        for cg in cgs:
            tr = old.get(cg)
            v = cur.get(cg)
            if v is None:
                if tr is None or not tr.sandbox or tr.prev is None:
                    continue  # vanished between listing and reading
                v = tr.prev  # a sandbox not read this cycle: no new usage yet
            if tr is None or not tr.final:
                label, final = self._label(cg)
                prev = tr.prev if tr is not None else None
                # read rarely only if surely a sandbox: a container counted as POD until its
                # status is posted is read every cycle, or a short pod's CPU time would be
                # read after its cgroup is gone (lost to unallocated)
                tr = _Track((cg.pod_uid, label), final, final and label == POD_SANDBOX, prev,
                            hash(cg.id) % SANDBOX_READ_CYCLES)
            p = tr.prev
            d = (v - p if v >= p else v) if p is not None else (0.0 if first else v)
            tr.prev = v
            tracks[cg] = tr
            key = tr.key
            deltas[key] = deltas.get(key, 0.0) + d
            if not cg.conmon or key not in present:
                present[key] = cg
        self.tracks = tracks  # bounded by live cgroups
        return deltas, present

    def _label(self, cg: ContainerCgroup) -> tuple[str, bool]:
        """Container label and whether it is final: POD for the pause sandbox, the kube name,
        else (no API, or the pod not yet in the watch cache) the short runtime id."""
        meta = self.pods.get(cg.pod_uid)
        if meta is not None and cg.id in meta.container_ids:
            return meta.container_ids[cg.id], True
        if self._is_pause(cg):
            return POD_SANDBOX, True
        if meta is not None and self.kube:
            # a known pod's id missing from its statuses is its sandbox (or a container
            # whose status has not been posted yet: look again next cycle)
            return POD_SANDBOX, False
        return cg.id[:12], not self.kube

    def _is_pause(self, cg: ContainerCgroup) -> bool:
        pid = self.cgroups.first_pid(cg)
        if pid is None:
            return False
        try:
            raw = (self.procfs / str(pid) / "cmdline").read_bytes()
        except OSError:
            return False
        argv0 = raw.split(b"\0", 1)[0]
        return argv0.rsplit(b"/", 1)[-1] == b"pause"

    def pid_keys(self, pids: Iterable[int]) -> dict[int, ContainerKey | None]:
        """The container of each GPU process (None: not a container's), from
        /proc/<pid>/cgroup, read once per PID while it lives."""
        known = self._pid_keys
        keys_by_id: dict[str, ContainerKey] | None = None
        out: dict[int, ContainerKey | None] = {}
        for pid in pids:
            if pid in out:
                continue
            if pid in known:
                out[pid] = known[pid]
                continue
            key = None
            try:
                text = (self.procfs / str(pid) / "cgroup").read_text(encoding="utf-8")
            except OSError:
                text = ""  # vanished between the GPU library's list and our read
            for line in text.splitlines():
                found = container_from_cgroup_path(line.split(":", 2)[-1])
                if found is not None:
                    uid, cid = found
                    if keys_by_id is None:  # built once per cycle, only if a PID is new
                        keys_by_id = {cg.id: tr.key for cg, tr in self.tracks.items()}
                    key = keys_by_id.get(cid, (uid, cid[:12]))
                    break
            out[pid] = key
        self._pid_keys = out  # the live PIDs only
        return out

    def label_late_pods(self, led: Ledger) -> dict[ContainerKey, ContainerKey]:
        """Give owner labels to ledger entries whose pod the watch delivered late.

        Under load the pod watch lags the cgroup tree: a short pod (a 2 s Job) can run, and
        even finish, before its metadata arrives. Its energy was recorded under
        ``(uid, <short runtime id>)`` (or ``(uid, POD)`` for its sandbox) with empty owner
        labels, and with no further energy (its CPU use has stopped) no labelled series
        would ever be created: the operator, which selects by ``owner_uid``, would find
        nothing. So once the pod is known, such an entry — live or finished — is moved to
        the key the container has now (its name from the pod's statuses, else ``POD``) with
        the pod's owner, added to that entry if it exists. Only entries without owner labels
        move: an owner-labelled series may already be summed by the operator, and moving it
        would count it twice. Returns old key -> new key of what moved."""
        if not self.kube:
            return {}
        last = self._late_stamp
        if (last is not None and last[0] is led and last[1] == led.structure_version
                and last[2] == self.pods.generation):
            return {}  # no new entries and no new metadata since the last look
        moves: dict[ContainerKey, tuple[ContainerKey, Owner]] = {}
        for key, t in led.containers.items():
            if t.owner.pod:
                continue  # labelled (the pod's name is always set from the API)
            meta = self.pods.get(key[0])
            if meta is None:
                continue  # still unknown: look again when the cache changes
            moves[key] = ((key[0], _name_for(key[1], meta)), meta.owner)
        for old, (new, owner) in moves.items():
            led.move(old, new, owner)
        if moves:
            self._pid_keys = {}  # GPU processes' keys may name a moved entry
            log.debug("labelled %d container series whose pod metadata arrived late",
                      len(moves))
        self._late_stamp = (led, led.structure_version, self.pods.generation)
        return {old: new for old, (new, _) in moves.items()}

    def live_cgroups(self) -> Collection[ContainerCgroup]:
        return self.tracks.keys()


def _name_for(label: str, meta: PodMeta) -> str:
    """The container name for a provisional label (a short runtime id): as ``_label`` would
    give it now that the pod is known."""
    if label == POD_SANDBOX or label in meta.requests or label in meta.container_ids.values():
        return label
    for cid, name in meta.container_ids.items():
        if cid.startswith(label):
            return name
    return POD_SANDBOX  # an id missing from the pod's statuses: its sandbox
