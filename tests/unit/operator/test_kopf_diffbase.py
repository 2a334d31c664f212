"""NoDiffBase (operator/kopf_diffbase.py) is right only while every kopf registry the operator
builds has event handlers and no change or spawning handlers: this keeps it so."""

from __future__ import annotations

from types import SimpleNamespace

import kopf
from carbontrack.operator.handlers import build_registry, configure_kopf
from carbontrack.operator.kopf_diffbase import NoDiffBase
from carbontrack.operator.settings import OperatorSettings
from carbontrack.operator.workloads import default_registry


def test_the_operator_registers_event_handlers_only() -> None:
    registry = build_registry(SimpleNamespace(registry=default_registry(), settings=None))
    assert len(list(registry._watching.get_all_handlers())) == len(list(default_registry())) + 1  # + budgets
    assert list(registry._changing.get_all_handlers()) == []  # on.create/update/resume/delete
    assert list(registry._spawning.get_all_handlers()) == []  # daemons, timers


def test_configured_kopf_builds_no_essence_and_stores_nothing() -> None:
    settings = kopf.OperatorSettings()
    configure_kopf(settings, OperatorSettings(prometheus_url="http://prometheus.invalid"))
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, NoDiffBase)
    body = kopf.Body({"metadata": {"name": "j", "uid": "u", "labels": {"a": "b"}}, "spec": {"x": 1}})
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    assert not patch  # no last-handled-configuration annotation written
