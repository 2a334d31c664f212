"""Reads and writes of long-running workloads (any group, through the dynamic
custom-objects API of the official client; sync, run in a thread)."""

from __future__ import annotations

import asyncio
import copy
import functools
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from carbontrack.core.errors import TemporaryError

from .kube import MERGE_PATCH, Conflict, Gone


class WorkloadApi:
    def __init__(self, configuration: client.Configuration, workers: int = 4) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="workloads")
        api_client = client.ApiClient(copy.deepcopy(configuration))
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        # the client's JSON-ready dict of a model object (untyped in the kubernetes package)
        self._serialize: Callable[[Any], Any] = api_client.sanitize_for_serialization

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, functools.partial(fn, *args, **kwargs))
        except ApiException as err:
            if err.status == 404:
                raise Gone(f"{what} not found") from err
            if err.status == 409 and "UID in precondition" in str(err.body or ""):
                raise Gone(f"{what} was replaced by a new object with the same name") from err
            if err.status == 409:
                raise Conflict(f"{what} changed concurrently") from err
            raise TemporaryError(f"API server error on {what}: {err.status} {err.reason}") from err
        except OSError as err:
            raise TemporaryError(f"API server unreachable on {what}: {err}") from err

    async def served(self, group: str, version: str, plural: str) -> bool:
        """Whether the API server serves the resource (a CRD that is not installed: no)."""
        try:
            found = await self._call(f"{group}/{version}", self._custom.get_api_resources, group, version)
        except Gone:
            return False
        resources = self._serialize(found).get("resources") or []
        return any(r.get("name") == plural for r in resources)

    async def list(self, group: str, version: str, plural: str,
                   namespace: str | None) -> list[dict[str, Any]]:
        """Every object of the resource (in one namespace, or all), paged."""
        out: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"limit": 500}
            if token:
                kw["_continue"] = token
            if not group:  # core/v1 (pods): only their owner references are read
                page = await self._call(f"{plural}", self._list_core, plural, namespace, kw)
            elif namespace:
                page = await self._call(f"{plural} in {namespace}", self._custom.list_namespaced_custom_object,
                                        group, version, namespace, plural, **kw)
            else:
                page = await self._call(plural, self._custom.list_cluster_custom_object,
                                        group, version, plural, **kw)
            out.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return out

    def _list_core(self, plural: str, namespace: str | None, kw: dict[str, Any]) -> dict[str, Any]:
        assert plural == "pods"
        result = (self._core.list_namespaced_pod(namespace, **kw) if namespace
                  else self._core.list_pod_for_all_namespaces(**kw))
        return dict(self._serialize(result))

    async def patch_annotations(self, group: str, version: str, plural: str, namespace: str,
                                name: str, uid: str, annotations: Mapping[str, str]) -> None:
        """Merge patch with a UID precondition: never writes onto a re-created namesake."""
        body = {"metadata": {"uid": uid, "annotations": dict(annotations)}}
        await self._call(f"{plural} {namespace}/{name}", self._custom.patch_namespaced_custom_object,
                         group, version, namespace, plural, name, body, _content_type=MERGE_PATCH)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
