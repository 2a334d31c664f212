"""Energy estimates where no counter exists (most cloud VMs): CPU from utilisation, memory
from size. Every reading is ``method=estimated`` and carries an uncertainty band.

CPU model (Cloud Carbon Footprint's): ``P = vCPUs x (min + (max - min) x utilisation)``
with min/max watts per vCPU for the CPU's microarchitecture (SPECpower-derived CCF
coefficients). The coefficients are chosen, in order, from:

1. ``watts`` (user override = the TDP of the visible CPUs): max = watts / vCPUs, min =
   max x the CCF average idle ratio (0.74 / 3.5);
2. the CPU model (``cpu_model`` override or /proc/cpuinfo) -> CCF architecture, by the
   CCF model lists, else by CPUID family/model (VMs often hide the model name);
3. the CPU model -> TDP table (green-algorithms, codecarbon): max per vCPU = TDP / threads
   per package where the core count is known, else TDP x sockets / vCPUs;
4. the CCF average over all architectures.

Utilisation is the busy share of /proc/stat ticks between two reads (steal excluded:
it is another guest's time). Memory: CCF's 0.000392 kWh per GB-hour, whatever its use.
Numbers and their provenance: ``carbontrack/sources/data/PROVENANCE.md``.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carbontrack.core.errors import ConfigError, SourceUnavailable
from carbontrack.core.types import Component, EnergyReading, Method, SourceHealth

from .procstat import CpuInfo, ProcStat, read_cpuinfo, read_memtotal_bytes, read_proc_stat

if TYPE_CHECKING:
    from .registry import SourceContext

# Relative half-widths. Judgement, documented in docs/sources.md: the CCF coefficients of
# one architecture differ by ~10 % between providers, and a linear utilisation model of
# SPECpower curves adds ~20 %; a TDP is a thermal design figure, not a power draw; an
# unknown CPU falls back to an average over architectures a factor 2 apart.
UNCERTAINTY_OVERRIDE = 0.30
UNCERTAINTY_ARCHITECTURE = 0.30
UNCERTAINTY_TDP = 0.40
UNCERTAINTY_FALLBACK = 0.50
UNCERTAINTY_MEMORY = 0.50

PROVIDERS = ("aws", "gcp", "azure")

_NOISE = re.compile(
    r"\((?:r|tm|c)\)|®|™|\bintel\b|\bamd\b|\bxeon\b|\bcore\b|\bcpu\b|\bprocessor\b|"
    r"\b\d+-core\b|@.*$",
    re.IGNORECASE,
)


def normalise_model(text: str) -> str:
    """Lower case, brand words and clock suffix removed: "Intel(R) Xeon(R) Gold 6212U CPU @
    2.40GHz" -> "gold 6212u". scripts/build_source_data.py keys the tables the same way."""
    text = _NOISE.sub(" ", text.lower())
    return " ".join(text.replace(",", " ").split())


@dataclass(frozen=True)
class Constant:
    value: float
    unit: str
    source: str
    year: int
    basis: str
    licence: str


@dataclass(frozen=True)
class TdpEntry:
    model: str
    tdp_watts: float
    n_cores: int | None
    table: str


# Next to this module rather than importlib.resources: that import alone costs ~9 ms of the
# tracker's 100 ms start-up budget, and carbontrack is never run from a zip.
DATA_DIR = Path(__file__).with_name("data")


def _data_text(name: str) -> str:
    return (DATA_DIR / name).read_text(encoding="utf-8")


@cache
def constants() -> dict[str, Constant]:
    raw: dict[str, dict[str, Any]] = json.loads(_data_text("constants.json"))
    return {k: Constant(**v) for k, v in raw.items()}


@cache
def ccf_coefficients() -> dict[tuple[str, str], tuple[float, float]]:
    """(provider, architecture) -> (min, max) watts per vCPU."""
    rows = csv.DictReader(_data_text("ccf_cpu_coefficients.csv").splitlines())
    return {
        (r["provider"], r["architecture"]): (
            float(r["min_watts_per_vcpu"]),
            float(r["max_watts_per_vcpu"]),
        )
        for r in rows
    }


@cache
def _model_architectures() -> dict[str, str]:
    rows = csv.DictReader(_data_text("cpu_model_architecture.csv").splitlines())
    return {r["model"]: r["architecture"] for r in rows}


@cache
def _tdp_table() -> dict[str, TdpEntry]:
    rows = csv.DictReader(_data_text("cpu_tdp.csv").splitlines())
    return {
        r["model"]: TdpEntry(r["model"], float(r["tdp_watts"]), int(r["n_cores"]) if r["n_cores"] else None, r["table"])
        for r in rows
    }


