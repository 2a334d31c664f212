"""Line items from Prometheus: per-Job energy and CO2e over a window, from the exporter's
counters (architecture.md metric contract).

Counters are cumulative per pod series and never reset (the exporter persists them), so a
series' contribution to a window is ``max over the window - value at window start``
(0 when the series did not exist yet). This counts Jobs that spanned the window edge only
for their part inside it, and includes Jobs the operator has not annotated (running, or
deleted before accounting). When the cluster source also has the Job, its annotated line
wins (aggregate.deduplicate), so nothing is counted twice.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from carbontrack.core import contract
from carbontrack.core.errors import ConfigError, TemporaryError
from carbontrack.core.types import JOULES_PER_KWH

from . import methods as method_words
from .model import COMPONENTS, SOURCE_PROMETHEUS, LineItem
from .sources_cluster import IdentityKeys

ENERGY = contract.CONTAINER_ENERGY.sample
CO2E = contract.CONTAINER_CO2E.sample
INTENSITY = contract.GRID_INTENSITY.sample
PUE = contract.PUE.sample

Series = tuple[tuple[str, str], ...]
# Namespace names are DNS labels, so they need no regex escaping in the PromQL matcher.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class PrometheusSource:
    """Queries Prometheus' HTTP API (``/api/v1/query``); URL and timeout injected."""

    def __init__(
        self,
        base_url: str,
        keys: IdentityKeys,
        timeout_s: float = 30.0,
        progress: Callable[[str], None] | None = None,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"--prometheus-url {base_url!r}: give an http:// or https:// URL")
        self._base = base_url.rstrip("/")
        self._keys = keys
        self._timeout = timeout_s
        self._progress = progress or (lambda _m: None)

    def query(self, promql: str, at: datetime) -> list[dict[str, Any]]:
        qs = urllib.parse.urlencode({"query": promql, "time": f"{at.timestamp():.3f}"})
        return self._get(f"/api/v1/query?{qs}")

    def _get(self, path: str) -> list[dict[str, Any]]:
        url = f"{self._base}{path}"
        try:
            with urllib.request.urlopen(url, timeout=self._timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode("utf-8", "replace")
            raise TemporaryError(f"Prometheus at {self._base} answered HTTP {err.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            raise TemporaryError(f"cannot reach Prometheus at {self._base}: {err}") from None
        try:
            doc = json.loads(body)
            if doc.get("status") != "success":
                raise TemporaryError(f"Prometheus query failed: {doc.get('error', doc)}")
            result = doc["data"]["result"]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TemporaryError(
                f"Prometheus at {self._base} returned a body that is not a query result: {body[:120]!r}"
            ) from None
        return list(result)

    def _window_delta(
        self, metric: str, sel: str, since: datetime, until: datetime
    ) -> dict[Series, float]:
        rng = max(1, int((until - since).total_seconds()))
        end = self.query(f"max_over_time({metric}{{{sel}}}[{rng}s])", until)
        start = self.query(f"{metric}{{{sel}}}", since)
        base = {_key(r["metric"]): float(r["value"][1]) for r in start}
        out: dict[Series, float] = {}
        for r in end:
            k = _key(r["metric"])
            out[k] = max(0.0, float(r["value"][1]) - base.get(k, 0.0))
        self._progress(f"prometheus: {metric}: {len(out)} series")
        return out

    def _active_span(
        self, sel: str, since: datetime, until: datetime
    ) -> dict[str, tuple[datetime, datetime]]:
        """Per Job (owner_uid): when its energy counter rose inside the window, so a Job's
        line covers its own run rather than the report window (a two-hour Job in a month's
        report is about two hours long, not 720).

        A range query evaluates ``increase(...[r]) > 0`` every step ``s`` (window/11,000, at
        least 15 s: Prometheus answers at most 11,000 points per series); ``r`` >= 4 min so it
        holds two samples at scrape intervals up to 2 min. The first step that sees a rise
        ends at most one step after the first rising sample (start = t_first - s); the last
        step that sees one lies ``r`` after the last rising sample, less up to one step
        (end = t_last - (r - s)). Both are right to within one step plus one scrape interval
        (docs/reports.md).
        """
        span_s = max(1.0, (until - since).total_seconds())
        step = max(15.0, span_s / 11000.0)
        rng = max(step, 240.0)
        promql = f"sum by (owner_uid) (increase({ENERGY}{{{sel}}}[{int(rng)}s])) > 0"
        qs = urllib.parse.urlencode({
            "query": promql, "start": f"{since.timestamp():.3f}", "end": f"{until.timestamp():.3f}",
            "step": f"{step:.3f}",
        })
        out: dict[str, tuple[datetime, datetime]] = {}
        for r in self._get(f"/api/v1/query_range?{qs}"):
            stamps = [float(v[0]) for v in r.get("values") or []]
            if not stamps:
                continue
            first = max(since.timestamp(), min(stamps) - step)
            last = min(until.timestamp(), max(first, max(stamps) - (rng - step)))
            out[str(r["metric"].get("owner_uid", ""))] = (
                datetime.fromtimestamp(first, since.tzinfo), datetime.fromtimestamp(last, since.tzinfo)
            )
        return out

    def lines(self, since: datetime, until: datetime, namespaces: Sequence[str]) -> list[LineItem]:
        sel = 'owner_kind="Job"'
        if namespaces:
            bad = [n for n in namespaces if not _DNS_LABEL.fullmatch(n)]
            if bad:
                raise ConfigError(f"--namespace {bad[0]!r} is not a valid namespace name (DNS label)")
            sel += ',namespace=~"' + "|".join(namespaces) + '"'
        energy = self._window_delta(ENERGY, sel, since, until)
        co2e = self._window_delta(CO2E, sel, since, until)
        zones = {
            r["metric"].get("node", ""): r["metric"] for r in self.query(INTENSITY, until)
        }
        pues = {r["metric"].get("node", ""): float(r["value"][1]) for r in self.query(PUE, until)}
        jobs: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"kwh": defaultdict(float), "grams": 0.0, "methods": set(), "nodes": set(),
                     "node_kwh": defaultdict(float), "node_g": defaultdict(float)}
        )
        for k, joules in energy.items():
            lab = dict(k)
            j = jobs[lab.get("owner_uid", "")]
            j["meta"] = lab
            comp = lab.get("component", "other")
            j["kwh"][comp if comp in COMPONENTS else "other"] += joules / JOULES_PER_KWH
            j["methods"].add(lab.get("method", ""))
            j["nodes"].add(lab.get("node", ""))
            j["node_kwh"][lab.get("node", "")] += joules / JOULES_PER_KWH
        for k, grams in co2e.items():
            lab = dict(k)
            jobs[lab.get("owner_uid", "")]["grams"] += grams
            jobs[lab.get("owner_uid", "")]["node_g"][lab.get("node", "")] += grams
            jobs[lab.get("owner_uid", "")].setdefault("meta", lab)
        spans = self._active_span(sel, since, until)
        out = []
        for uid, j in sorted(jobs.items()):
            if not any(j["kwh"].values()) and not j["grams"]:
                continue  # no energy in the window: its series outlived it (ran before)
            start, end = spans.get(uid, (since, until))
            out.append(self._line(uid, j, zones, pues, start, end))
        return out

    def _line(
        self,
        uid: str,
        j: Mapping[str, Any],
        zones: Mapping[str, Mapping[str, str]],
        pues: Mapping[str, float],
        since: datetime,
        until: datetime,
    ) -> LineItem:
        lab = j["meta"]
        kwh = {c: float(j["kwh"].get(c, 0.0)) for c in COMPONENTS}
        total = sum(kwh.values())
        nodes = sorted(n for n in j["nodes"] if n)
        zone_meta = [zones[n] for n in nodes if n in zones]
        zone_names = sorted({z.get("zone", "") for z in zone_meta if z.get("zone")})
        node_pues = sorted({pues[n] for n in nodes if n in pues})
        # Each node's energy at its own PUE (a node without a PUE series at the largest known,
        # conservative); the line's PUE is the effective one.
        worst = node_pues[-1] if node_pues else 1.0
        facility = sum(float(j["node_kwh"].get(n, 0.0)) * pues.get(n, worst) for n in j["node_kwh"])
        pue = facility / total if total > 0 else worst
        pue_source = f"{PUE} gauge" if len(node_pues) == 1 else (
            f"energy-weighted over node PUEs {node_pues}" if node_pues
            else f"no {PUE} series (1.0 assumed)"
        )
        grams = float(j["grams"])
        return LineItem(
            source=SOURCE_PROMETHEUS,
            cluster=self._keys.cluster,
            namespace=lab.get("namespace", ""),
            job=lab.get("owner_name", ""),
            job_uid=uid,
            start=since,
            end=until,
            node_count=len(nodes),
            by_zone=_by_zone(j, nodes, zones, pues),
            cpu_kwh=kwh["cpu"],
            dram_kwh=kwh["dram"],
            gpu_kwh=kwh["gpu"],
            other_kwh=kwh["other"],
            it_energy_kwh=total,
            energy_method=method_words.canonical(j["methods"]),
            pue=pue,
            pue_source=pue_source,
            facility_energy_kwh=facility,
            grid_zone=",".join(zone_names),
            intensity_g_per_kwh=grams / facility if facility > 0 else 0.0,
            intensity_basis="; ".join(sorted({z.get("basis", "") for z in zone_meta} - {""})),
            intensity_source="; ".join(sorted({z.get("source", "") for z in zone_meta} - {""})),
            location_kgco2e=grams / 1000.0,
            notes="share inside the report window from Prometheus counters (not accounted by the "
                  "operator); start/end: first/last sample with an energy increase",
        ).validate()


def _by_zone(
    j: Mapping[str, Any], nodes: Sequence[str], zones: Mapping[str, Mapping[str, str]],
    pues: Mapping[str, float],
) -> tuple[tuple[str, float, float], ...]:
    """(zone, facility kWh, kgCO2e) per zone of the Job's nodes; empty unless every node's
    zone is known (a partial split would misplace the rest)."""
    if not nodes or any(not zones.get(n, {}).get("zone") for n in nodes):
        return ()
    out: dict[str, tuple[float, float]] = {}
    worst = max((pues[n] for n in nodes if n in pues), default=1.0)  # as the line's facility
    for n in nodes:
        z = zones[n]["zone"]
        kwh, kg = out.get(z, (0.0, 0.0))
        out[z] = (kwh + j["node_kwh"].get(n, 0.0) * pues.get(n, worst), kg + j["node_g"].get(n, 0.0) / 1000.0)
    return tuple((z, kwh, kg) for z, (kwh, kg) in sorted(out.items()))


def _key(metric: Mapping[str, str]) -> Series:
    return tuple(sorted((k, v) for k, v in metric.items() if k != "__name__"))


