"""The few Kubernetes writes the operator makes, over the official client (sync, run in a
thread so the kopf event loop never blocks). Injected into the handlers; e2e tests use it
against a real API server.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from carbontrack.core import contract
from carbontrack.core.errors import TemporaryError
from carbontrack.core.owners import KINDS, KindInfo, OwnerRef

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = contract.API_GROUP, contract.API_VERSION, "carbonbudgets"
RECORDS = "carbonrecords"
COMPONENT = "carbontrack-operator"
MERGE_PATCH = "application/merge-patch+json"


class Gone(Exception):
    """The object no longer exists (or was replaced by one with another UID)."""


class Conflict(Exception):
    """Optimistic concurrency: the object changed since it was read; re-read and retry."""


def _translate(err: ApiException, what: str) -> Exception:
    body = str(err.body or "")
    if err.status == 404:
        return Gone(f"{what} not found")
    if err.status == 409 and "UID in precondition" in body:
        # The name now belongs to a re-created object with another UID.
        return Gone(f"{what} was replaced by a new object with the same name")
    if err.status == 409:
        return Conflict(f"{what} changed concurrently: {err.reason}")
    if err.status in (429, 500, 502, 503, 504) or err.status is None:
        return TemporaryError(f"API server error on {what}: {err.status} {err.reason}")
    return err


def _unread(call: Callable[..., Any]) -> Callable[[], None]:
    """``call`` made without parsing its answer: the body is read and dropped so that the
    pooled connection can be reused (the client raises ApiException on a non-2xx status
    before returning the raw response)."""
    def run() -> None:
        response = call(_preload_content=False)
        response.read()
        response.release_conn()
    return run


def _kind(kind: str) -> KindInfo:
    for info in KINDS.values():
        if info.kind == kind:
            return info
    raise ValueError(f"no API resource known for workload kind {kind!r}")


class KubeApi:
    def __init__(self, configuration: client.Configuration, workers: int = 32) -> None:
        # Own thread pool: the default one has cpu+4 threads, which caps the operator at a
        # handful of API calls in flight when a thousand Jobs finish together.
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")
        # One pooled connection per worker. The pool size is read when the ApiClient is built
        # (setting it afterwards, as this did before, left urllib3's default of 10: the
        # 5,000-Job bench logged "Connection pool is full, discarding connection" and paid a
        # new TLS handshake for each call beyond 10), so it is set on a copy first.
        configuration = copy.deepcopy(configuration)
        configuration.connection_pool_maxsize = max(workers, configuration.connection_pool_maxsize or 0)
        api_client = client.ApiClient(configuration)
        self.pool_size: int = api_client.rest_client.pool_manager.connection_pool_kw["maxsize"]
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, functools.partial(fn, *args, **kwargs))
        except ApiException as err:
            raise _translate(err, what) from err
        except OSError as err:  # connection refused / reset: the API server is restarting
            raise TemporaryError(f"API server unreachable on {what}: {err}") from err

    async def patch_job(
        self, namespace: str, name: str, uid: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge patch with a UID precondition: never writes onto a re-created namesake."""
        return await self.patch_workload("Job", namespace, name, uid, body)

    async def patch_workload(
        self, kind: str, namespace: str, name: str, uid: str, body: Mapping[str, Any], answer: bool = True
    ) -> dict[str, Any]:
        """Merge patch of a workload of ``kind`` (a kind of core.owners.KINDS) with a UID
        precondition: never writes onto a re-created namesake. Every kind, Jobs too, goes
        through the generic path, whose answer is the parsed JSON (the typed Job client
        built a model object of each answer and turned it back into a dict). ``answer=False``:
        the answer is not parsed at all and {} is returned (a write whose result nobody reads)."""
        meta = dict(body.get("metadata") or {})
        meta["uid"] = uid
        patch = {**body, "metadata": meta}
        info = _kind(kind)
        call = functools.partial(self._custom.patch_namespaced_custom_object, info.group, info.version,
                                 namespace, info.plural, name, patch, _content_type=MERGE_PATCH)
        what = f"{kind} {namespace}/{name}"
        if answer:
            return dict(await self._call(what, call))
        await self._call(what, _unread(call))
        return {}

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
        return dict(await self._call(f"{kind} {namespace}/{name}", self._custom.get_namespaced_custom_object,
                                     info.group, info.version, namespace, info.plural, name))

    async def read_owner(self, namespace: str, ref: OwnerRef) -> dict[str, Any] | None:
        """An owner named by an ownerReference (root-owner walk), or None when it does not
        exist or its kind is not served here. The reference's own group and kind decide the
        resource (core.owners.KINDS), at the version the table names."""
        info = KINDS.get((ref.group, ref.kind))
        if info is None:
            return None
        try:
            return dict(await self._call(
                f"{ref.kind} {namespace}/{ref.name}", self._custom.get_namespaced_custom_object,
                info.group, info.version, namespace, info.plural, ref.name))
        except Gone:
            return None

    async def get_budget(self, namespace: str, name: str) -> dict[str, Any]:
        result = await self._call(
            f"CarbonBudget {namespace}/{name}",
            self._custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name,
        )
        return dict(result)

    async def patch_budget_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None
    ) -> None:
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        await self._call(
            f"CarbonBudget {namespace}/{name} status",
            self._custom.patch_namespaced_custom_object_status,
            GROUP, VERSION, namespace, PLURAL, name, body, _content_type=MERGE_PATCH,
        )

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
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{involved['name']}.", namespace=namespace),
            involved_object=client.V1ObjectReference(
                kind=involved["kind"], name=involved["name"], namespace=namespace,
                uid=involved["uid"], api_version=involved["apiVersion"],
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            source=client.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=COMPONENT,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            action=reason,
        )
        try:
            await self._call("Event", self._core.create_namespaced_event, namespace, event)
        except (Gone, TemporaryError) as err:  # Events are best effort: the status is the record
            log.warning("could not post Event %s on %s/%s: %s", reason, namespace,
                        involved["name"], err)

    # ------------------------------------------------------------ CarbonRecords
    async def get_record(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(await self._call(
            f"CarbonRecord {namespace}/{name}", self._custom.get_namespaced_custom_object,
            GROUP, VERSION, namespace, RECORDS, name))

    async def create_record(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """409 (another writer created it first) -> Conflict: re-read and merge."""
        namespace = str(body["metadata"]["namespace"])
        return dict(await self._call(
            f"CarbonRecord {namespace}/{body['metadata']['name']}",
            self._custom.create_namespaced_custom_object, GROUP, VERSION, namespace, RECORDS,
            dict(body)))

    async def add_record_entries(
        self, namespace: str, name: str, entries: Mapping[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Merge new entries in, conditional on resourceVersion (409 -> Conflict)."""
        body = {"metadata": {"resourceVersion": resource_version},
                "spec": {"entries": dict(entries)}}
        return dict(await self._call(
            f"CarbonRecord {namespace}/{name}", self._custom.patch_namespaced_custom_object,
            GROUP, VERSION, namespace, RECORDS, name, body, _content_type=MERGE_PATCH))

    async def list_records(
        self, namespace: str, label_selector: str, limit: int, token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of CarbonRecords and the continue token (None at the end)."""
        kwargs: dict[str, Any] = {"label_selector": label_selector, "limit": limit}
        if token:
            kwargs["_continue"] = token
        page = await self._call(f"CarbonRecords in {namespace}",
                                self._custom.list_namespaced_custom_object,
                                GROUP, VERSION, namespace, RECORDS, **kwargs)
        return list(page.get("items") or []), (page.get("metadata") or {}).get("continue") or None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
