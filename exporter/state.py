"""Durable counters: the ledger of totals and its atomic file in ``--state-dir``.

Prometheus counters must not go backwards when the exporter restarts (a DaemonSet rollout,
an OOM kill), or the operator's final per-Job sums would lose energy. The ledger holds every
exported total — node, unallocated, per container — and is written after each collection
cycle to ``<state-dir>/ledger.json`` via a temporary file and rename, so a crash of the
process leaves the previous or the new file, never half of one. Energy drawn while the exporter was down is
not attributable and is not invented.

Finished containers stay in the ledger (and exported) for the retention window so Prometheus
scrapes their final value, then are dropped: memory is bounded by live + recently finished.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import sys
from array import array
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("carbontrack.exporter.state")

FORMAT_VERSION = 2
FILE_NAME = "ledger.json"

ContainerKey = tuple[str, str]  # (pod_uid, container name)


@dataclass(frozen=True)
class Owner:
    """Pod identity labels; empty strings when unknown (``--no-kube``)."""

    namespace: str = ""
    pod: str = ""
    owner_kind: str = ""
    owner_name: str = ""
    owner_uid: str = ""


@dataclass
class ContainerTotals:
    owner: Owner
    joules: dict[tuple[str, str], float] = field(default_factory=dict)  # (component, method)
    grams: dict[tuple[str, str], float] = field(default_factory=dict)
    finished_at: float | None = None  # unix seconds when its cgroup was last seen gone
    # the same instant on this process's monotonic clock (retention is measured on it, so an
    # NTP step cannot cut the window short); not saved: after a restart the window restarts
    finished_mono: float | None = field(default=None, compare=False)


@dataclass
class Ledger:
    containers: dict[ContainerKey, ContainerTotals] = field(default_factory=dict)
    node: dict[tuple[str, str, str], float] = field(default_factory=dict)  # component, dev, meth
    unallocated: dict[str, float] = field(default_factory=dict)  # component
    # bumped on every change of *which* counters exist (not of their values): the saved
    # file's structure part is re-serialised only when it moves
    structure_version: int = field(default=0, compare=False)

    def add_node(self, component: str, device: str, method: str, joules: float) -> None:
        k = (component, device, method)
        if k not in self.node:
            self.structure_version += 1
            self.node[k] = 0.0
        self.node[k] += joules

    def add_unallocated(self, component: str, joules: float) -> None:
        if component not in self.unallocated:
            self.structure_version += 1
            self.unallocated[component] = 0.0
        self.unallocated[component] += joules

    def totals(self, key: ContainerKey, owner: Owner) -> ContainerTotals:
        """The container's totals, created on first use; a richer owner replaces an empty one
        (pod metadata can arrive after the first cycle)."""
        t = self.containers.get(key)
        if t is None:
            t = self.containers[key] = ContainerTotals(owner)
            self.structure_version += 1
        elif owner is not t.owner and owner != t.owner and owner != _NO_OWNER:
            t.owner = owner
            self.structure_version += 1
        return t

    def add(self, t: ContainerTotals, component: str, method: str, joules: float,
            grams: float | None) -> None:
        ck = (component, method)
        j = t.joules
        if ck in j:
            j[ck] += joules
        else:
            j[ck] = joules
            self.structure_version += 1
        if grams is not None:
            g = t.grams
            if ck in g:
                g[ck] += grams
            else:
                g[ck] = grams
                self.structure_version += 1

    def add_container(self, key: ContainerKey, owner: Owner, component: str, method: str,
                      joules: float, grams: float | None) -> None:
        self.add(self.totals(key, owner), component, method, joules, grams)

    def move(self, old: ContainerKey, new: ContainerKey, owner: Owner) -> None:
        """Move a container's totals to another key and owner (its pod's metadata arrived
        after the container's first energy), adding them to the target's if it exists:
        every joule stays in exactly one entry. The merged entry is finished only if both
        were (then at the later time)."""
        t = self.containers.pop(old)
        dst = self.containers.get(new)
        if dst is None:
            t.owner = owner
            self.containers[new] = t
        else:
            for ck, j in t.joules.items():
                dst.joules[ck] = dst.joules.get(ck, 0.0) + j
            for ck, g in t.grams.items():
                dst.grams[ck] = dst.grams.get(ck, 0.0) + g
            if owner != _NO_OWNER:
                dst.owner = owner
            if dst.finished_at is None or t.finished_at is None:
                dst.finished_at = dst.finished_mono = None
            elif t.finished_at > dst.finished_at:
                dst.finished_at, dst.finished_mono = t.finished_at, t.finished_mono
        self.structure_version += 1

    def update_liveness(self, present: Container[ContainerKey], now: float, mono: float,
                        retention_s: float) -> int:
        """Mark absent containers finished (at wall time ``now``), revive present ones, drop
        those finished more than ``retention_s`` ago on the monotonic clock ``mono``.
        Returns how many were dropped."""
        dropped = []
        for key, t in self.containers.items():
            if key in present:
                if t.finished_at is not None:
                    t.finished_at = t.finished_mono = None
                    self.structure_version += 1
            elif t.finished_at is None:
                t.finished_at, t.finished_mono = now, mono
                self.structure_version += 1
            elif t.finished_mono is None:
                t.finished_mono = mono  # finished before a restart: the window starts again
            elif mono - t.finished_mono > retention_s:
                dropped.append(key)
        for key in dropped:
            del self.containers[key]
        if dropped:
            self.structure_version += 1
        return len(dropped)

    # -- serialisation --------------------------------------------------------
    # The file is two lines: the structure (JSON: which counters exist, their labels) and
    # the values (base64 of little-endian float64s, in the structure's order). Values
    # change every cycle and cost one array conversion; the structure is re-encoded only
    # when containers come, go or change labels.
    def structure(self, node_name: str) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "node": node_name,
            "node_energy": [list(k) for k in self.node],
            "unallocated": list(self.unallocated),
            "containers": [
                [uid, name, list(_owner_tuple(t.owner)), t.finished_at,
                 [list(k) for k in t.joules], [list(k) for k in t.grams]]
                for (uid, name), t in self.containers.items()
            ],
        }

    def values(self) -> array[float]:
        out = array("d", self.node.values())
        out.extend(self.unallocated.values())
        # gathered in a list first: list.extend of a dict view and one fromlist cost less
        # than two array.extend calls per container (this runs every cycle)
        vals: list[float] = []
        ext = vals.extend
        for t in self.containers.values():
            ext(t.joules.values())
            ext(t.grams.values())
        out.fromlist(vals)
        if sys.byteorder != "little":
            out.byteswap()
        return out

    @classmethod
    def from_saved(cls, data: dict[str, Any], raw_values: bytes) -> Ledger:
        vals = array("d")
        vals.frombytes(raw_values)
        if sys.byteorder != "little":
            vals.byteswap()
        it = iter(vals)
        led = cls()
        for c, d, m in data["node_energy"]:
            led.node[(str(c), str(d), str(m))] = next(it)
        for c in data["unallocated"]:
            led.unallocated[str(c)] = next(it)
        for uid, name, owner, finished, joules, grams in data["containers"]:
            t = ContainerTotals(Owner(*map(str, owner)))
            t.finished_at = None if finished is None else float(finished)
            t.joules = {(str(c), str(m)): next(it) for c, m in joules}
            t.grams = {(str(c), str(m)): next(it) for c, m in grams}
            led.containers[(str(uid), str(name))] = t
        if next(it, None) is not None:
            raise ValueError("more values than counters")
        return led


_NO_OWNER = Owner()


def _owner_tuple(o: Owner) -> tuple[str, str, str, str, str]:
    return (o.namespace, o.pod, o.owner_kind, o.owner_name, o.owner_uid)


class StateStore:
    """Loads and saves the ledger in one directory (created if missing)."""

    def __init__(self, directory: Path, node_name: str) -> None:
        self.dir = Path(directory)
        self.node_name = node_name
        self.path = self.dir / FILE_NAME
        self._head: bytes | None = None
        self._saved_version = -1

    def load(self) -> Ledger:
        """The saved ledger; empty if none. A corrupt or foreign file is set aside (renamed
        ``*.corrupt``) with a log line rather than crashing the DaemonSet in a loop."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Ledger()
        try:
            head, _, body = raw.partition("\n")
            data = json.loads(head)
            if data.get("version") != FORMAT_VERSION:
                raise ValueError(f"format version {data.get('version')!r}, "
                                 f"expected {FORMAT_VERSION}")
            if data.get("node") != self.node_name:
                raise ValueError(f"it belongs to node {data.get('node')!r}, not {self.node_name!r}")
            return Ledger.from_saved(data, base64.b64decode(body.strip(), validate=True))
        except (ValueError, KeyError, TypeError, StopIteration, binascii.Error) as err:
            aside = self.path.with_suffix(".json.corrupt")
            os.replace(self.path, aside)
            log.error("state file %s unusable (%s); moved to %s, starting from zero",
                      self.path, err, aside)
            return Ledger()

    def save(self, ledger: Ledger) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if ledger.structure_version != self._saved_version or self._head is None:
            self._head = json.dumps(ledger.structure(self.node_name),
                                    separators=(",", ":")).encode()
            self._saved_version = ledger.structure_version
        data = self._head + b"\n" + base64.b64encode(ledger.values().tobytes()) + b"\n"
        tmp = self.path.with_name(f".{FILE_NAME}.tmp")
        # write + rename, no fsync: a killed or crashed exporter (the case that matters)
        # leaves the old or the new file, as the page cache outlives the process. Only a
        # host crash could leave a torn file, and then the node's counters restart anyway;
        # load() sets such a file aside. fsync every cycle would cost more than the cycle.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