@cache
def _cpuid_table() -> list[dict[str, str]]:
    return list(csv.DictReader(_data_text("cpuid_architecture.csv").splitlines()))


def _longest_key_in(name: str, keys: dict[str, Any]) -> str | None:
    """The longest table key that appears in ``name`` as whole words."""
    padded = f" {name} "
    best: str | None = None
    for key in keys:
        if f" {key} " in padded and (best is None or len(key) > len(best)):
            best = key
    return best


def architecture_for_model(model_name: str) -> tuple[str, str] | None:
    """(CCF architecture, matched model key) for a CPU model name, or None."""
    name = normalise_model(model_name)
    if not name:
        return None
    table = _model_architectures()
    key = _longest_key_in(name, table)
    return (table[key], key) if key else None


def architecture_for_cpuid(info: CpuInfo) -> tuple[str, str] | None:
    """(CCF architecture, codename) from CPUID vendor/family/model/stepping, or None."""
    if info.family is None or info.model is None:
        return None
    for row in _cpuid_table():
        if row["vendor"] != info.vendor or int(row["family"], 0) != info.family:
            continue
        if not int(row["model_min"], 0) <= info.model <= int(row["model_max"], 0):
            continue
        stepping = info.stepping if info.stepping is not None else 0
        if info.vendor != "ARM" and not (int(row["stepping_min"]) <= stepping <= int(row["stepping_max"])):
            continue
        return row["architecture"], row["codename"]
    return None


def tdp_for_model(model_name: str) -> TdpEntry | None:
    name = normalise_model(model_name)
    if not name:
        return None
    table = _tdp_table()
    key = _longest_key_in(name, table)
    return table[key] if key else None


@dataclass(frozen=True)
class CpuPowerModel:
    """Linear CPU power model for the visible vCPUs, and where its numbers came from."""

    min_watts_per_vcpu: float
    max_watts_per_vcpu: float
    vcpus: int
    basis: str  # one line: which table/row or override
    model: str  # CPU model as known ("" if hidden)
    architecture: str | None
    uncertainty: float

    def watts(self, utilisation: float) -> float:
        u = min(max(utilisation, 0.0), 1.0)
        span = self.max_watts_per_vcpu - self.min_watts_per_vcpu
        return self.vcpus * (self.min_watts_per_vcpu + span * u)


def _idle_ratio() -> float:
    c = constants()
    return c["fallback_min_watts_per_vcpu"].value / c["fallback_max_watts_per_vcpu"].value


def _coefficients_for(architecture: str, provider: str) -> tuple[tuple[float, float], str] | None:
    table = ccf_coefficients()
    for p in (provider, *PROVIDERS):
        if (p, architecture) in table:
            return table[(p, architecture)], p
    return None


def resolve_cpu_power_model(
    info: CpuInfo,
    vcpus: int,
    *,
    watts: float | None = None,
    cpu_model: str | None = None,
    provider: str = "aws",
) -> CpuPowerModel:
    """Pick the coefficients for this CPU (see the module docstring for the order)."""
    if provider not in PROVIDERS:
        raise ConfigError(f"unknown CCF provider {provider!r}: use one of {', '.join(PROVIDERS)}")
    if vcpus < 1:
        raise ConfigError(f"vCPU count must be >= 1, got {vcpus}")
    model = cpu_model or info.model_name
    if watts is not None:
        if not watts > 0:
            raise ConfigError(f"CPU watts override must be a positive number of watts, got {watts!r}")
        top = watts / vcpus
        return CpuPowerModel(
            top * _idle_ratio(), top, vcpus,
            f"override: {watts:g} W TDP for {vcpus} vCPUs, idle at the CCF average ratio "
            f"{_idle_ratio():.3f}",
            model, None, UNCERTAINTY_OVERRIDE,
        )  # fmt: skip
    found = architecture_for_model(model) if model else None
    how = f"model '{found[1]}'" if found else ""
    if found is None and cpu_model is None:
        found = architecture_for_cpuid(info)
        how = (
            f"CPUID {info.vendor} family {info.family} model {info.model:#x} ({found[1]})"
            if found and info.model is not None
            else ""
        )
    if found is not None:
        coeff = _coefficients_for(found[0], provider)
        if coeff is not None:
            (lo, hi), used = coeff
            return CpuPowerModel(
                lo, hi, vcpus, f"CCF {used} coefficients for {found[0]} (by {how})",
                model, found[0], UNCERTAINTY_ARCHITECTURE,
            )  # fmt: skip
    tdp = tdp_for_model(model) if model else None
    if tdp is not None:
        if tdp.n_cores:
            threads = tdp.n_cores * (2 if info.smt else 1)
            top = tdp.tdp_watts / threads
            how = f"{tdp.tdp_watts:g} W / {threads} threads"
        else:
            top = tdp.tdp_watts * info.sockets / vcpus
            how = f"{tdp.tdp_watts:g} W x {info.sockets} socket(s) / {vcpus} vCPUs"
        return CpuPowerModel(
            top * _idle_ratio(), top, vcpus,
            f"TDP table ({tdp.table}) for '{tdp.model}': {how}, idle at the CCF average ratio",
            model, None, UNCERTAINTY_TDP,
        )  # fmt: skip
    c = constants()
    return CpuPowerModel(
        c["fallback_min_watts_per_vcpu"].value, c["fallback_max_watts_per_vcpu"].value, vcpus,
        f"CCF average over architectures (CPU '{model or 'hidden'}' not in the tables); "
        "pass the CPU model or its TDP for a better estimate",
        model, None, UNCERTAINTY_FALLBACK,
    )  # fmt: skip


