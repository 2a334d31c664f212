"""Reads and writes of long-running workloads (any group), over the operator's transport
(operator/apiclient.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from carbontrack.core.errors import TemporaryError

from .apiclient import MERGE_PATCH, ApiError, ApiTransport, Gone, resource_path

PAGE = 500


class WorkloadApi:
    """Every answer but 404 (Gone) and 409 (Conflict, or Gone for a UID precondition) that is
    not a success is a TemporaryError here: the slice loop retries its round."""

    def __init__(self, transport: ApiTransport) -> None:
        self._http = transport

    async def _get(self, path: str, what: str, query: Mapping[str, str] | None = None) -> Any:
        try:
            return await self._http.get(path, what, query)
        except ApiError as err:
            raise TemporaryError(str(err)) from err

    async def served(self, group: str, version: str, plural: str) -> bool:
        """Whether the API server serves the resource (a CRD that is not installed: no)."""
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            found = await self._get(base, f"{group}/{version}")
        except Gone:
            return False
        resources = (found.get("resources") or []) if isinstance(found, dict) else []
        return any(r.get("name") == plural for r in resources)

    async def list(self, group: str, version: str, plural: str,
                   namespace: str | None) -> list[dict[str, Any]]:
        """Every object of the resource (in one namespace, or all), paged. Core-group
        resources (pods, group "") come from /api/v1."""
        out: list[dict[str, Any]] = []
        token: str | None = None
        what = f"{plural} in {namespace}" if namespace else plural
        while True:
            query = {"limit": str(PAGE)}
            if token:
                query["continue"] = token
            page = await self._get(resource_path(group, version, plural, namespace), what, query)
            out.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return out

    async def namespaces_with(self, group: str, version: str, plural: str,
                              label_selector: str) -> set[str]:
        """The namespaces holding objects of the resource that match the selector, cluster
        wide: small pages (CarbonRecords are up to 768 KiB each), only names kept."""
        out: set[str] = set()
        token: str | None = None
        while True:
            query = {"labelSelector": label_selector, "limit": "20"}
            if token:
                query["continue"] = token
            page = await self._get(resource_path(group, version, plural), plural, query)
            out.update(str((o.get("metadata") or {}).get("namespace", "")) for o in page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                out.discard("")
                return out

    async def patch_annotations(self, group: str, version: str, plural: str, namespace: str,
                                name: str, uid: str, annotations: Mapping[str, str]) -> None:
        """Merge patch with a UID precondition: never writes onto a re-created namesake."""
        body = {"metadata": {"uid": uid, "annotations": dict(annotations)}}
        try:
            await self._http.request("PATCH", resource_path(group, version, plural, namespace, name),
                                     f"{plural} {namespace}/{name}", body=body, content_type=MERGE_PATCH,
                                     answer=False)
        except ApiError as err:
            raise TemporaryError(str(err)) from err

    def close(self) -> None:
        """Nothing of its own: the transport's owner (cli.run) closes it."""
