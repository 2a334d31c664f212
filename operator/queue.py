"""The accounting queue: one task per finished Job UID, retried until its accounting lands.

Queueing is separate from processing (as in kopf): ``process`` does the work for one Job and
raises NotReady (Prometheus has not scraped past the end yet), TemporaryError, QueryError or
Conflict to be retried; this module decides when. Nothing is lost on restart: an
unaccounted Job (held by the finalizer) is the durable to-do item and kopf re-lists it.

``process`` runs within ``max_concurrent_accountings`` (it queries Prometheus and writes the
record) and returns a second step, which runs outside that limit (it waits on batched
writes: completion.py); an error in either retries the whole, which finds the record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from carbontrack.core.errors import TemporaryError

from .accounting import NotReady
from .jobs import JobFacts
from .kube import Conflict
from .metrics import OperatorMetrics
from .prometheus import QueryError
from .settings import OperatorSettings

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[None]]


class AccountingQueue:
    def __init__(
        self,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        process: Callable[[JobFacts], Awaitable[Step]],
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._process = process
        self._sleep = sleep
        self.jobs: dict[str, JobFacts] = {}  # latest facts of Jobs not yet accounted/finished
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._semaphore = asyncio.Semaphore(settings.max_concurrent_accountings)
        self._stopping = False

    def submit(self, facts: JobFacts) -> None:
        """Account this Job (again, if a try is not running); the task reads the latest facts."""
        task = self._tasks.get(facts.uid)
        self.jobs[facts.uid] = facts
        if task is not None and not task.done():
            return
        self._tasks[facts.uid] = asyncio.create_task(self._until_done(facts.uid))
        self._metrics.pending_jobs.set(len(self._tasks))

    async def _until_done(self, uid: str) -> None:
        settings = self._settings
        delay = settings.retry_initial_s
        poll = settings.scrape_interval_s  # grows while Prometheus is not ready for the Job
        try:
            while not self._stopping:
                facts = self.jobs.get(uid)
                if facts is None:
                    return
                try:
                    async with self._semaphore:
                        then = await self._process(facts)
                    await then()
                    return
                except NotReady as wait:
                    if wait.exact:
                        await self._sleep(max(wait.delay_s, 0.05))
                    else:
                        await self._sleep(max(poll, 0.05))
                        # Grow gently up to a few scrape intervals: a late series is usually
                        # one or two scrapes late, and waiting Jobs must not flood Prometheus.
                        poll = min(poll * 1.5, 5 * settings.scrape_interval_s, settings.retry_max_s)
                except TemporaryError as err:
                    self._metrics.accounting_failures.labels(reason="temporary").inc()
                    log.warning("accounting Job %s/%s postponed %.0fs: %s",
                                facts.namespace, facts.name, delay, err)
                    await self._sleep(delay)
                    delay = min(delay * 2, settings.retry_max_s)
                except (QueryError, Conflict) as err:
                    self._metrics.accounting_failures.labels(reason=type(err).__name__.lower()).inc()
                    log.error("accounting Job %s/%s failed: %s", facts.namespace, facts.name, err)
                    await self._sleep(delay)
                    delay = min(delay * 2, settings.retry_max_s)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not kill the queue silently: log, count, retry later
            self._metrics.accounting_failures.labels(reason="internal").inc()
            log.exception("accounting of Job UID %s crashed; retrying later", uid)
            await self._sleep(settings.retry_max_s)
            self._tasks.pop(uid, None)
            facts = self.jobs.get(uid)
            if facts is not None:
                self.submit(facts)
            return
        finally:
            if self._tasks.get(uid) is asyncio.current_task():
                self._tasks.pop(uid, None)
            self._metrics.pending_jobs.set(len(self._tasks))

    async def close(self) -> None:
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