class CpuEstimateSource:
    """CPU energy from /proc/stat utilisation x a per-architecture power model."""

    name = "cpu-estimate"
    device = "cpu-estimate"

    def __init__(
        self,
        procfs_root: Path,
        *,
        watts: float | None = None,
        cpu_model: str | None = None,
        provider: str = "aws",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._procfs = Path(procfs_root)
        self._clock = clock
        stat = read_proc_stat(self._procfs)  # raises SourceUnavailable without a procfs
        self.power_model = resolve_cpu_power_model(
            read_cpuinfo(self._procfs),
            stat.online_cpus,
            watts=watts,
            cpu_model=cpu_model,
            provider=provider,
        )
        self._last: ProcStat = stat
        self._last_t = clock()
        self._joules = 0.0
        self._error = ""
        self.last_watts = self.power_model.watts(0.0)

    def read(self) -> Sequence[EnergyReading]:
        now = self._clock()
        try:
            stat = read_proc_stat(self._procfs)
        except SourceUnavailable as err:
            self._error = str(err)  # keep the last cumulative value; health says why
        else:
            self._error = ""
            util = stat.cpu.utilisation_since(self._last.cpu)
            self.last_watts = self.power_model.watts(util)
            self._joules += self.last_watts * max(now - self._last_t, 0.0)
            self._last, self._last_t = stat, now
        return [
            EnergyReading(
                Component.CPU,
                self.device,
                self._joules,
                Method.ESTIMATED,
                self.power_model.uncertainty,
                self.power_model.model,
            )
        ]

    def health(self) -> SourceHealth:
        return SourceHealth(not self._error, self._error)

    def close(self) -> None:
        """Nothing held open."""


class MemoryEstimateSource:
    """DRAM energy from installed memory size x CCF's per-GB coefficient (use-independent)."""

    name = "memory-estimate"
    device = "memory-estimate"

    def __init__(
        self,
        procfs_root: Path,
        *,
        gb: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if gb is None:
            gb = read_memtotal_bytes(Path(procfs_root)) / 1e9
        if not gb > 0:
            raise ConfigError(f"memory size must be a positive number of GB, got {gb!r}")
        self.gb = gb
        coeff = constants()["memory_kwh_per_gb_hour"].value
        self.watts = gb * coeff * 1000.0  # kWh per GB-hour -> W per GB
        self._clock = clock
        self._start = clock()

    def read(self) -> Sequence[EnergyReading]:
        joules = self.watts * max(self._clock() - self._start, 0.0)
        return [EnergyReading(Component.DRAM, self.device, joules, Method.ESTIMATED, UNCERTAINTY_MEMORY)]

    def health(self) -> SourceHealth:
        return SourceHealth(True, "")

    def close(self) -> None:
        """Nothing held open."""


def open_cpu_source(ctx: SourceContext) -> CpuEstimateSource:
    """The registry's factory for the CPU estimate (carbontrack.sources.registry)."""
    if ctx.provider:
        return CpuEstimateSource(ctx.procfs, watts=ctx.cpu_watts, provider=ctx.provider)
    return CpuEstimateSource(ctx.procfs, watts=ctx.cpu_watts)


def open_memory_source(ctx: SourceContext) -> MemoryEstimateSource:
    """The registry's factory for the memory estimate."""
    return MemoryEstimateSource(ctx.procfs)
