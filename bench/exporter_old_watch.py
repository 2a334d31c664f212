"""The exporter with its former pod watch (the `kubernetes` Python client), for comparison.

Only bench/bench_exporter_memory.py runs this: it is the exporter's pod watch as it was up
to commit a1fb23e (exporter/pods.py PodWatcher and exporter/cli.py build_kube), wired into
today's exporter through ``cli.main``'s ``make_watcher``, so the two runs differ only in
the watch. Needs the `kubernetes` package (the dev extra has it).

Run: python3 bench/exporter_old_watch.py <carbontrack exporter arguments>
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from carbontrack.exporter.cli import main
from carbontrack.exporter.pods import PodCache, meta_from_event, pod_meta
from carbontrack.exporter.settings import Settings

log = logging.getLogger("carbontrack.exporter.pods")


class OldPodWatcher:
    """List-then-watch with kubernetes.client.CoreV1Api and kubernetes.watch.Watch."""

    def __init__(self, core_v1: Any, node_name: str, cache: PodCache,
                 watch_factory: Callable[[], Any], retry_s: float = 5.0) -> None:
        self.api = core_v1
        self.selector = f"spec.nodeName={node_name}"
        self.cache = cache
        self.watch_factory = watch_factory
        self.retry_s = retry_s
        self.healthy = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Any = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._list_and_watch()
            except Exception as err:
                self.healthy = False
                log.warning("pod watch (%s) failed: %s; retrying in %.0f s",
                            self.selector, err, self.retry_s)
                self._stop.wait(self.retry_s)

    def _list_and_watch(self) -> None:
        lst = self.api.list_pod_for_all_namespaces(field_selector=self.selector)
        client = self.api.api_client
        metas = [pod_meta(client.sanitize_for_serialization(p)) for p in lst.items]
        self.cache.replace_all(metas)
        self.healthy = True
        rv = lst.metadata.resource_version
        self._watch = self.watch_factory()
        for event in self._watch.stream(
            self.api.list_pod_for_all_namespaces,
            field_selector=self.selector,
            resource_version=rv,
            timeout_seconds=300,
        ):
            if self._stop.is_set():
                return
            meta = meta_from_event(event["type"],
                                   client.sanitize_for_serialization(event["object"]))
            if meta is not None:
                self.cache.put(meta)


def old_watcher(s: Settings, pods: PodCache) -> OldPodWatcher:
    from kubernetes import client, config, watch

    if s.kubeconfig is not None:
        config.load_kube_config(config_file=str(s.kubeconfig))
    else:
        config.load_incluster_config()
    return OldPodWatcher(client.CoreV1Api(), s.node_name, pods, watch.Watch)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], make_watcher=old_watcher))
