"""The accounting finalizer on workloads (Jobs and every kind of operator/workloads/): added
while a Job runs so that a Job deleted right after
it finishes (``ttlSecondsAfterFinished: 0``) stays readable until it is accounted."""

from __future__ import annotations

import logging
from typing import Any

from carbontrack.core.errors import TemporaryError

from .jobs import FINALIZER, JobFacts
from .kube import Conflict, Gone, KubeApi

log = logging.getLogger(__name__)


class Finalizers:
    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube

    async def add(self, facts: JobFacts, resource_version: str) -> None:
        """Ours after the finalizers ``facts`` saw, if the workload is still at ``resource_version``."""
        finalizers = [*facts.finalizers, FINALIZER]
        rv = resource_version
        try:
            await self._kube.set_workload_finalizers(facts.kind, facts.namespace, facts.name, facts.uid, finalizers, rv)
        except (Conflict, Gone, TemporaryError) as err:
            log.info("finalizer not added to Job %s/%s yet: %s", facts.namespace, facts.name, err)

    async def remove(self, facts: JobFacts, body: dict[str, Any] | None = None) -> None:
        """Remove ours (re-reading on conflicts); never touches a namesake with another UID."""
        for _ in range(5):
            if body is None:
                try:
                    body = await self._kube.get_workload(facts.kind, facts.namespace, facts.name)
                except Gone:
                    return
            meta = body.get("metadata") or {}
            if meta.get("uid") != facts.uid:
                return
            current = list(meta.get("finalizers") or [])
            if FINALIZER not in current:
                return
            remaining = [f for f in current if f != FINALIZER]
            try:
                await self._kube.set_workload_finalizers(
                    facts.kind, facts.namespace, facts.name, facts.uid, remaining, str(meta.get("resourceVersion"))
                )
                return
            except Conflict:
                body = None  # re-read and try again
            except Gone:
                return
