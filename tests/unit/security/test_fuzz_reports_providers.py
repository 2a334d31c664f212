"""Property-based tests of two untrusted inputs: tracker CSV/JSON files given to
`carbontrack report`, and live intensity providers' answers. A tracker file gives a line item
with finite, non-negative energy, emissions and GPU-hours, or a ConfigError naming the file;
a provider's answer gives a finite, non-negative factor (live, or the static one with the
reason). Each property runs 1,000 examples."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from carbontrack.core.errors import ConfigError
from carbontrack.intensity.catalogue import Catalogue
from carbontrack.intensity.providers.base import LiveProvider
from carbontrack.intensity.providers.electricitymaps import ElectricityMapsProvider
from carbontrack.intensity.providers.gb import GbCarbonIntensityProvider
from carbontrack.intensity.providers.watttime import WattTimeProvider
from carbontrack.reports.model import LineItem
from carbontrack.reports.sources_files import REQUIRED, doc_to_line, read_csv, row_to_line
from carbontrack.tracker.output import csv_header

FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=timezone.utc)

numbers = st.one_of(st.floats(), st.integers(min_value=-(10**30), max_value=10**400))
numberish = st.one_of(numbers.map(str), st.sampled_from(["", "nan", "-inf", "1e999", "-0", "x", "3"]))
times = st.one_of(
    st.datetimes(min_value=datetime(2026, 11, 9), max_value=datetime(2026, 11, 11)).map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "", "noon", "2026-11-10T10:00:00+14:00"]),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=4,
)


def _sound(line: LineItem) -> None:
    for name in ("cpu_kwh", "dram_kwh", "gpu_kwh", "other_kwh", "it_energy_kwh", "facility_energy_kwh",
                 "location_kgco2e", "gpu_hours", "cpu_cores_reserved", "memory_gb_reserved"):
        value = getattr(line, name)
        assert math.isfinite(value) and value >= 0, (name, value)
    assert line.gpu_count >= 0 and line.pue >= 1.0 and line.end >= line.start


rows = st.fixed_dictionaries(
    {k: (times if k == "timestamp" else st.text(max_size=6) if k == "run_id" else numberish) for k in REQUIRED},
    optional={"gpu_count": numberish, "cpu_count": numberish, "ram_total_size": numberish,
              "market_based_emissions": numberish, "intensity_g_per_kwh": numberish, "uncertainty": numberish,
              "project_name": st.text(max_size=6), "intensity_year": st.text(max_size=5)},
)


@FUZZ
@given(rows)
@example({"timestamp": "2026-11-10T10:00:00Z", "run_id": "r", "duration": "-3600", "emissions": "0",
          "cpu_energy": "1", "gpu_energy": "0", "ram_energy": "0", "pue": "1", "gpu_count": "2"})
@example({"timestamp": "2026-11-10T10:00:00Z", "run_id": "r", "duration": "3600", "emissions": "0",
          "cpu_energy": "1", "gpu_energy": "0", "ram_energy": "0", "pue": "1", "gpu_count": "-2"})
@example({"timestamp": "2026-11-10T10:00:00Z", "run_id": "r", "duration": "1e999", "emissions": "0",
          "cpu_energy": "1", "gpu_energy": "0", "ram_energy": "0", "pue": "1"})
def test_tracker_csv_rows(row: dict[str, str]) -> None:
    try:
        line = row_to_line(row, "emissions.csv:2")
    except ConfigError as err:
        assert str(err).startswith("emissions.csv:2")
        return
    _sound(line)


docs = st.one_of(json_values, st.fixed_dictionaries({
    "run_id": st.text(max_size=6), "energy_j": st.one_of(st.dictionaries(st.sampled_from(["cpu", "gpu", "dram", "x"]),
                                                                          numbers, max_size=3), json_values),
    "pue": numbers, "started_at": times, "ended_at": times, "co2e_grams": numbers,
}, optional={"duration_s": numbers, "host": st.fixed_dictionaries({}, optional={
    "gpu_count": numberish, "cpu_count": numberish, "ram_total_size_gb": numbers}),
    "factors": st.lists(st.fixed_dictionaries({}, optional={"year": json_values, "basis": json_values}), max_size=2),
    "market_based_co2e_grams": st.one_of(st.none(), numbers), "uncertainty": st.one_of(st.none(), numbers)}))


@FUZZ
@given(docs)
@example({"run_id": "r", "energy_j": {"cpu": 3.6e6}, "pue": 1.0, "started_at": "2026-11-10T10:00:00Z",
          "ended_at": "2026-11-10T11:00:00Z", "co2e_grams": 1.0, "duration_s": -3600.0, "host": {"gpu_count": 1}})
def test_tracker_json_documents(doc: Any) -> None:
    try:
        line = doc_to_line(doc, "run.json")
    except ConfigError as err:
        assert str(err).startswith("run.json")
        return
    _sound(line)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@FUZZ
@given(st.one_of(st.text(max_size=300),
                 st.lists(st.lists(numberish, min_size=3, max_size=3), max_size=3).map(
                     lambda rs: ",".join(csv_header()) + "\n" + "\n".join(",".join(r) for r in rs))))
def test_tracker_csv_files(workdir: Path, text: str) -> None:
    p = workdir / "emissions.csv"
    p.write_text(text, encoding="utf-8")
    try:
        lines = read_csv(p)
    except ConfigError:
        return
    for line in lines:
        _sound(line)


class Canned:
    """A provider client answering every request with one body (login: a token)."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def get_json(self, path: str, params: Any = None, headers: Any = None, *, cache: bool = True) -> Any:
        return {"token": "t"} if path == "login" else self.body


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


