"""The end-of-run table printed by `carbontrack run` and by ``track(..., summary=True)``.

A person reads it: energy and emissions in units chosen by magnitude (core.units), three
significant figures. The CSV/JSON outputs keep fixed units (kWh, kg) at full precision.
"""

from __future__ import annotations

from ..core.types import JOULES_PER_KWH
from ..core.units import format_energy, format_mass
from .result import RunResult


def _fmt(x: float, unit: str) -> str:
    return f"{x:.6g} {unit}"


def render(r: RunResult, files: tuple[str, ...] = ()) -> str:
    rows: list[tuple[str, str]] = [
        ("run", f"{r.project_name} {r.run_id}"),
        ("duration", _fmt(r.duration_s, "s")),
        ("scope", r.scope),
    ]
    for comp in sorted(r.energy_j):
        rows.append((f"energy {comp}", format_energy(r.energy_j[comp])))
    rows += [
        ("energy IT", format_energy(r.energy_kwh * JOULES_PER_KWH)),
        ("PUE", f"{r.pue:g}"),
        ("energy facility", format_energy(r.facility_energy_kwh * JOULES_PER_KWH)),
        ("emissions", f"{format_mass(r.co2e_grams)}  (+/-{r.uncertainty * 100:.0f} %)"),
    ]
    if r.market_based_co2e_grams is not None:
        rows.append(
            (
                "market-based",
                f"{format_mass(r.market_based_co2e_grams)}  (factor {r.market_factor_g_per_kwh:g} g/kWh)",
            )
        )
    rows.append(("zone", r.zone))
    for f in r.factors:
        label = f"{f.g_per_kwh:g} gCO2e/kWh  {f.source}"
        label += f" {f.year}" if f.year else ""
        label += f"  [{f.basis}]"
        if f.fallback_reason:
            label += f"  FALLBACK: {f.fallback_reason}"
        rows.append(("intensity", label))
    rows.append(("method", r.method + "  (" + ", ".join(f"{s.name}{'' if s.up else ' DOWN'}" for s in r.sources) + ")"))
    if r.parent_run_id:
        rows.append(("nested in", f"{r.parent_run_id} (already counted in its totals)"))
    if r.overlaps_with:
        rows.append(("overlaps", ", ".join(r.overlaps_with) + " (same energy: do not add)"))
    if r.exit_code is not None:
        rows.append(("exit code", str(r.exit_code)))
    rows += [("note", n) for n in r.method_notes]
    rows += [("written", f) for f in files]
    rows += [("warning", w) for w in r.warnings]
    width = max(len(k) for k, _ in rows)
    bar = "-" * 60
    body = "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)
    return f"{bar}\ncarbontrack summary\n{bar}\n{body}\n{bar}"
