"""The few Kubernetes reads and writes the operator makes, over its aiohttp transport
(operator/apiclient.py; no ``kubernetes`` client, no threads). Injected into the handlers;
e2e tests use it against a real API server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from carbontrack.core import contract
from carbontrack.core.errors import TemporaryError
from carbontrack.core.owners import KINDS, KindInfo, OwnerRef

from .apiclient import MERGE_PATCH as MERGE_PATCH
from .apiclient import ApiTransport, resource_path
from .apiclient import Conflict as Conflict
from .apiclient import Gone as Gone

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = contract.API_GROUP, contract.API_VERSION, "carbonbudgets"
RECORDS = "carbonrecords"
COMPONENT = "carbontrack-operator"


def _kind(kind: str) -> KindInfo:
    for info in KINDS.values():
        if info.kind == kind:
            return info
    raise ValueError(f"no API resource known for workload kind {kind!r}")


def _time(when: datetime) -> str:
    """RFC 3339 in UTC, to the second (how the API server stores an Event's times)."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(involved: Mapping[str, str], reason: str, message: str, warning: bool,
               now: datetime) -> dict[str, Any]:
    """A core/v1 Event on ``involved`` (kind, name, namespace, uid, apiVersion)."""
    namespace = involved["namespace"]
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{involved['name']}.", "namespace": namespace},
        "involvedObject": {"kind": involved["kind"], "name": involved["name"], "namespace": namespace,
                           "uid": involved["uid"], "apiVersion": involved["apiVersion"]},
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": _time(now),
        "lastTimestamp": _time(now),
        "count": 1,
        "action": reason,
    }


class KubeApi:
    def __init__(self, transport: ApiTransport) -> None:
        self._http = transport

    @property
    def pool_size(self) -> int:
        """API calls in flight at most (more wait for a pooled connection)."""
        return self._http.pool_size

    async def patch_job(
        self, namespace: str, name: str, uid: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge patch with a UID precondition: never writes onto a re-created namesake."""
        return await self.patch_workload("Job", namespace, name, uid, body)

    async def patch_workload(
        self, kind: str, namespace: str, name: str, uid: str, body: Mapping[str, Any], answer: bool = True
    ) -> dict[str, Any]:
        """Merge patch of a workload of ``kind`` (a kind of core.owners.KINDS) with a UID
        precondition: never writes onto a re-created namesake. The answer is the parsed JSON;
        ``answer=False``: the answer is read but not parsed, and {} is returned (a write whose
        result nobody reads)."""
        meta = dict(body.get("metadata") or {})
        meta["uid"] = uid
        patch = {**body, "metadata": meta}
        info = _kind(kind)
        got = await self._http.request(
            "PATCH", resource_path(info.group, info.version, info.plural, namespace, name),
            f"{kind} {namespace}/{name}", body=patch, content_type=MERGE_PATCH, answer=answer)
        return dict(got) if answer else {}

    async def set_job_finalizers(
        self, namespace: str, name: str, uid: str, finalizers: list[str], resource_version: str
    ) -> None:
        await self.set_workload_finalizers("Job", namespace, name, uid, finalizers, resource_version)

    async def set_workload_finalizers(
        self, kind: str, namespace: str, name: str, uid: str, finalizers: list[str], resource_version: str
    ) -> None:
        """Replace the finalizer list, conditional on resourceVersion (409 -> Conflict)."""
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        await self.patch_workload(kind, namespace, name, uid, patch, answer=False)

    async def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        return await self.get_workload("Job", namespace, name)

    async def get_workload(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        info = _kind(kind)
        return dict(await self._http.get(resource_path(info.group, info.version, info.plural, namespace, name),
                                         f"{kind} {namespace}/{name}"))

    async def read_owner(self, namespace: str, ref: OwnerRef) -> dict[str, Any] | None:
        """An owner named by an ownerReference (root-owner walk), or None when it does not
        exist or its kind is not served here. The reference's own group and kind decide the
        resource (core.owners.KINDS), at the version the table names."""
        info = KINDS.get((ref.group, ref.kind))
        if info is None:
            return None
        try:
            return dict(await self._http.get(
                resource_path(info.group, info.version, info.plural, namespace, ref.name),
                f"{ref.kind} {namespace}/{ref.name}"))
        except Gone:
            return None

    async def get_budget(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(await self._http.get(resource_path(GROUP, VERSION, PLURAL, namespace, name),
                                         f"CarbonBudget {namespace}/{name}"))

    async def patch_budget_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        """The budget as written (its new resourceVersion lets the next ledger batch skip a GET)."""
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        return dict(await self._http.request(
            "PATCH", resource_path(GROUP, VERSION, PLURAL, namespace, name, "status"),
            f"CarbonBudget {namespace}/{name} status", body=body, content_type=MERGE_PATCH))

    async def post_event(
        self,
        involved: Mapping[str, str],
        reason: str,
        message: str,
        warning: bool,
        now: datetime,
    ) -> None:
        """core/v1 Event on ``involved`` (kind, name, namespace, uid, apiVersion)."""
        namespace = involved["namespace"]
        try:
            await self._http.request("POST", resource_path("", "v1", "events", namespace), "Event",
                                     body=event_body(involved, reason, message, warning, now), answer=False)
        except (Gone, TemporaryError) as err:  # Events are best effort: the status is the record
            log.warning("could not post Event %s on %s/%s: %s", reason, namespace,
                        involved["name"], err)

    # ------------------------------------------------------------ CarbonRecords
    async def get_record(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(await self._http.get(resource_path(GROUP, VERSION, RECORDS, namespace, name),
                                         f"CarbonRecord {namespace}/{name}"))

    async def create_record(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """409 (another writer created it first) -> Conflict: re-read and merge."""
        namespace = str(body["metadata"]["namespace"])
        return dict(await self._http.request(
            "POST", resource_path(GROUP, VERSION, RECORDS, namespace),
            f"CarbonRecord {namespace}/{body['metadata']['name']}", body=dict(body)))

    async def add_record_entries(
        self, namespace: str, name: str, entries: Mapping[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Merge new entries in, conditional on resourceVersion (409 -> Conflict)."""
        body = {"metadata": {"resourceVersion": resource_version},
                "spec": {"entries": dict(entries)}}
        return dict(await self._http.request(
            "PATCH", resource_path(GROUP, VERSION, RECORDS, namespace, name),
            f"CarbonRecord {namespace}/{name}", body=body, content_type=MERGE_PATCH))

    async def list_records(
        self, namespace: str, label_selector: str, limit: int, token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of CarbonRecords and the continue token (None at the end)."""
        query = {"labelSelector": label_selector, "limit": str(limit)}
        if token:
            query["continue"] = token
        page = await self._http.get(resource_path(GROUP, VERSION, RECORDS, namespace),
                                    f"CarbonRecords in {namespace}", query)
        return list(page.get("items") or []), (page.get("metadata") or {}).get("continue") or None

    def close(self) -> None:
        """Closes the shared transport (kopf's clean-up calls this; cli.run awaits the close)."""
        self._http.close()
