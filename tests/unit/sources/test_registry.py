"""The source and GPU vendor registry: selection rules, flags, resource names."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.core.types import SourceHealth
from carbontrack.sim.powercap import FakePowercap
from carbontrack.sim.procfs import Ticks, write_meminfo, write_proc_stat
from carbontrack.sources import registry
from carbontrack.sources.registry import AMD, NVIDIA, Kind, SourceContext, SourceSpec


@pytest.fixture
def machine(tmp_path: Path) -> SourceContext:
    sysfs, procfs = tmp_path / "sys", tmp_path / "proc"
    write_proc_stat(procfs, Ticks(), 4)
    write_meminfo(procfs, 16 << 30)
    FakePowercap(sysfs).add_package(0)
    return SourceContext(sysfs=sysfs, procfs=procfs, env={})


def names(built: registry.Built) -> list[str]:
    return [s.name for s in built.sources]


def test_estimates_stand_aside_for_a_cpu_counter(machine: SourceContext) -> None:
    built = registry.build(machine, {"rapl", "cpu-estimate", "memory-estimate"})
    assert names(built) == ["rapl"] and built.down == {}


def test_estimates_cover_a_machine_without_a_counter(machine: SourceContext, tmp_path: Path
                                                     ) -> None:
    ctx = SourceContext(sysfs=tmp_path / "empty", procfs=machine.procfs)
    built = registry.build(ctx, {"rapl", "cpu-estimate", "memory-estimate"})
    assert names(built) == ["cpu-estimate", "memory-estimate"]
    assert set(built.down) == {"rapl"}


def test_fixed_cpu_watts_skips_the_counter(machine: SourceContext) -> None:
    ctx = SourceContext(sysfs=machine.sysfs, procfs=machine.procfs, cpu_watts=65.0)
    assert names(registry.build(ctx, {"rapl", "cpu-estimate"})) == ["cpu-estimate"]


class _Unreadable:
    """A CPU counter that opens but cannot be read (RAPL's energy_uj root-only)."""

    name = "counter-x"
    closed = False

    def read(self) -> list[object]:
        return []

    def health(self) -> SourceHealth:
        return SourceHealth(False, "energy_uj not readable")

    def close(self) -> None:
        _Unreadable.closed = True


def test_an_unreadable_counter_is_dropped_only_when_health_is_required(
        machine: SourceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType("counter_x")
    mod.open_source = lambda ctx: _Unreadable()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "counter_x", mod)
    specs = [SourceSpec("counter-x", "x", True, Kind.CPU_COUNTER, "counter_x", "X", "x"),
             registry.spec("cpu-estimate")]
    lenient = registry.build(machine, {"counter-x", "cpu-estimate"}, specs=specs)
    assert names(lenient) == ["counter-x"]  # the exporter keeps it: its health says why
    strict = SourceContext(sysfs=machine.sysfs, procfs=machine.procfs, require_healthy=True)
    built = registry.build(strict, {"counter-x", "cpu-estimate"}, specs=specs)
    assert names(built) == ["cpu-estimate"]  # the tracker estimates instead
    assert built.down == {"counter-x": "energy_uj not readable"}
    assert _Unreadable.closed


def test_disabled_and_missing_gpu_libraries(machine: SourceContext) -> None:
    ctx = SourceContext(sysfs=machine.sysfs, procfs=machine.procfs, env={}, detect_gpus=True)
    built = registry.build(ctx, {"rapl", "nvml", "amdsmi"})
    assert names(built) == ["rapl"] or "nvml" in names(built)  # a real GPU host may have one
    assert "amdsmi" not in built.down  # not present: not tried, no noise


def test_a_module_that_does_not_import_is_a_reason_not_a_crash(machine: SourceContext) -> None:
    broken = SourceSpec("vendor-x", "vendor-x", True, Kind.GPU, "carbontrack.sources.nope",
                        "Vendor X", "x")
    built = registry.build(machine, {"vendor-x"}, specs=[broken])
    assert built.sources == []
    assert built.down["vendor-x"].startswith("Vendor X support unavailable: No module named")


def test_named_gpus_that_are_missing_are_a_config_error(machine: SourceContext,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from carbontrack.core.errors import SourceUnavailable
    from carbontrack.sources import nvml

    def no_nvml(ctx: SourceContext) -> object:
        raise SourceUnavailable("NVML unavailable (no driver)")

    monkeypatch.setattr(nvml, "open_source", no_nvml)
    ctx = SourceContext(sysfs=machine.sysfs, procfs=machine.procfs, gpu_indices=(0, 1))
    with pytest.raises(ConfigError, match=r"^--gpus 0,1: NVML unavailable \(no driver\)$"):
        registry.build(ctx, {"nvml"})


def test_flags_and_defaults() -> None:
    assert registry.flags() == {
        "rapl": (True, registry.spec("rapl").help),
        "nvml": (True, registry.spec("nvml").help),
        "amdsmi": (False, registry.spec("amdsmi").help),
        "estimate": (True, registry.spec("cpu-estimate").help),
    }
    assert {"rapl", "nvml", "cpu-estimate", "memory-estimate"} == registry.DEFAULT_ENABLED
    assert registry.enabled_by_flags({"estimate": False, "amdsmi": True}) == {
        "rapl", "nvml", "amdsmi"}


@pytest.mark.parametrize(("resource", "vendor", "unsupported"), [
    ("nvidia.com/gpu", NVIDIA, False),
    ("nvidia.com/mig-3g.40gb", NVIDIA, False),
    ("amd.com/gpu", AMD, False),
    ("amd.com/cpx_nps4", AMD, False),  # an AMD partition resource
    ("gpu.intel.com/i915", None, True),
    ("habana.ai/gaudi", None, True),
    ("example.com/gpu", None, True),
    ("example.com/fpga", None, False),
    ("rdma/hca_shared_devices_a", None, False),
])
def test_resource_names(resource: str, vendor: registry.GpuVendor | None,
                        unsupported: bool) -> None:
    assert registry.vendor_for_resource(resource) == vendor
    assert registry.is_unsupported_accelerator(resource) is unsupported


def test_gpu_count_adds_every_vendor() -> None:
    limits = {"nvidia.com/gpu": "2", "amd.com/gpu": 4, "cpu": "8", "gpu.intel.com/i915": "1"}
    assert registry.gpu_count(limits) == 6.0
