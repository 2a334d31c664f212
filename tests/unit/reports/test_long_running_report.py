"""The report's long-running section (reports/long_running.py): slices recorded by the
operator become lines through the same builder as Jobs, and are summed per workload with
gCO2e per 1,000 functional units computed by hand here."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from carbontrack.core.records import RecordEntry, build_entry, entry_as_job
from carbontrack.core.slices import slice_key
from carbontrack.reports.build import Scope, build_report
from carbontrack.reports.ghg import GhgSettings
from carbontrack.reports.html import render
from carbontrack.reports.long_running import section
from carbontrack.reports.model import LineItem
from carbontrack.reports.sci import EmbodiedModel, EmbodiedSettings, sci_over
from carbontrack.reports.sources_cluster import IdentityKeys, job_to_line

UTC = timezone.utc
T0 = datetime(2026, 12, 7, 10, tzinfo=UTC)


def slice_entry(i: int, grams: float, kwh: float, units: float | None) -> RecordEntry:
    """What the operator records for slice i of Deployment llm (operator/long_running.py)."""
    start, end = T0 + timedelta(hours=i), T0 + timedelta(hours=i + 1)
    key = slice_key("dep-1", start)
    report = {"job": {"namespace": "ns", "name": "llm", "uid": key, "outcome": "Running"},
              "window": {"start": start.isoformat(), "end": end.isoformat()},
              "energyKwhByComponent": {"cpu": kwh}, "co2eGramsByComponent": {"cpu": grams},
              "pue": {"n1": 1.0}, "nodes": ["n1"], "zones": ["DE"],
              "intensityFactors": [{"node": "n1", "zone": "DE", "source": "catalogue", "basis": "location"}]}
    annotations = {"carbontrack.io/energy-kwh": f"{kwh:.6g}", "carbontrack.io/co2e-grams": f"{grams:.6g}",
                   "carbontrack.io/grid-zone": "DE", "carbontrack.io/intensity-g-per-kwh": f"{grams / kwh:.6g}",
                   "carbontrack.io/method": "measured", "carbontrack.io/accounted-at": end.isoformat(),
                   "carbontrack.io/accounted-uid": key, "carbontrack.io/report": json.dumps(report)}
    inputs = ({"carbontrack.io/functional-unit": "token", "carbontrack.io/functional-units": repr(units)}
              if units is not None else
              {"carbontrack.io/functional-unit": "slice", "carbontrack.io/functional-units": "1"})
    data = build_entry(uid=key, namespace="ns", name="llm", kind="Deployment", outcome="Running",
                       started_at=start, finished_at=end, accounted_at=end, co2e_grams=grams,
                       energy_kwh=kwh, labels={"team": "a"}, budgets=frozenset(), annotations=annotations,
                       inputs=inputs, template={"containers": [{"resources": {"requests": {"cpu": "2"}}}]},
                       parallelism=2, queries={})
    return RecordEntry.from_dict(key, "ns", data)


def lines_of(entries: list[RecordEntry]) -> list[LineItem]:
    out = []
    for e in entries:
        line = job_to_line(entry_as_job(e), IdentityKeys())
        assert isinstance(line, LineItem)
        out.append(line.with_(workload_kind=e.data["job"]["kind"]))
    return out


def test_slices_are_summed_per_workload_with_co2e_per_1000_units() -> None:
    entries = [slice_entry(0, 12.0, 0.03, 4000.0), slice_entry(1, 9.5, 0.025, 2500.0),
               slice_entry(2, 3.0, 0.01, None)]  # the counter had no data in the last slice
    lines = lines_of(entries)
    [w] = section(lines)
    assert (w.namespace, w.name, w.kind, w.uid, w.slices) == ("ns", "llm", "Deployment", "dep-1", 3)
    assert w.contiguous and w.start == T0 and w.end == T0 + timedelta(hours=3)
    assert abs(w.location_gco2e - 24.5) < 1e-9 and abs(w.it_energy_kwh - 0.065) < 1e-12
    assert w.functional_unit == "token" and w.units == 6500.0 and w.units_coverage == "2/3 slices"
    # by hand: CO2e of the slices with units over their units
    assert abs(w.g_per_1000_units - (12.0 + 9.5) / 6500.0 * 1000.0) < 1e-12  # type: ignore[operator]
    # a gap shows
    [gapped] = section(lines_of([entries[0], entries[2]]))
    assert not gapped.contiguous


def test_the_report_has_the_section_and_sci_r_is_the_units() -> None:
    lines = lines_of([slice_entry(0, 12.0, 0.03, 4000.0), slice_entry(1, 9.5, 0.025, 2500.0)])
    embodied = EmbodiedModel(EmbodiedSettings(default_instance_type=""), {})
    report = build_report(lines, Scope(), GhgSettings(), embodied)
    body = report.to_json()
    [w] = body["long_running"]
    assert w["g_per_1000_units"] == (12.0 + 9.5) / 6500.0 * 1000.0
    assert w["sci_g_per_unit"] == sci_over(report.lines) == (12.0 + 9.5) / 6500.0
    # each slice's own SCI has R = its units
    assert [x["sci_g_per_unit"] for x in body["line_items"]] == [12.0 / 4000.0, 9.5 / 2500.0]
    assert [x["workload_kind"] for x in body["line_items"]] == ["Deployment", "Deployment"]
    html = render(report)
    assert "Long-running workloads" in html and "ns/llm" in html and "3.308" in html


def test_jobs_are_not_in_the_section() -> None:
    job = LineItem(source="cluster-annotation", namespace="ns", job="train", job_uid="3f6c-uid")
    assert section([job]) == []
