"""The long-running workload kinds accounted per slice, and what the operator reads from
their manifests (pure).

The unit of accounting is the top-level workload: a Deployment (pods owned by its
ReplicaSets), a StatefulSet, a LeaderWorkerSet (leader StatefulSet, worker StatefulSets
owned by leader pods) or a KServe InferenceService (its Deployments). The exporter labels a
container's series with the pod's *direct* controller (``owner_uid``), so the operator
resolves which objects in the namespace descend from the workload (``descendant_uids``)
and selects the series of all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from carbontrack.core.errors import ConfigError

from .jobs import ANNOTATION_PREFIX, GPU_RESOURCES
from .timeutil import parse_time


@dataclass(frozen=True)
class LongRunningKind:
    kind: str
    group: str
    version: str
    plural: str
    template_path: tuple[str, ...]  # where the pod template's spec lies under .spec
    optional: bool  # served only where its CRD is installed

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


KINDS = (
    LongRunningKind("Deployment", "apps", "v1", "deployments", ("template", "spec"), False),
    LongRunningKind("StatefulSet", "apps", "v1", "statefulsets", ("template", "spec"), False),
    LongRunningKind("LeaderWorkerSet", "leaderworkerset.x-k8s.io", "v1", "leaderworkersets",
                    ("leaderWorkerTemplate", "workerTemplate", "spec"), True),
    LongRunningKind("InferenceService", "serving.kserve.io", "v1beta1", "inferenceservices",
                    ("predictor",), True),
)
# Objects that can stand between a workload and its pods (the exporter's owner_uid is one
# of them): ReplicaSets of Deployments, StatefulSets of LeaderWorkerSets, Deployments of
# InferenceServices (raw deployment mode). A LeaderWorkerSet's worker StatefulSets are owned
# by its leader pods; pods are not read (their specs are not the operator's business):
# the LeaderWorkerSet controller's name label ties those StatefulSets to it instead.
INTERMEDIATE_PLURALS = (("apps", "v1", "replicasets"), ("apps", "v1", "statefulsets"),
                        ("apps", "v1", "deployments"))
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"


@dataclass(frozen=True)
class WorkloadFacts:
    kind: str
    api_version: str
    uid: str
    namespace: str
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]  # carbontrack.io/ keys only
    created_at: datetime
    deleted_at: datetime | None
    finalizers: tuple[str, ...]
    replicas: int
    gpus_per_pod: int
    template: dict[str, Any] = field(default_factory=dict)

    def ref(self) -> dict[str, str]:
        return {"kind": self.kind, "apiVersion": self.api_version, "name": self.name,
                "namespace": self.namespace, "uid": self.uid}


def _dig(obj: Mapping[str, Any], path: Iterable[str]) -> Mapping[str, Any]:
    for key in path:
        nxt = obj.get(key) if isinstance(obj, Mapping) else None
        obj = nxt if isinstance(nxt, Mapping) else {}
    return obj


def workload_facts(kind: LongRunningKind, body: Mapping[str, Any]) -> WorkloadFacts:
    """Facts of one workload object; a body the API server would not serve raises
    ConfigError naming it."""
    meta = body.get("metadata") or {}
    try:
        spec = body.get("spec") or {}
        pod_spec = _dig(spec, kind.template_path)
        containers = list(pod_spec.get("containers") or [])
        model = pod_spec.get("model")  # InferenceService: predictor.model is the container
        if isinstance(model, Mapping):
            containers.append(model)
        gpus = 0
        for c in containers:
            limits = (c.get("resources") or {}).get("limits") or {}
            gpus += sum(int(str(limits[r])) for r in GPU_RESOURCES if r in limits)
        replicas = spec.get("replicas", spec.get("minReplicas", 1))
        deleted = meta.get("deletionTimestamp")
        return WorkloadFacts(
            kind=kind.kind, api_version=kind.api_version,
            uid=str(meta["uid"]), namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
            annotations={str(k): str(v) for k, v in (meta.get("annotations") or {}).items()
                         if str(k).startswith(ANNOTATION_PREFIX)},
            created_at=parse_time(str(meta["creationTimestamp"])),
            deleted_at=parse_time(str(deleted)) if deleted else None,
            finalizers=tuple(str(f) for f in meta.get("finalizers") or ()),
            replicas=max(int(replicas if replicas is not None else 1), 0),
            gpus_per_pod=gpus,
            template={"nodeSelector": dict(pod_spec.get("nodeSelector") or {}),
                      "containers": [{"resources": dict(c.get("resources") or {})}
                                     for c in containers]},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ConfigError(f"{kind.kind} {meta.get('namespace')}/{meta.get('name')} is malformed "
                          f"({type(err).__name__}: {str(err)[:120]})") from None


def controller_of(obj: Mapping[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller") and ref.get("uid"):
            return str(ref["uid"])
    return None


def descendant_uids(objects: Iterable[Mapping[str, Any]], root_uid: str,
                    max_depth: int = 8, lws_name: str | None = None) -> set[str]:
    """UIDs of the objects whose chain of controller owners reaches ``root_uid`` (the root
    included). A cycle or a chain longer than ``max_depth`` never reaches it. ``lws_name``:
    the root is that LeaderWorkerSet, whose worker StatefulSets carry its name label."""
    parent: dict[str, str] = {}
    out = {root_uid}
    for obj in objects:
        meta = obj.get("metadata") or {}
        uid = meta.get("uid")
        owner = controller_of(obj)
        if uid and owner:
            parent[str(uid)] = owner
        if uid and lws_name and (meta.get("labels") or {}).get(LWS_NAME_LABEL) == lws_name \
                and obj.get("kind", "StatefulSet") == "StatefulSet":
            out.add(str(uid))
    for uid in parent:
        node, depth = uid, 0
        while node in parent and depth < max_depth:
            node, depth = parent[node], depth + 1
            if node == root_uid:
                out.add(uid)
                break
    return out
