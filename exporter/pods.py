"""Pod UID -> namespace, name, owner, container names and requests.

``pod_meta`` is a pure builder from a pod object (the Kubernetes API's JSON shape, as the
watch delivers it). ``PodCache`` holds the current pods of this node; ``podwatch.PodWatcher``
keeps it filled from a watch limited to this node (``fieldSelector=spec.nodeName=<node>``)
on its own thread. With ``--no-kube`` the exporter uses an empty ``PodCache``: pods are then
identified by UID only (the metric contract's empty namespace/pod/owner labels).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .state import Owner

log = logging.getLogger("carbontrack.exporter.pods")

_JOB_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
_JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
# kubetypes.ConfigMirrorAnnotationKey. A static pod's mirror in the API has a UID of its own
# (the API server's); the kubelet runs, and names the cgroups of, the static pod, whose UID
# it writes into the mirror's annotation (CreateMirrorPod: annotation = the static pod's
# config hash, which applyDefaults sets to the static pod's UID).
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


@dataclass(frozen=True)
class PodMeta:
    uid: str
    owner: Owner
    container_ids: Mapping[str, str] = field(default_factory=dict)  # runtime id -> name
    requests: Mapping[str, tuple[float, int]] = field(default_factory=dict)  # cores, bytes
    # Succeeded/Failed or deleted: the scheduler has freed its requests, so it reserves
    # nothing on the node any more, though its cgroup may linger (kubelet cleanup lag)
    released: bool = False


def parse_cpu(q: str) -> float:
    """A Kubernetes CPU quantity in cores ("500m" -> 0.5, "2" -> 2.0)."""
    q = q.strip()
    if q.endswith("m"):
        return float(q[:-1]) / 1000
    return float(q)


_MEM_SUFFIX = {
    "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
}


def parse_memory(q: str) -> int:
    """A Kubernetes memory quantity in bytes ("1Gi", "512M", "1000")."""
    q = q.strip()
    for suf in sorted(_MEM_SUFFIX, key=len, reverse=True):
        if q.endswith(suf):
            return int(float(q[: -len(suf)]) * _MEM_SUFFIX[suf])
    return int(float(q))


def pod_meta(pod: Mapping[str, Any]) -> PodMeta:
    """Build PodMeta from a pod object (dict in API JSON form). Pure; tested by equality.

    Owner: the controller ownerReference; a Job's pods name the Job. Pods whose owner
    reference is missing (rare: orphaned) fall back to the Job labels. ``uid`` is the UID
    the pod's cgroups carry: ``metadata.uid``, except for a static pod's mirror, whose
    ``kubernetes.io/config.mirror`` annotation holds the static pod's UID.
    """
    md = pod.get("metadata") or {}
    labels = md.get("labels") or {}
    kind = name = ouid = ""
    for ref in md.get("ownerReferences") or []:
        if ref.get("controller"):
            kind, name, ouid = ref.get("kind", ""), ref.get("name", ""), ref.get("uid", "")
            break
    if not kind:
        job_uid = next((labels[k] for k in _JOB_UID_LABELS if k in labels), "")
        job_name = next((labels[k] for k in _JOB_NAME_LABELS if k in labels), "")
        if job_uid or job_name:
            kind, name, ouid = "Job", job_name, job_uid
    owner = Owner(md.get("namespace", ""), md.get("name", ""), kind, name, ouid)

    ids: dict[str, str] = {}
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            cid = cs.get("containerID") or ""
            if "://" in cid:  # "containerd://<id>", "cri-o://<id>", "docker://<id>"
                ids[cid.split("://", 1)[1]] = cs.get("name", "")
    requests: dict[str, tuple[float, int]] = {}
    spec = pod.get("spec") or {}
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            req = (c.get("resources") or {}).get("requests") or {}
            try:
                cpu = parse_cpu(str(req["cpu"])) if "cpu" in req else 0.0
                mem = parse_memory(str(req["memory"])) if "memory" in req else 0
            except ValueError:
                log.warning("pod %s/%s: unparsable requests %r; counted as none",
                            owner.namespace, owner.pod, req)
                cpu, mem = 0.0, 0
            requests[c.get("name", "")] = (cpu, mem)
    released = status.get("phase") in ("Succeeded", "Failed")
    uid = (md.get("annotations") or {}).get(MIRROR_ANNOTATION) or md.get("uid", "")
    return PodMeta(uid, owner, ids, requests, released)


def meta_from_event(event_type: str, pod: Mapping[str, Any]) -> PodMeta | None:
    """The cache entry a watch event gives, or None for events that carry no pod state
    (BOOKMARK, ERROR). DELETED keeps the entry (finished containers keep their labels) but
    marks it released: a deleted pod's requests are freed whatever its last phase."""
    if event_type not in ("ADDED", "MODIFIED", "DELETED"):
        return None
    meta = pod_meta(pod)
    if event_type == "DELETED" and not meta.released:
        meta = replace(meta, released=True)
    return meta


class PodCache:
    """This node's pods by UID, and (namespace, name) -> UID for the pod-resources join."""

    def __init__(self) -> None:
        self._by_uid: dict[str, PodMeta] = {}
        self._by_name: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        # bumped on every change: readers that derive labels from the cache (the engine's
        # per-container totals) rebuild only when it moves
        self.generation = 0

    def get(self, uid: str) -> PodMeta | None:
        return self._by_uid.get(uid)

    def uid_for(self, namespace: str, name: str) -> str | None:
        return self._by_name.get((namespace, name))

    def put(self, meta: PodMeta) -> None:
        with self._lock:
            self._by_uid[meta.uid] = meta
            self._by_name[(meta.owner.namespace, meta.owner.pod)] = meta.uid
            self.generation += 1

    def delete(self, uid: str) -> None:
        with self._lock:
            meta = self._by_uid.pop(uid, None)
            if meta is not None:
                self._by_name.pop((meta.owner.namespace, meta.owner.pod), None)
                self.generation += 1

    def metas(self) -> list[PodMeta]:
        with self._lock:
            return list(self._by_uid.values())

    def replace_all(self, metas: list[PodMeta]) -> None:
        with self._lock:
            self._by_uid = {m.uid: m for m in metas}
            self._by_name = {(m.owner.namespace, m.owner.pod): m.uid for m in metas}
            self.generation += 1
