"""EU AI Act Annex XI section 1 point 2(e) / GPAI Code of Practice model documentation form:
known or estimated energy used to train a model, in MWh to two significant figures,
with the method.

A model's training energy is the sum over *all* its Jobs (by the model label): completed,
failed and preliminary runs alike, because the energy was spent either way. The figure is
facility energy (IT energy x PUE), the energy the data centre drew; IT energy is given too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from . import methods
from .model import SOURCE_CLUSTER, SOURCE_PROMETHEUS, SOURCE_TRACKER, LineItem


def round_sig(x: float, sig: int = 2) -> float:
    """Round to ``sig`` significant figures (0 stays 0)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, sig - 1 - math.floor(math.log10(abs(x))))


def format_sig(x: float, sig: int = 2) -> str:
    """Two significant figures as text without scientific notation (0.0012, 12, 1200)."""
    r = round_sig(x, sig)
    if r == 0:
        return "0"
    decimals = max(0, sig - 1 - math.floor(math.log10(abs(r))))
    return f"{r:.{decimals}f}"


@dataclass(frozen=True)
class ModelEnergy:
    model: str
    jobs: int
    completed: int
    failed: int
    preliminary: int
    other_status: int
    it_energy_mwh: float
    facility_energy_mwh: float
    facility_energy_mwh_2sf: str
    location_tco2e: float
    gpu_hours: float
    measured_or_estimated: str  # "measured" | "estimated" | "partly estimated"
    methods: list[str]
    pue_values: list[float]
    zones: list[str]
    first_start: str
    last_end: str
    methodology: str


_SOURCE_TEXT = {
    SOURCE_CLUSTER: (
        "{n} Kubernetes Jobs accounted by the CarbonTrack operator (its CarbonRecords or Job "
        "annotations): energy per node from the exporter, attributed to the Job's pods by "
        "exclusive GPU allocation, CPU time share, and idle power by reserved resources, with "
        "node energy conserved (pods + unallocated = node)"
    ),
    SOURCE_PROMETHEUS: (
        "{n} Kubernetes Jobs read from the exporter's counters in Prometheus and not (yet) "
        "accounted by the operator: only their energy inside the report period, from the "
        "first to the last sample in which their energy rose"
    ),
    SOURCE_TRACKER: (
        "{n} runs measured by the CarbonTrack tracker on their host (tracker files; energy of "
        "the process or the machine, as each run's scope says)"
    ),
}
_METHOD_TEXT = {
    "measured": "measured (read from hardware energy counters (NVIDIA NVML total-energy counters for GPUs, "
                "Intel/AMD RAPL for CPU packages and DRAM))",
    "sampled": "sampled (power read from the hardware and integrated over time, NVML power "
               "readings where the energy counter is not supported)",
    "estimated": "estimated (from utilisation with Cloud Carbon Footprint per-architecture "
                 "coefficients, where there are no energy counters)",
}


def _sources_text(lines: Sequence[LineItem]) -> str:
    counts: dict[str, int] = {}
    for x in lines:
        counts[x.source] = counts.get(x.source, 0) + 1
    parts = [
        _SOURCE_TEXT[s].format(n=n) if s in _SOURCE_TEXT else f"{n} lines from source {s!r}"
        for s, n in sorted(counts.items())
    ]
    return "; ".join(parts)


def _energy_text(words: Sequence[str]) -> str:
    known = [_METHOD_TEXT[w] for w in words if w in _METHOD_TEXT]
    other = [w for w in words if w not in _METHOD_TEXT and w != "unknown"]
    text = ("recorded as " + "; ".join(known)) if known else "obtained by methods not recorded"
    if other:
        text += f"; also recorded: {', '.join(other)}"
    if known and "unknown" in words:
        text += "; for some runs the method was not recorded (counted as estimated)"
    return text


def _methodology(m: str, lines: Sequence[LineItem], counts: dict[str, int], kind: str,
                 words: Sequence[str]) -> str:
    pues = sorted({x.pue for x in lines})
    srcs = sorted({x.pue_source for x in lines if x.pue_source})
    return (
        f"Training energy of model '{m}' is the sum over all {len(lines)} runs "
        f"labelled with this model ({counts['Complete']} completed, {counts['Failed']} failed, "
        f"{counts['preliminary']} preliminary/experimental runs, all included): "
        f"{_sources_text(lines)}. "
        f"Energy was {_energy_text(words)} "
        f"(figure is {kind}). Facility energy applies the power usage effectiveness "
        f"(PUE {', '.join(f'{p:g}' for p in pues)}; source: {'; '.join(srcs) or 'not recorded'}). "
        "Not included: data preparation, evaluation and inference runs not labelled with the "
        "model, networking and storage outside the nodes, and embodied hardware emissions."
    )


def model_energy(lines: Sequence[LineItem]) -> list[ModelEnergy]:
    """One entry per model label, all runs included. Lines without a model are left out."""
    by_model: dict[str, list[LineItem]] = {}
    for x in lines:
        if x.model:
            by_model.setdefault(x.model, []).append(x)
    out = []
    for m, ls in sorted(by_model.items()):
        counts = {"Complete": 0, "Failed": 0, "preliminary": 0, "other": 0}
        for x in ls:
            counts[x.status if x.status in ("Complete", "Failed") else "other"] += 1
            if x.run_kind == "preliminary":
                counts["preliminary"] += 1
        words = sorted({w for x in ls for w in (methods.parse(x.energy_method) or {"unknown"})})
        kind = methods.kind(x.energy_method for x in ls)
        fac = sum(x.facility_energy_kwh for x in ls) / 1000.0
        starts = [x.start for x in ls if x.start]
        ends = [x.end for x in ls if x.end]
        out.append(
            ModelEnergy(
                model=m,
                jobs=len(ls),
                completed=counts["Complete"],
                failed=counts["Failed"],
                preliminary=counts["preliminary"],
                other_status=counts["other"],
                it_energy_mwh=sum(x.it_energy_kwh for x in ls) / 1000.0,
                facility_energy_mwh=fac,
                facility_energy_mwh_2sf=format_sig(fac, 2),
                location_tco2e=sum(x.location_kgco2e for x in ls) / 1000.0,
                gpu_hours=sum(x.gpu_hours for x in ls),
                measured_or_estimated=kind,
                methods=words,
                pue_values=sorted({x.pue for x in ls}),
                zones=sorted({x.grid_zone for x in ls if x.grid_zone}),
                first_start=min(starts).isoformat() if starts else "",
                last_end=max(ends).isoformat() if ends else "",
                methodology=_methodology(m, ls, counts, kind, words),
            )
        )
    return out


def form_text(e: ModelEnergy) -> str:
    """The Model Documentation Form 'energy consumption (training)' entry as plain text."""
    return (
        f"Model: {e.model}\n"
        f"Energy consumption during training: {e.facility_energy_mwh_2sf} MWh ({e.measured_or_estimated})\n"
        f"  IT equipment energy: {format_sig(e.it_energy_mwh, 2)} MWh; GPU-hours: {e.gpu_hours:.4g}\n"
        f"  Runs included: {e.jobs} ({e.completed} completed, {e.failed} failed, "
        f"{e.preliminary} preliminary)\n"
        f"  Training period: {e.first_start or '?'} to {e.last_end or '?'}\n"
        f"Methodology: {e.methodology}\n"
    )
