"""Per-interval integration: exact arithmetic with a manual clock and scripted counters."""

from __future__ import annotations

import time

import pytest
from tracker_helpers import KWH, FixedShareScope, ScheduleLookup, ScriptedSource

from carbontrack.core.errors import TemporaryError, UnknownZoneError
from carbontrack.core.types import Component, Method
from carbontrack.tracker.clock import ManualClock, SystemClock
from carbontrack.tracker.scope import MachineScope
from carbontrack.tracker.session import Session

CPU = (Component.CPU, "package-0", Method.MEASURED, 0.05)
GPU = (Component.GPU, "GPU-0", Method.MEASURED, 0.05)


def test_emissions_integrate_each_interval_with_its_own_factor() -> None:
    # interval 1: 1 kWh cpu + 1 kWh gpu at 100 g/kWh; interval 2: 2 + 0 kWh at 400 g/kWh
    src = ScriptedSource("s", [CPU, GPU], steps=[[KWH, KWH], [2 * KWH, 0.0]])
    lookup = ScheduleLookup([100.0, 400.0])
    clock = ManualClock()
    s = Session([src], lookup, "XX", 1.5, MachineScope(), clock)
    s.start()
    clock.advance(10)
    s.sample()
    clock.advance(20)
    t = s.stop()
    assert t.intervals == 2
    assert t.duration_s == 30
    assert t.energy_j == {"cpu": 3 * KWH, "gpu": KWH}
    assert t.co2e_grams == pytest.approx((2 * 100 + 2 * 400) * 1.5)  # 1500 g
    # never total energy x final factor (4 kWh x 400 x 1.5 = 2400 g)
    assert t.co2e_grams != pytest.approx(4 * 400 * 1.5)
    # each interval asked the seam for exactly its own window
    assert [(b - a).total_seconds() for a, b in lookup.calls] == [10.0, 20.0]
    assert lookup.calls[0][1] == lookup.calls[1][0]
    assert {(f.g_per_kwh, f.intervals, f.it_energy_j) for f in t.factors} == {
        (100.0, 1, 2 * KWH),
        (400.0, 1, 2 * KWH),
    }


def test_market_based_uses_the_market_factor_for_every_interval() -> None:
    src = ScriptedSource("s", [CPU], steps=[[KWH], [KWH]])
    clock = ManualClock()
    s = Session([src], ScheduleLookup([100.0, 300.0]), "XX", 1.2, MachineScope(), clock, 50.0)
    s.start()
    s.sample()
    t = s.stop()
    assert t.co2e_grams == pytest.approx(1.2 * (100 + 300))
    assert t.market_based_co2e_grams == pytest.approx(1.2 * 2 * 50)


def test_process_share_scales_cpu_and_dram_but_not_gpu() -> None:
    dram = (Component.DRAM, "dram-0", Method.ESTIMATED, 0.3)
    src = ScriptedSource("s", [CPU, dram, GPU], steps=[[1000.0, 100.0, 500.0], [1000.0, 100.0, 500.0]])
    s = Session([src], ScheduleLookup([0.0]), "XX", 1.0, FixedShareScope([0.25, 0.5]), ManualClock())
    s.start()
    s.sample()
    t = s.stop()
    assert t.energy_j == {"cpu": 250.0 + 500.0, "dram": 25.0 + 50.0, "gpu": 1000.0}
    by_dev = {d.device: d for d in t.devices}
    assert by_dev["package-0"].machine_energy_j == 2000.0
    assert by_dev["package-0"].attributed_energy_j == 750.0
    assert by_dev["GPU-0"].attributed_energy_j == by_dev["GPU-0"].machine_energy_j == 1000.0
    # conservation: what the run is charged is the sum over its devices
    assert sum(t.energy_j.values()) == sum(d.attributed_energy_j for d in t.devices)


