"""Writes to running workloads (the accounting finalizer, budget membership) done by a few
tasks of their own instead of inside the watch event that asked for them.

Why: kopf keeps each watch event's parsed object (a Job is ~17 KiB of Python objects) until
its handler returns, and it reads its start-up list without waiting for handlers. When the
handler awaited these PATCHes itself, 10,000 workloads present at start-up meant 10,000
objects held at once while the writes queued for the API server (docs/performance/
operator-memory.md). Here an event leaves a small closure and returns; at most ``workers``
writes are in flight.

Per workload only the newest write waits (a later event's write supersedes an older one
that has not started: it carries the newer resourceVersion), and one workload's writes never
run concurrently, so they reach the API server in the order the events came.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet

from carbontrack.core.errors import TemporaryError

from .finalizers import Finalizers
from .jobs import BUDGETS, FINALIZER, JobFacts
from .kube import Conflict, Gone, KubeApi

log = logging.getLogger(__name__)

Write = Callable[[], Awaitable[None]]


class WriteBehind:
    def __init__(self, workers: int = 16) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._workers = workers
        self._pending: OrderedDict[str, Write] = OrderedDict()  # workload UID -> its newest write
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, uid: str, write: Write) -> None:
        """Run ``write`` soon, replacing a write for ``uid`` that has not started."""
        self._pending.pop(uid, None)
        self._pending[uid] = write
        self._idle.clear()
        if len(self._tasks) < self._workers:
            task = asyncio.get_running_loop().create_task(self._work())
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def discard(self, uid: str) -> None:
        """Drop a write for ``uid`` that has not started (the workload is gone or done)."""
        self._pending.pop(uid, None)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def drain(self) -> None:
        """Wait until every submitted write has run."""
        await self._idle.wait()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pending.clear()
        self._idle.set()

    def _next(self) -> tuple[str, Write] | None:
        """The oldest pending write of a workload with no write running."""
        for uid in self._pending:
            if uid not in self._running:
                return uid, self._pending.pop(uid)
        return None

    async def _work(self) -> None:
        while (item := self._next()) is not None:
            uid, write = item
            self._running.add(uid)
            try:
                await write()
            except asyncio.CancelledError:
                raise
            except Exception:  # one workload's failure must not stop the others' writes
                log.exception("write to workload %s failed", uid)
            finally:
                self._running.discard(uid)

    def _done(self, task: asyncio.Task[None]) -> None:
        # A task ends when every pending write is of a workload being written: the task
        # writing it picks it up next, so no new task is needed here.
        self._tasks.discard(task)
        if not self._tasks and not self._pending:
            self._idle.set()


class RunningWrites:
    """What a running workload's watch event asks to write, behind the event: the
    accounting finalizer (conditional on the event's resourceVersion) and the budgets that
    select it (the operator-owned BUDGETS annotation: relabelling does not take it out of
    them, across restarts too)."""

    def __init__(self, kube: KubeApi, finalizers: Finalizers, add_finalizer: bool, workers: int = 16) -> None:
        self._kube, self._finalizers, self._add_finalizer = kube, finalizers, add_finalizer
        self.behind = WriteBehind(workers)

    def observe(self, facts: JobFacts, resource_version: str, budgets: AbstractSet[str]) -> None:
        add = self._add_finalizer and FINALIZER not in facts.finalizers and not facts.deleting
        members = None if budgets <= facts.remembered_budgets else sorted(budgets)
        if not add and members is None:
            self.behind.discard(facts.uid)  # this event shows both written: an older ask is moot
            return
        self.behind.submit(facts.uid, functools.partial(self._write, facts, resource_version, add, members))

    def forget(self, uid: str) -> None:
        self.behind.discard(uid)

    async def _write(self, facts: JobFacts, resource_version: str, add: bool, members: list[str] | None) -> None:
        if add:
            await self._finalizers.add(facts, resource_version)
        if members is None:
            return
        try:
            await self._kube.patch_workload(facts.kind, facts.namespace, facts.name, facts.uid,
                                            {"metadata": {"annotations": {BUDGETS: ",".join(members)}}},
                                            answer=False)
        except (Gone, Conflict, TemporaryError) as err:
            log.info("budget membership not written to %s %s/%s yet: %s", facts.kind, facts.namespace,
                     facts.name, err)
