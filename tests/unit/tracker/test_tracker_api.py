"""track(): context manager, decorator, start/stop; nested and concurrent trackers; loggers;
bad input. Real catalogue, real files; energy counters driven by a manual clock."""

from __future__ import annotations

import csv
import json
import threading
import warnings
from pathlib import Path

import pytest
from tracker_helpers import KWH, PowerSource

from carbontrack.core.errors import ConfigError, UnknownZoneError
from carbontrack.core.types import Component
from carbontrack.intensity.catalogue import Catalogue
from carbontrack.tracker import OverlapWarning, RunResult, track
from carbontrack.tracker.clock import ManualClock
from carbontrack.tracker.registry import Registry
from carbontrack.tracker.scope import MachineScope

CAT = Catalogue.load()


def _deps(clock: ManualClock, registry: Registry | None = None) -> dict[str, object]:
    return dict(
        sources=[PowerSource(clock, {Component.CPU: 100.0, Component.GPU: 300.0})],
        lookup=CAT,
        scope=MachineScope(),
        clock=clock,
        registry=registry or Registry(),
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_context_manager_measures_and_writes_csv_and_json(tmp_path: Path) -> None:
    clock = ManualClock()
    de = CAT.get("DE").g_per_kwh
    with track(zone="DE", pue=1.25, output_dir=tmp_path, **_deps(clock)) as t:
        clock.advance(3600)
    r = t.result
    assert isinstance(r, RunResult)
    assert r.energy_j == {"cpu": 100 * 3600.0, "gpu": 300 * 3600.0}
    assert r.energy_kwh == pytest.approx(0.4)
    assert r.co2e_grams == pytest.approx(0.4 * 1.25 * de)
    assert r.zone == "DE" and r.method == "measured" and r.scope == "machine"
    assert r.factors[0].source.startswith("owid-ember") and r.factors[0].year == 2024
    (row,) = _rows(tmp_path / "emissions.csv")
    assert row["run_id"] == r.run_id
    assert float(row["energy_consumed"]) == pytest.approx(0.4 * 1.25)  # CodeCarbon: includes PUE
    assert float(row["cpu_energy"]) == pytest.approx(0.1 * 1.25)
    assert float(row["gpu_power"]) == pytest.approx(300 * 1.25)
    assert float(row["emissions"]) == pytest.approx(r.co2e_grams / 1000)  # kg
    assert float(row["intensity_g_per_kwh"]) == pytest.approx(de)
    assert row["tracking_mode"] == "machine" and row["pue"] == "1.25" and row["zone"] == "DE"
    doc = json.loads((tmp_path / f"carbontrack-{r.run_id}.json").read_text())
    assert doc["co2e_grams"] == pytest.approx(r.co2e_grams)
    assert doc["factors"][0]["licence"] == "CC BY 4.0"
    assert doc["factors"][0]["basis"] == "average/lifecycle/location-based"
    assert t.files == (tmp_path / "emissions.csv", tmp_path / f"carbontrack-{r.run_id}.json")


def test_decorator_makes_one_run_per_call(tmp_path: Path) -> None:
    clock = ManualClock()

    @track(zone="FR", output_dir=tmp_path, **_deps(clock))
    def work(x: int) -> int:
        clock.advance(36)
        return x * 2

    assert work(3) == 6
    first = work.last_result  # type: ignore[attr-defined]
    assert work(4) == 8
    second = work.last_result  # type: ignore[attr-defined]
    assert first.run_id != second.run_id
    assert first.energy_total_j == second.energy_total_j == 400 * 36
    assert [r["run_id"] for r in _rows(tmp_path / "emissions.csv")] == [first.run_id, second.run_id]


def test_start_stop_cells_and_exception_in_body_still_reports(tmp_path: Path) -> None:
    clock = ManualClock()
    t = track(zone="FR", output_dir=None, **_deps(clock))
    t.start()
    clock.advance(10)
    assert t.stop().energy_total_j == 4000.0
    with pytest.raises(ZeroDivisionError), track(zone="FR", output_dir=tmp_path, **_deps(clock)) as t2:
        clock.advance(1)
        1 / 0  # noqa: B018
    assert t2.result is not None and t2.result.energy_total_j == 400.0
    assert len(_rows(tmp_path / "emissions.csv")) == 1


def test_nested_tracker_reports_its_window_and_parent_is_not_increased() -> None:
    clock = ManualClock()
    reg = Registry()
    with track(zone="DE", output_dir=None, **_deps(clock, reg)) as outer:
        clock.advance(10)
        with track(zone="DE", output_dir=None, **_deps(clock, reg)) as inner:
            clock.advance(5)
        clock.advance(5)
    o, i = outer.result, inner.result
    assert o is not None and i is not None
    assert i.parent_run_id == o.run_id and o.parent_run_id is None
    assert i.energy_total_j == 400 * 5
    assert o.energy_total_j == 400 * 20  # its own window once, not 20 s + the inner 5 s
    assert i.overlaps_with == () and o.overlaps_with == ()
    assert reg.live() == ()


def test_concurrent_trackers_in_two_threads_flag_the_overlap() -> None:
    clock = ManualClock()
    reg = Registry()
    started, release = threading.Event(), threading.Event()
    results: dict[str, RunResult] = {}

    def worker() -> None:
        with track(zone="DE", output_dir=None, **_deps(clock, reg)) as t:
            started.set()
            release.wait()
        assert t.result is not None
        results["worker"] = t.result

    th = threading.Thread(target=worker)
    th.start()
    started.wait()
    with pytest.warns(OverlapWarning, match="do not add their totals"):
        main = track(zone="DE", output_dir=None, **_deps(clock, reg)).start()
    clock.advance(10)
    release.set()
    th.join()
    r = main.stop()
    w = results["worker"]
    assert r.overlaps_with == (w.run_id,) and w.overlaps_with == (r.run_id,)
    assert r.parent_run_id is None and w.parent_run_id is None


def test_loggers_receive_the_result_and_a_failing_logger_loses_nothing(tmp_path: Path) -> None:
    got: list[RunResult] = []

    class Good:
        def on_result(self, result: RunResult) -> None:
            got.append(result)

    class Bad:
        def on_result(self, result: RunResult) -> None:
            raise RuntimeError("tracking server down")

    clock = ManualClock()
    with (
        pytest.warns(UserWarning, match="tracking server down"),
        track(zone="DE", output_dir=tmp_path, loggers=[Bad(), Good()], **_deps(clock)) as t,
    ):
        clock.advance(1)
    assert [r.run_id for r in got] == [t.run_id]
    assert (tmp_path / "emissions.csv").exists()


def test_env_zone_and_pue_apply_when_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARBONTRACK_ZONE", "FR")
    monkeypatch.setenv("CARBONTRACK_PUE", "1.4")
    clock = ManualClock()
    with track(output_dir=None, **_deps(clock)) as t:
        clock.advance(1)
    assert t.result is not None and (t.result.zone, t.result.pue) == ("FR", 1.4)
    with track(zone="DE", pue=1.1, output_dir=None, **_deps(clock)) as t2:
        clock.advance(1)
    assert t2.result is not None and (t2.result.zone, t2.result.pue) == ("DE", 1.1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"zone": "Atlantis"}, UnknownZoneError, "unknown grid zone 'Atlantis'"),
        ({"zone": "DE", "pue": -1.0}, ConfigError, "invalid PUE -1.0"),
        ({"zone": "DE", "interval_s": -5.0}, ConfigError, "invalid interval"),
        ({"zone": "DE", "interval_s": 0.0}, ConfigError, "invalid interval"),
    ],
)
def test_bad_input_fails_before_start_and_writes_nothing(
    tmp_path: Path, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    clock = ManualClock()
    t = track(output_dir=tmp_path, **kwargs, **_deps(clock))
    with pytest.raises(error, match=match):
        t.start()
    assert list(tmp_path.iterdir()) == []


def test_output_dir_is_created_and_unusable_ones_are_errors(tmp_path: Path) -> None:
    clock = ManualClock()
    with track(zone="DE", output_dir=tmp_path / "new" / "runs", **_deps(clock)) as t:
        clock.advance(60)
    assert t.files and all(f.parent == tmp_path / "new" / "runs" for f in t.files)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is not a directory"):
        track(zone="DE", output_dir=tmp_path / "file", **_deps(clock)).start()
    with pytest.raises(ConfigError, match="file is not a directory"):
        track(zone="DE", output_dir=tmp_path / "file" / "sub", **_deps(clock)).start()
    # a run that fails to start (unknown zone) leaves no directory it made
    with pytest.raises(ConfigError, match="unknown grid zone"):
        track(zone="Atlantis", output_dir=tmp_path / "gone" / "deep", **_deps(clock)).start()
    assert not (tmp_path / "gone").exists()


def test_no_warning_for_a_single_tracker() -> None:
    clock = ManualClock()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with track(zone="DE", output_dir=None, **_deps(clock)):
            clock.advance(1)
    assert KWH == 3.6e6


def test_bare_decorator_uses_env_zone_and_real_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARBONTRACK_ZONE", "FR")
    monkeypatch.chdir(tmp_path)

    @track
    def work() -> str:
        return "done"

    assert work() == "done"
    r = work.last_result  # type: ignore[attr-defined]
    assert r.zone == "FR" and r.scope == "process" and r.method in ("measured", "estimated")
    (row,) = _rows(tmp_path / "emissions.csv")  # default output directory: the current one
    assert row["run_id"] == r.run_id


def test_unknown_setting_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown track\\(\\) setting 'zonee'"):
        track(zonee="DE")


def test_summary_table_for_notebooks() -> None:
    clock = ManualClock()
    t = track(zone="DE", pue=1.1, output_dir=None, **_deps(clock))
    with pytest.raises(RuntimeError, match="stop\\(\\) the tracker first"):
        t.summary()
    with t:
        clock.advance(3600)
    table = t.summary()
    # units by magnitude (core.units): 100 W + 300 W for 1 h; facility 0.4 kWh x 1.1 = 440 Wh;
    # 0.44 kWh x 344.13992 g/kWh (DE in the catalogue) = 151.42 g -> 3 significant figures
    assert "energy cpu       100 Wh\n" in table and "energy gpu       300 Wh\n" in table
    assert "energy IT        400 Wh\n" in table and "PUE              1.1\n" in table
    assert "energy facility  440 Wh\n" in table
    assert CAT.get("DE").g_per_kwh == pytest.approx(344.13992)
    assert "emissions        151 gCO2e  (+/-" in table
