"""Self-contained HTML report: inline CSS and inline SVG charts, no scripts, no external
fetches, so it opens offline, in a mail client, or archived with a sustainability report.

Energy and emissions figures are shown in units chosen by magnitude (core.units: J/Wh/kWh/
MWh, mg/g/kg/t CO2e); charts keep one fixed unit per axis, and the EU AI Act table keeps MWh
to two significant figures as that reporting asks. The CSV/JSON outputs carry fixed units.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape

from carbontrack import __version__
from carbontrack.core.units import format_energy, format_mass

from . import aggregate, aiact, long_running
from .build import Report, aggregate_ghg
from .model import COMPONENTS, LineItem, _iso

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2a33;max-width:72rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ccd;padding-bottom:.2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ccd;padding:.25rem .5rem;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.kpi{display:inline-block;margin:0 1.5rem 1rem 0}.kpi b{display:block;font-size:1.6rem}
.note{color:#555;font-size:.85rem}.charts{display:flex;flex-wrap:wrap;gap:1.5rem}
figure{margin:0}figcaption{font-weight:600;margin-bottom:.3rem}.wide{overflow-x:auto}
"""
PALETTE = ["#2f7d5b", "#3a6ea5", "#c77d22", "#8a4f9e", "#b23b3b", "#5a8f29", "#2b8a99"]


def _n(v: float | None, digits: int = 4) -> str:
    return "" if v is None else f"{v:.{digits}g}"


def hbar_chart(title: str, items: Sequence[tuple[str, float]], unit: str) -> str:
    """Horizontal bars, one per item; value labels printed so the chart reads without a legend."""
    w, row, left, right = 560, 26, 170, 130  # right: room for the printed value and unit
    h = 30 + row * max(1, len(items))
    top = max((v for _, v in items), default=0.0) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    if not items:
        parts.append('<text x="10" y="20" font-size="12">no data</text>')
    for i, (label, v) in enumerate(items):
        y = 10 + i * row
        bw = max(0.0, (w - left - right) * v / top)
        parts.append(
            f'<text x="{left - 6}" y="{y + 15}" font-size="12" text-anchor="end">{escape(label[:26])}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{bw:.1f}" height="{row - 8}" fill="{PALETTE[i % len(PALETTE)]}">'
            f"<title>{escape(label)}: {v:.6g} {escape(unit)}</title></rect>"
            f'<text x="{left + bw + 5:.1f}" y="{y + 15}" font-size="11">{v:.4g} {escape(unit)}</text>'
        )
    parts.append("</svg>")
    return f"<figure><figcaption>{escape(title)}</figcaption>{''.join(parts)}</figure>"


def time_buckets(lines: Sequence[LineItem]) -> list[tuple[str, float]]:
    """kgCO2e per day (per hour when everything happened within two days), by end time."""
    stamped: list[tuple[datetime, float]] = []
    for x in lines:
        t = x.end or x.accounted_at or x.start
        if t is not None:
            stamped.append((t, x.location_kgco2e))
    if not stamped:
        return []
    lo = min(t for t, _ in stamped)
    hi = max(t for t, _ in stamped)
    hourly = (hi - lo) <= timedelta(days=2)
    fmt = "%Y-%m-%d %H:00" if hourly else "%Y-%m-%d"
    sums: dict[str, float] = defaultdict(float)
    for t, v in stamped:
        sums[t.strftime(fmt)] += v
    return sorted(sums.items())


