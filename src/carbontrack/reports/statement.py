"""NeurIPS / ACL style compute statement: compute type, memory, time per run and in total,
with energy and emissions, as a paragraph a paper can paste (and a table of runs)."""

from __future__ import annotations

from collections.abc import Sequence

from . import methods
from .aiact import format_sig
from .model import LineItem

# The energy sentence says how the figure was obtained (methods.kind), so a paper never
# calls an estimate a measurement.
_ENERGY_WORDING = {
    methods.MEASURED: "Measured energy was {kwh} kWh",
    methods.PARTLY_ESTIMATED: "Energy, partly measured and partly estimated ({detail}), was {kwh} kWh",
    methods.ESTIMATED: "Estimated energy was {kwh} kWh",
}


def _energy_sentence(lines: Sequence[LineItem], kwh: float) -> str:
    kind = methods.kind(x.energy_method for x in lines)
    measured = sum(x.facility_energy_kwh for x in lines if methods.kind([x.energy_method]) == methods.MEASURED)
    detail = f"{format_sig(measured, 3)} kWh from jobs measured throughout"
    return _ENERGY_WORDING[kind].format(kwh=format_sig(kwh, 3), detail=detail)


def _hardware(x: LineItem) -> str:
    parts = []
    if x.gpu_count:
        parts.append(f"{x.gpu_count} x {x.gpu_model or 'GPU (model not recorded)'}")
    if x.cpu_cores_reserved:
        parts.append(f"{x.cpu_cores_reserved:g} CPU cores")
    if x.memory_gb_reserved:
        parts.append(f"{x.memory_gb_reserved:.3g} GB RAM")
    if x.instance_type:
        parts.append(f"on {x.instance_type}")
    return ", ".join(parts) or "hardware not recorded"


def _hardware_summary(lines: Sequence[LineItem], gpu_models: list[str]) -> str:
    if gpu_models:
        return ", ".join(gpu_models)
    if any(x.gpu_count for x in lines):
        return "GPUs (model not recorded)"
    return "CPU-only nodes"


def _order(x: LineItem) -> tuple[str, float, str]:
    t = x.start or x.end or x.accounted_at
    return (x.model, t.timestamp() if t else 0.0, x.job)


def compute_statement(lines: Sequence[LineItem], title: str = "") -> str:
    """Markdown: one table row per run, then the totals sentence."""
    rows = [
        "| run | hardware | wall time (h) | GPU-hours | energy (kWh, incl. PUE) | kgCO2e (location) | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in sorted(lines, key=_order):
        rows.append(
            f"| {x.namespace}/{x.job} | {_hardware(x)} | {x.duration_h:.3g} | {x.gpu_hours:.3g} | "
            f"{x.facility_energy_kwh:.3g} | {x.location_kgco2e:.3g} | {x.status or '?'} |"
        )
    hours = sum(x.duration_h for x in lines)
    gpuh = sum(x.gpu_hours for x in lines)
    kwh = sum(x.facility_energy_kwh for x in lines)
    kg = sum(x.location_kgco2e for x in lines)
    gpu_models = sorted({x.gpu_model for x in lines if x.gpu_model})
    zones = sorted({x.grid_zone for x in lines if x.grid_zone})
    text = (
        f"Compute. {'For ' + title + ', we' if title else 'We'} ran {len(lines)} jobs "
        f"(including failed and preliminary runs) on "
        f"{_hardware_summary(lines, gpu_models)} (GPU memory as in the model names; "
        f"{format_sig(sum(x.memory_gb_reserved for x in lines), 3)} GB RAM reserved in all), totalling "
        f"{format_sig(hours, 3)} wall-clock hours and {format_sig(gpuh, 3)} GPU-hours. "
        f"{_energy_sentence(lines, kwh)} including data-centre overhead (PUE), "
        f"corresponding to {format_sig(kg, 3)} kgCO2e location-based "
        f"(grid zones {', '.join(zones) or 'not recorded'}), as accounted by CarbonTrack."
    )
    return "\n".join([text, "", *rows, ""])
