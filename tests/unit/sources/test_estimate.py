"""CPU and memory estimation (the path of a cloud VM without RAPL)."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

from carbontrack.core.errors import ConfigError, SourceUnavailable
from carbontrack.core.types import Component, Method
from carbontrack.sim.procfs import (
    FakeProcStat,
    Ticks,
    write_arm_cpuinfo,
    write_cpuinfo,
    write_meminfo,
)
from carbontrack.sources import estimate
from carbontrack.sources.estimate import (
    CpuEstimateSource,
    MemoryEstimateSource,
    normalise_model,
    resolve_cpu_power_model,
)
from carbontrack.sources.procstat import CpuInfo
from carbontrack.sources.rapl import RaplSource

REPO = Path(__file__).parents[3]
FIXTURES = REPO / "tests" / "fixtures"
RAW = REPO / "data" / "raw"

# CCF aws coefficients for Cascade Lake, as packaged (ccf-coefficients, 6 decimals)
CASCADE_MIN, CASCADE_MAX = 0.690298, 4.063194
FIXTURE_TICKS = Ticks(812345, 12, 101234, 3012345, 2345, 0, 3456, 1234)


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def vm(tmp_path: Path) -> tuple[Path, Path, FakeProcStat, FakeClock]:
    """The checked-in c5.xlarge procfs and an empty sysfs (no powercap), copied to tmp."""
    procfs = tmp_path / "proc"
    shutil.copytree(FIXTURES / "simulated-procfs-ec2-c5-nometal", procfs)
    sysfs = tmp_path / "sys"
    sysfs.mkdir()
    return procfs, sysfs, FakeProcStat(procfs, 4, ticks=FIXTURE_TICKS), FakeClock()


def test_machine_without_rapl_estimates_cpu_with_exact_joules(vm):
    procfs, sysfs, stat, clock = vm
    with pytest.raises(SourceUnavailable):
        RaplSource(sysfs)
    src = CpuEstimateSource(procfs, clock=clock)
    model = src.power_model
    assert (model.min_watts_per_vcpu, model.max_watts_per_vcpu) == (CASCADE_MIN, CASCADE_MAX)
    assert model.vcpus == 4
    assert model.architecture == "Cascade Lake"
    assert model.basis == "CCF aws coefficients for Cascade Lake (by model '8275cl')"
    assert src.read()[0].joules == 0.0
    stat.advance(10.0, busy_cpus=2.0)  # 50 % of 4 vCPUs for 10 s
    clock.now += 10.0
    (r,) = src.read()
    expected = 4 * (CASCADE_MIN + (CASCADE_MAX - CASCADE_MIN) * 0.5) * 10.0
    assert r.joules == pytest.approx(expected, rel=1e-12)
    assert r.joules == pytest.approx(95.06984, rel=1e-9)
    assert (r.component, r.device, r.method) == (Component.CPU, "cpu-estimate", Method.ESTIMATED)
    assert r.uncertainty == 0.30
    assert r.model == "Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz"
    # idle interval: the floor still draws power
    stat.advance(5.0, busy_cpus=0.0)
    clock.now += 5.0
    assert src.read()[0].joules == pytest.approx(expected + 4 * CASCADE_MIN * 5.0, rel=1e-12)
    assert src.health().up


def test_steal_is_not_our_utilisation(vm):
    procfs, _, stat, clock = vm
    src = CpuEstimateSource(procfs, clock=clock)
    stat.advance(10.0, busy_cpus=1.0, steal_cpus=2.0)  # 1 of 4 busy, 2 stolen by neighbours
    clock.now += 10.0
    expected = 4 * (CASCADE_MIN + (CASCADE_MAX - CASCADE_MIN) * 0.25) * 10.0
    assert src.read()[0].joules == pytest.approx(expected, rel=1e-12)


def test_watts_override_is_tdp_of_visible_cpus(vm):
    procfs, _, stat, clock = vm
    src = CpuEstimateSource(procfs, watts=40.0, clock=clock)
    stat.advance(2.0, busy_cpus=4.0)
    clock.now += 2.0
    assert src.read()[0].joules == pytest.approx(80.0, rel=1e-12)
    stat.advance(1.0, busy_cpus=0.0)
    clock.now += 1.0
    assert src.read()[0].joules == pytest.approx(80.0 + 40.0 * 0.74 / 3.5, rel=1e-12)
    assert src.power_model.basis.startswith("override: 40 W TDP for 4 vCPUs")


def test_unreadable_proc_stat_keeps_last_value_and_reports(vm):
    procfs, _, stat, clock = vm
    src = CpuEstimateSource(procfs, watts=10.0, clock=clock)
    stat.advance(1.0, busy_cpus=4.0)
    clock.now += 1.0
    assert src.read()[0].joules == pytest.approx(10.0)
    (procfs / "stat").unlink()
    clock.now += 1.0
    assert src.read()[0].joules == pytest.approx(10.0)
    assert not src.health().up
    assert "stat" in src.health().message


def test_no_procfs_is_source_unavailable(tmp_path: Path):
    with pytest.raises(SourceUnavailable, match="cannot read"):
        CpuEstimateSource(tmp_path)


def test_hidden_model_name_resolved_by_cpuid(tmp_path: Path):
    # this project's own CI VM: "AMD EPYC", family 25 model 0x11 = Genoa
    write_cpuinfo(tmp_path, model_name="AMD EPYC", n_cpus=2, vendor="AuthenticAMD", family=25, model=0x11)
    from carbontrack.sources.procstat import read_cpuinfo

    m = resolve_cpu_power_model(read_cpuinfo(tmp_path), 2)
    assert m.architecture == "EPYC 4th Gen"
    assert (m.min_watts_per_vcpu, m.max_watts_per_vcpu) == (0.739148, 2.282155)
    assert "CPUID AuthenticAMD family 25 model 0x11 (Genoa (Zen 4))" in m.basis


def test_cascade_lake_and_skylake_share_a_model_number():
    sky = resolve_cpu_power_model(CpuInfo(vendor="GenuineIntel", family=6, model=0x55, stepping=4), 4)
    csl = resolve_cpu_power_model(CpuInfo(vendor="GenuineIntel", family=6, model=0x55, stepping=7), 4)
    assert (sky.architecture, csl.architecture) == ("Skylake", "Cascade Lake")


def test_graviton2_from_arm_cpu_part(tmp_path: Path):
    write_arm_cpuinfo(tmp_path, n_cpus=2, implementer=0x41, part=0xD0C)
    from carbontrack.sources.procstat import read_cpuinfo

    m = resolve_cpu_power_model(read_cpuinfo(tmp_path), 2)
    assert m.architecture == "Graviton2"
    assert (m.min_watts_per_vcpu, m.max_watts_per_vcpu) == (0.474262, 1.692962)


def test_tdp_table_for_desktop_part_and_provider_choice():
    info = CpuInfo(model_name="AMD Ryzen 9 5950X 16-Core Processor", sockets=1, smt=True)
    m = resolve_cpu_power_model(info, 32)
    assert m.uncertainty == 0.40
    assert m.max_watts_per_vcpu == pytest.approx(105.0 / 32)
    assert m.min_watts_per_vcpu == pytest.approx(105.0 / 32 * 0.74 / 3.5)
    assert "TDP table (codecarbon) for 'ryzen 9 5950x'" in m.basis
    # green-algorithms rows know the core count: TDP per hardware thread
    g = resolve_cpu_power_model(CpuInfo(model_name="Intel(R) Core(TM) i9-12900K", smt=True), 8)
    assert "i9-12900k" in g.basis
    assert g.max_watts_per_vcpu == pytest.approx(125.0 / 32)
    # the provider picks CCF's table; gcp's Skylake row differs from aws's
    aws = resolve_cpu_power_model(CpuInfo(model_name="Intel Xeon Gold 6148"), 4, provider="aws")
    gcp = resolve_cpu_power_model(CpuInfo(model_name="Intel Xeon Gold 6148"), 4, provider="gcp")
    assert (aws.architecture, gcp.architecture) == ("Skylake", "Skylake")
    assert (aws.max_watts_per_vcpu, gcp.max_watts_per_vcpu) == (4.10417, 3.867946)


def test_unknown_cpu_falls_back_to_ccf_average_with_wide_band():
    m = resolve_cpu_power_model(CpuInfo(model_name="Mystery CPU 9000"), 4)
    assert (m.min_watts_per_vcpu, m.max_watts_per_vcpu) == (0.74, 3.5)
    assert m.uncertainty == 0.50
    assert "pass the CPU model or its TDP" in m.basis


def test_cpu_model_override_beats_cpuinfo():
    info = CpuInfo(model_name="AMD EPYC", vendor="AuthenticAMD", family=25, model=0x11)
    m = resolve_cpu_power_model(info, 4, cpu_model="Intel Xeon Platinum 8480+")
    assert m.architecture == "Sapphire Rapids"
    assert m.model == "Intel Xeon Platinum 8480+"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"provider": "ibm"}, "unknown CCF provider 'ibm': use one of aws, gcp, azure"),
        ({"watts": 0.0}, "CPU watts override must be a positive number of watts, got 0.0"),
        ({"watts": float("nan")}, "CPU watts override must be a positive number of watts"),
    ],
)
def test_bad_overrides_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("+", r"\+")):
        resolve_cpu_power_model(CpuInfo(), 4, **kwargs)


def test_memory_estimate_from_meminfo_exact_joules(tmp_path: Path):
    write_meminfo(tmp_path, 16 * 1024**3)
    clock = FakeClock()
    src = MemoryEstimateSource(tmp_path, clock=clock)
    assert src.gb == 17.179869184
    assert src.watts == pytest.approx(17.179869184 * 0.392, rel=1e-12)
    clock.now += 3600.0
    (r,) = src.read()
    assert r.joules == pytest.approx(17.179869184 * 0.000392 * 3.6e6, rel=1e-12)
    assert (r.component, r.method, r.uncertainty) == (Component.DRAM, Method.ESTIMATED, 0.5)
    assert MemoryEstimateSource(tmp_path, gb=2.0, clock=clock).watts == pytest.approx(0.784)
    with pytest.raises(ConfigError, match="positive number of GB"):
        MemoryEstimateSource(tmp_path, gb=-1.0)


def test_every_constant_carries_provenance():
    raw = json.loads(resources.files("carbontrack.sources.data").joinpath("constants.json").read_text())
    assert set(raw) == {
        "memory_kwh_per_gb_hour",
        "fallback_min_watts_per_vcpu",
        "fallback_max_watts_per_vcpu",
    }
    for name, entry in raw.items():
        for key in ("value", "unit", "source", "year", "basis", "licence"):
            assert entry.get(key) not in (None, ""), f"{name} lacks {key}"
    prov = resources.files("carbontrack.sources.data").joinpath("PROVENANCE.md").read_text()
    for data_file in resources.files("carbontrack.sources.data").iterdir():
        if data_file.name.endswith((".csv", ".json")):
            assert data_file.name in prov, f"{data_file.name} not described in PROVENANCE.md"
    for licence in ("Apache-2.0", "CC BY 4.0", "MIT"):
        assert licence in prov


def _builder():
    spec = importlib.util.spec_from_file_location("build_source_data", REPO / "scripts" / "build_source_data.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_builder_and_runtime_normalise_models_the_same_way():
    builder = _builder()
    for name in (
        "Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz",
        "AMD EPYC 7R13 48-Core Processor",
        "Intel® Xeon® 6972P",
        "EPYC 7601, Dell SKU [338-BNCG]",
    ):
        assert builder.normalise_model(name) == normalise_model(name)
    assert normalise_model("Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz") == "platinum 8275cl"


@pytest.mark.skipif(not (RAW / "ccf-coefficients").is_dir(), reason="raw reference data not present")
def test_packaged_tables_are_what_the_builder_makes(tmp_path: Path):
    assert _builder().main(["--raw", str(RAW), "--out", str(tmp_path)]) == 0
    data = resources.files("carbontrack.sources.data")
    for name in ("ccf_cpu_coefficients.csv", "cpu_model_architecture.csv", "cpu_tdp.csv"):
        assert (tmp_path / name).read_text() == data.joinpath(name).read_text(), name


def test_packaged_coefficients_are_sane():
    coeff = estimate.ccf_coefficients()
    assert len(coeff) == 37
    for (provider, arch), (lo, hi) in coeff.items():
        assert 0 < lo < hi < 10, (provider, arch)
    rows = list(
        csv.DictReader(
            resources.files("carbontrack.sources.data").joinpath("cpuid_architecture.csv").read_text().splitlines()
        )
    )
    archs = {a for (_, a) in coeff}
    assert {r["architecture"] for r in rows} <= archs  # every CPUID row has coefficients
