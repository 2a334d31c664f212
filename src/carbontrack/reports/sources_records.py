"""Report lines from the operator's CarbonRecords: the accounting of record, which outlives
the Jobs (TTL, deletion) and cannot be written by namespace users.

``RecordSource`` lists CarbonRecord objects through an injected ``kubernetes`` ApiClient
(paged) and turns each entry into a line with the same builder as live Jobs
(``job_to_line`` on ``entry_as_job``), so a line means the same whatever its origin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from carbontrack.core.errors import ConfigError, TemporaryError
from carbontrack.core.records import (
    GROUP,
    MONTH_LABEL,
    PLURAL,
    RECORD_LABEL,
    VERSION,
    RecordEntry,
    days_between,
    entry_as_job,
    parse_object,
)

from .label_selector import parse_selector
from .model import LineItem
from .sources_cluster import IdentityKeys, Skipped, job_to_line

Progress = Callable[[str], None]


def record_selector(since: datetime | None, until: datetime | None) -> str:
    """Label selector of the record objects that can hold entries of [since, until)."""
    base = f"{RECORD_LABEL}=jobs"
    if since is None or until is None:
        return base
    months = sorted({d[:7] for d in days_between(since, until)})
    return f"{base},{MONTH_LABEL} in ({','.join(months)})"


def in_window(entry: RecordEntry, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or entry.finished_at >= since) and (until is None or entry.finished_at < until)


class RecordSource:
    PAGE = 50  # objects of up to 768 KiB each: pages stay bounded

    def __init__(self, api_client: Any, keys: IdentityKeys, progress: Progress | None = None):
        from kubernetes import client  # the [operator] extra; imported when used

        self._custom = client.CustomObjectsApi(api_client)
        self._keys = keys
        self._progress = progress or (lambda _msg: None)

    def objects(self, namespaces: Sequence[str], since: datetime | None,
                until: datetime | None) -> Iterator[Mapping[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        selector = record_selector(since, until)
        targets: list[str | None] = list(namespaces) or [None]
        for ns in targets:
            token: str | None = None
            while True:
                kw: dict[str, Any] = {"limit": self.PAGE, "label_selector": selector}
                if token:
                    kw["_continue"] = token
                try:
                    page: Any = (
                        self._custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, **kw)
                        if ns else self._custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kw)
                    )
                except ApiException as err:
                    if err.status in (401, 403):
                        raise ConfigError(
                            f"Kubernetes API refused to list CarbonRecords (HTTP {err.status}); the "
                            "report's credentials need get/list on carbonrecords.carbontrack.io "
                            "(the chart aggregates it into the view role)") from None
                    if err.status == 404:
                        raise ConfigError("no CarbonRecord CRD on this cluster: install the chart's "
                                          "crds/ (the operator records every accounted Job in CarbonRecords)") from None
                    raise TemporaryError(f"Kubernetes API failed to list CarbonRecords: HTTP "
                                         f"{err.status} {err.reason}") from None
                except OSError as err:
                    raise TemporaryError(f"cannot reach the Kubernetes API: {err}") from None
                yield from page.get("items") or []
                token = (page.get("metadata") or {}).get("continue") or None
                if not token:
                    break

    def lines(
        self, namespaces: Sequence[str], selector: str, since: datetime | None, until: datetime | None,
        node_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> tuple[list[LineItem], list[Skipped], set[str]]:
        """Lines of the recorded Jobs in scope, entries that could not become lines (with
        why), and the UIDs of every recorded Job (in or out of scope)."""
        match = parse_selector(selector)
        lines: list[LineItem] = []
        skipped: list[Skipped] = []
        recorded: set[str] = set()
        objects = 0
        for obj in self.objects(namespaces, since, until):
            objects += 1
            parsed = parse_object(obj)
            ns = str((obj.get("metadata") or {}).get("namespace", ""))
            for err in parsed.errors:
                skipped.append(Skipped(ns, str((obj.get("metadata") or {}).get("name", "")), str(err)))
            for entry in parsed.entries.values():
                recorded.add(entry.uid)
                if not in_window(entry, since, until) or not match(entry.labels):
                    continue
                try:
                    got = job_to_line(entry_as_job(entry), self._keys, node_labels)
                except ConfigError as err:
                    skipped.append(Skipped(ns, entry.name, f"record entry {entry.uid}: {err}"))
                    continue
                if isinstance(got, LineItem):
                    kind = (entry.data.get("job") or {}).get("kind")
                    lines.append(got.with_(workload_kind=str(kind)) if isinstance(kind, str) else got)
                else:
                    skipped.append(got)
        self._progress(f"cluster: {objects} CarbonRecord objects read, {len(lines)} lines")
        return lines, skipped, recorded
