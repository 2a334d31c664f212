"""Reports group finished workloads by kind: the operator records each workload's kind
(PyTorchJob, JobSet, RayJob, Job, ...) and the totals have a block per kind."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from carbontrack.core.records import RecordEntry, build_entry, entry_as_job
from carbontrack.reports.build import Scope, build_report
from carbontrack.reports.ghg import GhgSettings
from carbontrack.reports.model import LineItem
from carbontrack.reports.sci import EmbodiedModel, EmbodiedSettings
from carbontrack.reports.sources_cluster import IdentityKeys, job_to_line

T0 = datetime(2026, 12, 7, 10, tzinfo=timezone.utc)


def entry(uid: str, kind: str, grams: float, kwh: float) -> RecordEntry:
    end = T0 + timedelta(hours=1)
    report = {"job": {"namespace": "ns", "name": uid, "uid": uid, "outcome": "Complete"},
              "window": {"start": T0.isoformat(), "end": end.isoformat()},
              "energyKwhByComponent": {"gpu": kwh}, "co2eGramsByComponent": {"gpu": grams},
              "pue": {"n1": 1.0}, "nodes": ["n1"], "zones": ["DE"],
              "intensityFactors": [{"node": "n1", "zone": "DE", "source": "catalogue", "basis": "location"}]}
    annotations = {"carbontrack.io/energy-kwh": f"{kwh:.6g}", "carbontrack.io/co2e-grams": f"{grams:.6g}",
                   "carbontrack.io/grid-zone": "DE", "carbontrack.io/intensity-g-per-kwh": f"{grams / kwh:.6g}",
                   "carbontrack.io/method": "measured", "carbontrack.io/accounted-at": end.isoformat(),
                   "carbontrack.io/accounted-uid": uid, "carbontrack.io/report": json.dumps(report)}
    data = build_entry(uid=uid, namespace="ns", name=uid, kind=kind, outcome="Complete", started_at=T0,
                       finished_at=end, accounted_at=end, co2e_grams=grams, energy_kwh=kwh,
                       labels={"team": "a"}, budgets=frozenset(), annotations=annotations, inputs={},
                       template={}, parallelism=1, queries={})
    return RecordEntry.from_dict(uid, "ns", data)


def test_totals_by_workload_kind_partition_the_lines() -> None:
    entries = [entry("p1", "PyTorchJob", 40.0, 0.1), entry("p2", "PyTorchJob", 20.0, 0.05),
               entry("s1", "JobSet", 10.0, 0.025), entry("r1", "RayJob", 5.0, 0.0125), entry("j1", "Job", 1.0, 0.0025)]
    lines = []
    for e in entries:
        line = job_to_line(entry_as_job(e), IdentityKeys())
        assert isinstance(line, LineItem)
        lines.append(line.with_(workload_kind=e.data["job"]["kind"]))
    embodied = EmbodiedModel(EmbodiedSettings(default_instance_type=""), {})
    report = build_report(lines, Scope(), GhgSettings(), embodied)
    body = report.to_json()
    by_kind = body["totals"]["by_workload_kind"]
    assert sorted(by_kind) == ["Job", "JobSet", "PyTorchJob", "RayJob"]
    assert by_kind["PyTorchJob"]["jobs"] == 2
    assert by_kind["PyTorchJob"]["location_kgco2e"] == pytest.approx(0.060)
    assert by_kind["JobSet"]["location_kgco2e"] == pytest.approx(0.010)
    assert sum(t["location_kgco2e"] for t in by_kind.values()) == pytest.approx(
        body["totals"]["all"]["location_kgco2e"])
    assert {line.workload_kind for line in report.lines} == {"Job", "JobSet", "PyTorchJob", "RayJob"}
