"""The HTML report is self-contained, escapes what it prints, and loads in headless Chromium
without console errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from carbontrack.reports.build import Report, Scope, build_report
from carbontrack.reports.ghg import GhgSettings
from carbontrack.reports.html import render, time_buckets, zone_intensity
from carbontrack.reports.model import LineItem
from carbontrack.reports.sci import EmbodiedModel, EmbodiedSettings, Server
from carbontrack.reports.sources_cluster import IdentityKeys, job_to_line

from .conftest import make_job

UTC = timezone.utc
CHROMIUM = next(
    (p for p in (shutil.which(n) for n in ("chromium-headless-shell", "chromium", "google-chrome")) if p), None
)


def _line(name: str, **kw: object) -> LineItem:
    got = job_to_line(make_job(name, **kw), IdentityKeys())  # type: ignore[arg-type]
    assert isinstance(got, LineItem)
    return got


def _report() -> Report:
    lines = [
        _line("a", team="vision", grams=120.0, components={"cpu": 1.0, "gpu": 3.0}),
        _line("b", team="<script>alert(1)</script>", grams=80.0, zone="FR", intensity=50.0,
              end="2026-11-11T09:00:00Z", start="2026-11-11T08:00:00Z"),
    ]
    return build_report(lines, Scope(cluster="prod"), GhgSettings(),
                        EmbodiedModel(EmbodiedSettings(), {"aws:p4d.24xlarge": Server(4676.79, 96, 8, "CCF")}),
                        clock=lambda: datetime(2026, 12, 1, tzinfo=UTC))


def test_html_is_self_contained_and_escaped() -> None:
    html = render(_report())
    assert "<script" not in html  # the team name is text, not markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing fetched
    assert html.count("<svg") == 4
    for title in ("Emissions over time", "Emissions by team", "IT energy by component", "Grid intensity by zone"):
        assert title in html
    # units by magnitude (core.units): location-based total 0.12 + 0.08 kg = 200 g; the team
    # "vision" line is job a's 120 g
    assert '<div class="kpi">Location-based<b>200 gCO2e</b></div>' in html
    assert '<td>vision</td>' in html and '<td class="n">120 gCO2e</td>' in html
    assert "e-0" not in html  # no scientific notation anywhere a person reads


def test_chart_data_are_the_report_numbers() -> None:
    r = _report()
    assert time_buckets(r.lines) == [
        ("2026-11-10 12:00", pytest.approx(0.12)),
        ("2026-11-11 09:00", pytest.approx(0.08)),
    ]
    assert dict(zone_intensity(r.lines)) == {"DE": 400.0, "FR": 50.0}


def _chromium(path: Path) -> tuple[str, list[str]]:
    assert CHROMIUM is not None
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=2000", "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    return proc.stdout, console


@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium: apt-get install chromium-headless-shell")
def test_html_loads_in_headless_chromium_without_console_errors(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render(_report()))
    dom, console = _chromium(page)
    assert console == []
    assert "Compute energy and emissions report" in dom and dom.count("<svg") == 4
    # the check itself can fail: a page with a script error is caught
    bad = tmp_path / "bad.html"
    bad.write_text(render(_report()).replace("</body>", "<script>throw new Error('boom')</script></body>"))
    _, console_bad = _chromium(bad)
    assert any("boom" in ln for ln in console_bad)


def test_budgets_and_data_gaps_are_shown() -> None:
    from carbontrack.reports.sources_cluster import Budget, Skipped

    r = _report()
    r.budgets = [Budget("ml", "monthly", "5kg", 1234.5, 24.69, "2026-11", 2, ["Exceeded=False"])]
    r.skipped = [Skipped("ml", "pending-job", "not accounted by the operator yet")]
    html = render(r)
    assert "<td>ml/monthly</td><td>5kg</td><td>2026-11</td>" in html
    assert '<td class="n">1.23 kgCO2e</td>' in html  # 1234.5 g used
    assert "<li>ml/pending-job: not accounted by the operator yet</li>" in html