def column_chart(title: str, items: Sequence[tuple[str, float]], unit: str) -> str:
    w, h, pad = 640, 220, 40
    top = max((v for _, v in items), default=0.0) or 1.0
    n = max(1, len(items))
    bw = min(60.0, (w - 2 * pad) / n)  # a few wide bars read as area, not as a series
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 40}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<line x1="{pad}" y1="{h}" x2="{w - pad}" y2="{h}" stroke="#889"/>',
        f'<text x="{pad}" y="12" font-size="11">max {top:.4g} {escape(unit)}</text>',
    ]
    if not items:
        parts.append('<text x="60" y="100" font-size="12">no data</text>')
    for i, (label, v) in enumerate(items):
        bh = (h - 20) * v / top
        x = pad + i * bw
        parts.append(
            f'<rect x="{x + 2:.1f}" y="{h - bh:.1f}" width="{max(1.0, bw - 4):.1f}" height="{bh:.1f}" '
            f'fill="#2f7d5b"><title>{escape(label)}: {v:.6g} {escape(unit)}</title></rect>'
        )
        if n <= 16 or i % max(1, n // 12) == 0:
            parts.append(
                f'<text x="{x + bw / 2:.1f}" y="{h + 14}" font-size="9" text-anchor="middle">'
                f"{escape(label[-11:])}</text>"
            )
    parts.append("</svg>")
    return f"<figure><figcaption>{escape(title)}</figcaption>{''.join(parts)}</figure>"


def zone_intensity(lines: Sequence[LineItem]) -> list[tuple[str, float]]:
    """Energy-weighted mean location intensity per zone (gCO2e/kWh of IT energy x PUE)."""
    kwh: dict[str, float] = defaultdict(float)
    g: dict[str, float] = defaultdict(float)
    for x in lines:
        if x.grid_zone:
            kwh[x.grid_zone] += x.facility_energy_kwh
            g[x.grid_zone] += x.intensity_g_per_kwh * x.facility_energy_kwh
    return sorted((z, g[z] / kwh[z] if kwh[z] else 0.0) for z in kwh)


class Shown(str):
    """A figure already formatted with its unit: a right-aligned number cell."""


def _kwh(kwh: float | None) -> Shown | str:
    return "" if kwh is None else Shown(format_energy(kwh * 3.6e6))


def _kg(kg: float | None) -> Shown | str:
    return "" if kg is None else Shown(format_mass(kg * 1000.0))


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = []
    for r in rows:
        cells = []
        for v in r:
            if isinstance(v, Shown):
                cells.append(f'<td class="n">{escape(v)}</td>')
            elif isinstance(v, float):
                cells.append(f'<td class="n">{v:.6g}</td>')
            elif isinstance(v, int):
                cells.append(f'<td class="n">{v}</td>')
            else:
                cells.append(f"<td>{escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render(report: Report) -> str:
    lines = report.lines
    t = aggregate.totals(lines)
    scope = report.scope.describe()
    by_team = aggregate.group_totals(lines, lambda x: x.team)
    comp = [(c, t.by_component_kwh.get(c, 0.0)) for c in COMPONENTS]
    ghg = aggregate_ghg(lines)["by_scope"]
    period = f"{scope['since'] or 'start'} to {scope['until'] or 'now'}"
    kpis = [
        ("Jobs", f"{t.jobs}"),
        ("Facility energy", _kwh(t.facility_energy_kwh)),
        ("Location-based", _kg(t.location_kgco2e)),
        ("Market-based", _kg(t.market_kgco2e)),
        ("Embodied (SCI M)", _kg(t.embodied_kgco2e)),
        ("GPU-hours", f"{t.gpu_hours:.4g}"),
    ]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>CarbonTrack report {escape(period)}</title><style>{CSS}</style></head><body>",
        "<h1>Compute energy and emissions report</h1>",
        f'<p class="note">Period {escape(period)}; cluster {escape(str(scope["cluster"] or "-"))}; '
        f"namespaces {escape(str(scope['namespaces']))}; team {escape(str(scope['team']))}; "
        f"generated {escape(report.generated_at.isoformat())} by CarbonTrack {escape(__version__)}.</p>",
        '<div id="kpis">'
        + "".join(f'<div class="kpi">{escape(k)}<b>{escape(v)}</b></div>' for k, v in kpis)
        + "</div>",
        '<p class="note">Facility energy = IT energy x PUE. Location-based emissions use the '
        "grid-average factor of each Job's zone, integrated interval by interval; market-based "
        "use the contractual factors configured per zone (or the grid average where none is "
        "configured, stated per line). Embodied emissions are the Jobs' amortised share of "
        "server manufacturing (Cloud Carbon Footprint coefficients).</p>",
        "<h2>Charts</h2><div class=\"charts\">",
        column_chart("Emissions over time (kgCO2e, location-based)", time_buckets(lines), "kgCO2e"),
        hbar_chart("Emissions by team (kgCO2e, location-based)",
                   [(k, v.location_kgco2e) for k, v in by_team.items()], "kgCO2e"),
        hbar_chart("IT energy by component (kWh)", comp, "kWh"),
        hbar_chart("Grid intensity by zone (gCO2e/kWh, energy-weighted)", zone_intensity(lines), "g/kWh"),
        "</div>",
        "<h2>GHG Protocol view</h2>",
        _table(
            ["scope", "facility energy", "location-based", "market-based"],
            [[k, _kwh(v["facility_energy_kwh"]), _kg(v["location_kgco2e"]), _kg(v["market_kgco2e"])]
             for k, v in ghg.items()],
        ),
        '<p class="note">Own data centres: Scope 2 (purchased electricity). Cloud: Scope 3 '
        "Category 1 (purchased goods and services); the provider reports that electricity as "
        "its own Scope 2.</p>",
        "<h2>Totals by team, namespace and model</h2>",
    ]
    for title, fn in (("team", lambda x: x.team), ("namespace", lambda x: x.namespace),
                      ("model", lambda x: x.model)):
        groups = aggregate.group_totals(lines, fn)
        out.append(
            _table(
                [title, "jobs", "GPU-hours", "IT energy", "facility energy",
                 "location", "market", "embodied"],
                [[k, g.jobs, g.gpu_hours, _kwh(g.it_energy_kwh), _kwh(g.facility_energy_kwh),
                  _kg(g.location_kgco2e), _kg(g.market_kgco2e), _kg(g.embodied_kgco2e)]
                 for k, g in groups.items()],
            )
        )
    out.append("<h2>EU AI Act: training energy per model</h2>")
    models = aiact.model_energy(lines)
    out.append(
        _table(
            ["model", "training energy (MWh, 2 s.f.)", "measured/estimated", "jobs", "failed",
             "preliminary", "location (tCO2e)"],
            [[e.model, e.facility_energy_mwh_2sf, e.measured_or_estimated, e.jobs, e.failed,
              e.preliminary, e.location_tco2e] for e in models],
        )
    )
    out += [f'<p class="note"><b>{escape(e.model)}</b>: {escape(e.methodology)}</p>' for e in models]
    serving = long_running.section(lines)
    if serving:
        out.append("<h2>Long-running workloads (per-slice accounting)</h2>")
        out.append(
            _table(
                ["namespace/workload", "kind", "slices", "from", "to", "contiguous", "IT energy",
                 "location", "functional unit", "units", "gCO2e per 1,000 units", "SCI g/unit"],
                [[f"{w.namespace}/{w.name}", w.kind, w.slices, _iso(w.start), _iso(w.end),
                  "yes" if w.contiguous else "NO (gap)", _kwh(w.it_energy_kwh),
                  _kg(w.location_gco2e / 1000.0), w.functional_unit or "none",
                  f"{_n(w.units)} ({w.units_coverage})" if w.units is not None else "",
                  _n(w.g_per_1000_units), _n(w.sci_g_per_unit)] for w in serving],
            )
        )
    out.append('<h2>Line items (one per Job or slice)</h2><div class="wide">')
    out.append(
        _table(
            ["namespace/job", "team", "model", "status", "end", "GPU-h", "cpu", "dram",
             "gpu", "other", "IT energy", "method", "PUE", "zone", "intensity g/kWh",
             "basis / source", "location", "market", "embodied",
             "SCI g/unit", "scope", "GHG basis", "uncertainty"],
            [[f"{x.namespace}/{x.job}", x.team, x.model, x.status, x.to_row()["end"], x.gpu_hours,
              _kwh(x.cpu_kwh), _kwh(x.dram_kwh), _kwh(x.gpu_kwh), _kwh(x.other_kwh),
              _kwh(x.it_energy_kwh), x.energy_method,
              x.pue, x.grid_zone, x.intensity_g_per_kwh,
              f"{x.intensity_basis} / {x.intensity_source} {x.intensity_year or ''}".strip(),
              _kg(x.location_kgco2e), _kg(x.market_kgco2e), _kg(x.embodied_kgco2e),
              f"{_n(x.sci_g_per_unit)} per {x.functional_unit}", x.ghg_scope, x.ghg_basis,
              _n(x.uncertainty)] for x in lines],
        )
        + "</div>"
    )
    if report.budgets:
        out.append("<h2>CarbonBudgets (operator ledgers)</h2>")
        out.append(
            _table(
                ["namespace/budget", "limit", "period", "used", "percent", "jobs counted", "conditions"],
                [[f"{b.namespace}/{b.name}", b.limit, b.period,
                  Shown(format_mass(b.used_grams)) if b.used_grams is not None else "",
                  b.percent if b.percent is not None else "", b.jobs_counted if b.jobs_counted is not None else "",
                  ", ".join(b.conditions)] for b in report.budgets],
            )
        )
    if report.skipped or report.notes:
        out.append("<h2>Data gaps and notes</h2><ul>")
        out += [f"<li>{escape(s.namespace)}/{escape(s.job)}: {escape(s.reason)}</li>" for s in report.skipped]
        out += [f"<li>{escape(n)}</li>" for n in report.notes]
        out.append("</ul>")
    out.append("</body></html>\n")
    return "\n".join(out)

