"""Root-owner resolution: from an object's controller ownerReference up to the workload that
is the unit of accounting (pure; shared by the exporter and the operator, which may not
import each other).

The unit of accounting is the top-level *controlling* owner of a pod: a PyTorchJob's pods
name the PyTorchJob directly; a JobSet's pods name a Job whose controller is the JobSet; a
TrainJob's pods name a Job -> JobSet -> TrainJob; a RayJob's pods name a RayCluster (or the
submitter Job) whose controller is the RayJob. ``KINDS`` says, per (API group, kind), where
the object is served and its role in the walk:

- ``INTERMEDIATE``: read it and continue with its controller (Job, JobSet, RayCluster, ...);
  with no controller it is the root itself;
- ``TOP``: read it (to see that it exists) and stop: it is the root;
- ``BOUNDARY``: a known owner that is never a unit of accounting (CronJob): the object
  below it is the root and nothing is wrong.

``RootWalk`` is the walk as a small state machine (``pending`` names the object to read
next, ``feed`` gives its body or None when it is absent), so the exporter drives it with
blocking reads and the operator with async ones, and the unit tests drive it by hand.

Bad input never stops accounting: the walk ends at the last object that exists and is
known, with ``reason`` and ``message`` saying what was wrong:

- ``UnknownOwnerKind``: a controller of a kind not in ``KINDS``;
- ``OwnerCycle``: a controller chain that comes back to an object already on it (the root
  is then the object the walk started from);
- ``DanglingOwner``: a controller that does not exist (or exists with another UID);
- ``OwnerChainTooDeep``: more than ``max_depth`` controllers.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Role(enum.Enum):
    INTERMEDIATE = "intermediate"
    TOP = "top"
    BOUNDARY = "boundary"


@dataclass(frozen=True)
class KindInfo:
    group: str
    version: str
    plural: str
    kind: str
    role: Role

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def _k(group: str, version: str, plural: str, kind: str, role: Role) -> tuple[tuple[str, str], KindInfo]:
    return (group, kind), KindInfo(group, version, plural, kind, role)


# The owner kinds CarbonTrack knows. Adding a workload kind: its line here (the exporter reads
# this table) plus its adapter in carbontrack.operator.workloads (docs/architecture.md).
KINDS: dict[tuple[str, str], KindInfo] = dict([
    _k("batch", "v1", "jobs", "Job", Role.INTERMEDIATE),
    _k("batch", "v1", "cronjobs", "CronJob", Role.BOUNDARY),
    _k("jobset.x-k8s.io", "v1alpha2", "jobsets", "JobSet", Role.INTERMEDIATE),
    _k("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob", Role.TOP),
    _k("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob", Role.TOP),
    _k("ray.io", "v1", "rayclusters", "RayCluster", Role.INTERMEDIATE),
    _k("ray.io", "v1", "rayjobs", "RayJob", Role.TOP),
    _k("ray.io", "v1", "rayservices", "RayService", Role.TOP),
    _k("apps", "v1", "replicasets", "ReplicaSet", Role.INTERMEDIATE),
    _k("apps", "v1", "deployments", "Deployment", Role.INTERMEDIATE),
    _k("apps", "v1", "statefulsets", "StatefulSet", Role.INTERMEDIATE),
    _k("leaderworkerset.x-k8s.io", "v1", "leaderworkersets", "LeaderWorkerSet", Role.INTERMEDIATE),
    _k("serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService", Role.TOP),
])

UNKNOWN_KIND, CYCLE, DANGLING, TOO_DEEP = (
    "UnknownOwnerKind", "OwnerCycle", "DanglingOwner", "OwnerChainTooDeep")


@dataclass(frozen=True)
class OwnerRef:
    api_version: str
    kind: str
    name: str
    uid: str

    @property
    def group(self) -> str:
        return self.api_version.rsplit("/", 1)[0] if "/" in self.api_version else ""

    def describe(self) -> str:
        return f"{self.kind} {self.name} ({self.api_version}, uid {self.uid})"


def controller_ref(metadata: Mapping[str, Any]) -> OwnerRef | None:
    """The ownerReference with ``controller: true`` (Kubernetes allows at most one)."""
    for ref in metadata.get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return OwnerRef(str(ref.get("apiVersion", "")), str(ref.get("kind", "")),
                            str(ref.get("name", "")), str(ref.get("uid", "")))
    return None


def self_ref(body: Mapping[str, Any]) -> OwnerRef:
    meta = body.get("metadata") or {}
    return OwnerRef(str(body.get("apiVersion", "")), str(body.get("kind", "")),
                    str(meta.get("name", "")), str(meta.get("uid", "")))


def kind_info(ref: OwnerRef) -> KindInfo | None:
    return KINDS.get((ref.group, ref.kind))


@dataclass(frozen=True)
class Resolution:
    root: OwnerRef
    chain: tuple[OwnerRef, ...]  # the start first, the root (or where it stopped) last
    reason: str | None = None  # one of UNKNOWN_KIND, CYCLE, DANGLING, TOO_DEEP
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


class RootWalk:
    """Walk controller references from ``start`` to the root (see the module docstring).

    Drive it with ``while (ref := walk.pending) is not None: walk.feed(read(ref))`` where
    ``read`` returns the object's body (any dict with ``metadata``) or None when it does not
    exist; then ``walk.result``."""

    def __init__(self, start: OwnerRef, max_depth: int = 8) -> None:
        self._chain: list[OwnerRef] = [start]
        self._max_depth = max_depth
        self.result: Resolution | None = None
        self.pending: OwnerRef | None = None
        self._visit(start)

    def _done(self, root: OwnerRef, reason: str | None = None, message: str | None = None) -> None:
        self.result = Resolution(root, tuple(self._chain), reason, message)
        self.pending = None

    def _visit(self, ref: OwnerRef) -> None:
        info = kind_info(ref)
        if info is None:
            # Only the start can be unknown here (a controller of an unknown kind above a
            # known object stops in feed): a pod controlled directly by such a kind.
            self._done(ref, UNKNOWN_KIND, f"{ref.describe()} is not a kind CarbonTrack knows")
            return
        self.pending = ref

    def feed(self, body: Mapping[str, Any] | None) -> None:
        current = self.pending
        if current is None:
            raise RuntimeError("the walk is finished")
        meta = (body or {}).get("metadata") or {}
        if body is None or str(meta.get("uid", "")) != current.uid:
            below = self._chain[-2] if len(self._chain) > 1 else current
            self._done(below, DANGLING,
                       f"{current.describe()}, the controller of {below.kind} {below.name}, does not exist"
                       if below is not current else f"{current.describe()} does not exist")
            return
        info = kind_info(current)
        assert info is not None
        if info.role is not Role.INTERMEDIATE:
            self._done(current)
            return
        parent = controller_ref(meta)
        if parent is None:
            self._done(current)
            return
        if any(parent.uid == seen.uid for seen in self._chain):
            start = self._chain[0]
            self._chain.append(parent)
            self._done(start, CYCLE, "ownerReference cycle: " + " -> ".join(
                f"{r.kind} {r.name}" for r in self._chain) + f"; accounted as {start.kind} {start.name}")
            return
        parent_info = kind_info(parent)
        if parent_info is None:
            self._chain.append(parent)
            self._done(current, UNKNOWN_KIND,
                       f"the controller of {current.kind} {current.name} is {parent.describe()}, a kind "
                       f"CarbonTrack does not know; accounted as {current.kind} {current.name}")
            return
        if parent_info.role is Role.BOUNDARY:
            self._done(current)
            return
        if len(self._chain) > self._max_depth:
            self._done(current, TOO_DEEP, f"more than {self._max_depth} controllers above "
                                          f"{self._chain[0].describe()}; stopped at {current.kind} {current.name}")
            return
        self._chain.append(parent)
        self.pending = parent