def test_method_is_the_least_direct_contributor_and_uncertainty_is_energy_weighted() -> None:
    est = (Component.DRAM, "dram-estimate", Method.ESTIMATED, 0.3)
    src = ScriptedSource("s", [CPU, est], steps=[[3000.0, 1000.0]])
    s = Session([src], ScheduleLookup([10.0]), "XX", 1.0, MachineScope(), ManualClock())
    s.start()
    t = s.stop()
    assert t.method == "estimated"
    assert t.uncertainty == pytest.approx((3000 * 0.05 + 1000 * 0.3) / 4000)


def test_a_device_without_energy_does_not_set_the_method() -> None:
    est = (Component.DRAM, "dram-estimate", Method.ESTIMATED, 0.3)
    src = ScriptedSource("s", [CPU, est], steps=[[3000.0, 0.0]])
    s = Session([src], ScheduleLookup([10.0]), "XX", 1.0, MachineScope(), ManualClock())
    s.start()
    assert s.stop().method == "measured"


def test_counter_going_backwards_is_not_booked_and_is_reported() -> None:
    src = ScriptedSource("s", [CPU], steps=[[100.0], [-50.0], [30.0]])
    s = Session([src], ScheduleLookup([1.0]), "XX", 1.0, MachineScope(), ManualClock())
    s.start()
    s.sample()
    s.sample()
    t = s.stop()
    assert t.energy_j == {"cpu": 130.0}
    assert any("backwards" in w for w in t.warnings)


class _FailingLater(ScheduleLookup):
    def intensity(self, zone, start, end):  # type: ignore[no-untyped-def]
        if self.calls:
            raise TemporaryError("provider down")
        return super().intensity(zone, start, end)


def test_lookup_failing_mid_run_reuses_the_last_factor_visibly() -> None:
    src = ScriptedSource("s", [CPU], steps=[[KWH], [KWH]])
    s = Session([src], _FailingLater([200.0]), "XX", 1.0, MachineScope(), ManualClock())
    s.start()
    s.sample()
    t = s.stop()
    assert t.co2e_grams == pytest.approx(400.0)
    assert any("reused the previous factor" in w for w in t.warnings)


def test_unknown_zone_in_the_first_interval_raises() -> None:
    src = ScriptedSource("s", [CPU], steps=[[KWH]])
    s = Session([src], ScheduleLookup([1.0], zone="YY"), "XX", 1.0, MachineScope(), ManualClock())
    s.start()
    with pytest.raises(UnknownZoneError):
        s.sample()


def test_device_appearing_mid_run_counts_from_its_first_reading() -> None:
    class Appearing(ScriptedSource):
        def read(self):  # type: ignore[no-untyped-def]
            out = list(super().read())
            if self.reads >= 2:
                from carbontrack.core.types import EnergyReading

                out.append(EnergyReading(Component.GPU, "GPU-new", 1000.0 * self.reads, Method.MEASURED))
            return out

    src = Appearing("s", [CPU], per_read=[10.0])
    s = Session([src], ScheduleLookup([1.0]), "XX", 1.0, MachineScope(), ManualClock())
    s.start()  # read 1
    s.sample()  # read 2: GPU-new first seen at 2000 J
    s.sample()  # read 3: GPU-new at 3000 J
    t = s.stop()  # read 4: 4000 J
    assert t.energy_j == {"cpu": 30.0, "gpu": 2000.0}


def test_background_thread_books_every_joule_once() -> None:
    # Whatever the number of samples, the booked energy is last minus first reading.
    src = ScriptedSource("s", [CPU], per_read=[5.0])
    s = Session([src], ScheduleLookup([1.0]), "XX", 1.0, MachineScope(), SystemClock())
    s.start(interval_s=0.001)
    while src.reads < 5:
        time.sleep(0.001)
    t = s.stop()
    assert t.intervals == src.reads - 1
    assert t.energy_j["cpu"] == 5.0 * (src.reads - 1)
