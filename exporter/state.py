"""Durable counters: the ledger of totals and its atomic file in ``--state-dir``.

Prometheus counters must not go backwards when the exporter restarts (a DaemonSet rollout,
an OOM kill), or the operator's final per-Job sums would lose energy. The ledger holds every
exported total — node, unallocated, per container — and is written after each collection
cycle to ``<state-dir>/ledger.json`` via a temporary file, fsync and rename, so a crash leaves
the previous or the new file, never half of one. Energy drawn while the exporter was down is
not attributable and is not invented.

Finished containers stay in the ledger (and exported) for the retention window so Prometheus
scrapes their final value, then are dropped: memory is bounded by live + recently finished.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("carbontrack.exporter.state")

FORMAT_VERSION = 1
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


@dataclass
class Ledger:
    containers: dict[ContainerKey, ContainerTotals] = field(default_factory=dict)
    node: dict[tuple[str, str, str], float] = field(default_factory=dict)  # component, dev, meth
    unallocated: dict[str, float] = field(default_factory=dict)  # component

    def add_node(self, component: str, device: str, method: str, joules: float) -> None:
        k = (component, device, method)
        self.node[k] = self.node.get(k, 0.0) + joules

    def add_unallocated(self, component: str, joules: float) -> None:
        self.unallocated[component] = self.unallocated.get(component, 0.0) + joules

    def add_container(
        self,
        key: ContainerKey,
        owner: Owner,
        component: str,
        method: str,
        joules: float,
        grams: float | None,
    ) -> None:
        t = self.containers.get(key)
        if t is None:
            t = self.containers[key] = ContainerTotals(owner)
        elif owner != t.owner and owner != Owner():
            t.owner = owner  # metadata arrived later than the first cycle; keep the richest
        ck = (component, method)
        t.joules[ck] = t.joules.get(ck, 0.0) + joules
        if grams is not None:
            t.grams[ck] = t.grams.get(ck, 0.0) + grams

    def update_liveness(self, present: set[ContainerKey], now: float, retention_s: float) -> int:
        """Mark absent containers finished, revive present ones, drop those finished longer
        than ``retention_s`` ago. Returns how many were dropped."""
        dropped = []
        for key, t in self.containers.items():
            if key in present:
                t.finished_at = None
            elif t.finished_at is None:
                t.finished_at = now
            elif now - t.finished_at > retention_s:
                dropped.append(key)
        for key in dropped:
            del self.containers[key]
        return len(dropped)

    # -- serialisation --------------------------------------------------------
    def to_dict(self, node_name: str) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "node": node_name,
            "node_energy": [[c, d, m, j] for (c, d, m), j in self.node.items()],
            "unallocated": self.unallocated,
            "containers": [
                [uid, name, list(_owner_tuple(t.owner)), t.finished_at,
                 [[c, m, j] for (c, m), j in t.joules.items()],
                 [[c, m, g] for (c, m), g in t.grams.items()]]
                for (uid, name), t in self.containers.items()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ledger:
        led = cls()
        for c, d, m, j in data["node_energy"]:
            led.node[(str(c), str(d), str(m))] = float(j)
        led.unallocated = {str(k): float(v) for k, v in data["unallocated"].items()}
        for uid, name, owner, finished, joules, grams in data["containers"]:
            t = ContainerTotals(Owner(*map(str, owner)))
            t.finished_at = None if finished is None else float(finished)
            t.joules = {(str(c), str(m)): float(j) for c, m, j in joules}
            t.grams = {(str(c), str(m)): float(g) for c, m, g in grams}
            led.containers[(str(uid), str(name))] = t
        return led


def _owner_tuple(o: Owner) -> tuple[str, str, str, str, str]:
    return (o.namespace, o.pod, o.owner_kind, o.owner_name, o.owner_uid)


class StateStore:
    """Loads and saves the ledger in one directory (created if missing)."""

    def __init__(self, directory: Path, node_name: str) -> None:
        self.dir = Path(directory)
        self.node_name = node_name
        self.path = self.dir / FILE_NAME

    def load(self) -> Ledger:
        """The saved ledger; empty if none. A corrupt or foreign file is set aside (renamed
        ``*.corrupt``) with a log line rather than crashing the DaemonSet in a loop."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Ledger()
        try:
            data = json.loads(raw)
            if data.get("version") != FORMAT_VERSION:
                raise ValueError(f"format version {data.get('version')!r}, expected 1")
            if data.get("node") != self.node_name:
                raise ValueError(f"it belongs to node {data.get('node')!r}, not {self.node_name!r}")
            return Ledger.from_dict(data)
        except (ValueError, KeyError, TypeError) as err:
            aside = self.path.with_suffix(".json.corrupt")
            os.replace(self.path, aside)
            log.error("state file %s unusable (%s); moved to %s, starting from zero",
                      self.path, err, aside)
            return Ledger()

    def save(self, ledger: Ledger) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps(ledger.to_dict(self.node_name), separators=(",", ":"))
        tmp = self.path.with_name(f".{FILE_NAME}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
