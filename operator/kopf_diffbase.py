"""kopf's diff base for an operator with event handlers only.

kopf builds a diff base ("essence") of every watch event before calling any handler: a
``copy.deepcopy`` of the whole object (managedFields and all), and then the diff against the
last handled state. Only change handlers (on.create/update/resume) read either; this operator
registers event handlers only (handlers.py, long_running.py, kueue_admission.py), so that work
was thrown away for each of the ~3 events per workload (listed, finalizer added, membership
written): 30,000 deep copies of ~17 KiB objects for 10,000 workloads present at start-up.
"""

from __future__ import annotations

from typing import Any, cast

import kopf


class NoDiffBase(kopf.DiffBaseStorage):
    """An empty essence and no stored state: right only while no change handler exists."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None