def _check(provider: LiveProvider, zone: str) -> None:
    factor = provider.intensity(zone, NOW - timedelta(hours=1), NOW)
    assert math.isfinite(factor.g_per_kwh) and factor.g_per_kwh >= 0
    assert factor.fallback_reason is None or isinstance(factor.fallback_reason, str)


em_rows = st.lists(st.fixed_dictionaries({"datetime": times, "carbonIntensity": st.one_of(st.none(), numbers)},
                                         optional={"emissionFactorType": json_values}), max_size=4)


@FUZZ
@given(st.one_of(st.fixed_dictionaries({"history": st.one_of(em_rows, json_values)}), json_values))
@example({"history": [{"datetime": "2026-11-10T11:00:00Z", "carbonIntensity": float("nan")}]})
@example({"history": [{"datetime": "2026-11-10T11:00:00Z", "carbonIntensity": 1e308}]})
@example({"history": [{"datetime": "9999-12-31T23:59:59Z", "carbonIntensity": 1}]})
def test_electricity_maps_answers(catalogue: Catalogue, body: Any) -> None:
    _check(ElectricityMapsProvider(catalogue, "t", client=Canned(body), now=lambda: NOW), "DE")  # type: ignore[arg-type]


wt_bodies = st.fixed_dictionaries({
    "meta": st.one_of(st.fixed_dictionaries({"units": st.sampled_from(["lbs_co2_per_mwh", "percentile", "x"]),
                                             "data_point_period_seconds": st.one_of(numbers, numberish)}), json_values),
    "data": st.one_of(st.lists(st.fixed_dictionaries({"point_time": times, "value": st.one_of(st.none(), numbers)}),
                               max_size=4), json_values),
})


@FUZZ
@given(st.one_of(wt_bodies, json_values))
@example({"meta": {"units": "lbs_co2_per_mwh", "data_point_period_seconds": 10**30},
          "data": [{"point_time": "2026-11-10T11:00:00Z", "value": 1}]})
def test_watttime_answers(catalogue: Catalogue, body: Any) -> None:
    p = WattTimeProvider(catalogue, "u", "p", {"DE": "DE_X"}, client=Canned(body), now=lambda: NOW)  # type: ignore[arg-type]
    _check(p, "DE")


gb_rows = st.lists(st.fixed_dictionaries({"from": times, "to": times, "intensity": st.one_of(
    st.fixed_dictionaries({}, optional={"actual": st.one_of(st.none(), numbers),
                                        "forecast": st.one_of(st.none(), numbers)}),
    json_values)}), max_size=4)


@FUZZ
@given(st.one_of(st.fixed_dictionaries({"data": st.one_of(gb_rows, json_values)}), json_values))
@example({"data": [{"from": "2026-11-10T11:00Z", "to": "2026-11-10T12:00Z", "intensity": {"actual": float("inf")}}]})
def test_gb_answers(catalogue: Catalogue, body: Any) -> None:
    _check(GbCarbonIntensityProvider(catalogue, client=Canned(body), now=lambda: NOW), "GB")  # type: ignore[arg-type]


def test_a_provider_answer_nested_past_the_stack_is_malformed_json() -> None:
    # regression: json.loads raises RecursionError (not ValueError) for "[[[[…"
    from carbontrack.intensity.providers.http import HttpSettings, JsonHttpClient, ProviderUnavailable

    client = JsonHttpClient("http://127.0.0.1:1", HttpSettings(retries=0))
    client._fetch = lambda url, headers: b"[" * 100_000  # type: ignore[method-assign]  # the body, no server
    with pytest.raises(ProviderUnavailable, match="malformed JSON"):
        client.get_json("x")
