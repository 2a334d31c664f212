"""Recording rules, alerts and dashboard queries: promtool syntax checks,
promtool rule unit tests on synthetic series, and the metric contract
(every carbontrack_* metric and every label a query uses is a sample of a family in
carbontrack.core.contract, the module the exporter and the operator expose them from)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_chart_tools import CHART, require_tool, run

from carbontrack.core import contract

RULE_FILES = sorted((CHART / "rules").glob("*.yaml"))
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))

CONTAINER_LABELS = set(contract.CONTAINER_LABELS)
# sample name -> label names, of every family the exporter and the operator expose
KNOWN = contract.sample_labels((*contract.EXPORTER_FAMILIES, *contract.OPERATOR_FAMILIES))
# What the dashboards and alerts promise to show: each must be queried somewhere.
SHOWN = {
    "carbontrack_node_energy_joules_total", "carbontrack_container_energy_joules_total",
    "carbontrack_container_co2e_grams_total", "carbontrack_unallocated_energy_joules_total",
    "carbontrack_grid_carbon_intensity_grams_per_kwh", "carbontrack_pue", "carbontrack_source_up",
    "carbontrack_collection_duration_seconds", "carbontrack_build_info",
    "carbontrack_grid_intensity_fallback", "carbontrack_budget_used_grams",
    "carbontrack_budget_limit_grams", "carbontrack_operator_jobs_accounted_total",
    "carbontrack_operator_accounting_failures_total",
    "carbontrack_operator_accounting_latency_seconds_bucket", "carbontrack_operator_pending_jobs",
}
# Labels Prometheus adds to every scraped series.
SCRAPE_LABELS = {"job", "instance"}


def load_rules() -> list[dict[str, Any]]:
    return [r for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]]


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) for every query, variables included."""
    out = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                out.append((dash["uid"], panel["title"], target["expr"]))
        for var in dash["templating"]["list"]:
            if var["type"] == "query":
                out.append((dash["uid"], f"variable {var['name']}", var["query"]["query"]))
    return out


def substitute(expr: str) -> str:
    """Grafana variables -> PromQL a server accepts (label_values() is Grafana's)."""
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", expr.strip())
    if m:
        expr = f"count by ({m.group(2)}) ({m.group(1)})"
    return (expr.replace("$__rate_interval", "1m").replace("$__range", "5m")
            .replace("$node", ".*").replace("$namespace", "team-a").replace("$job", ".*")
            .replace("$kind", "Job"))


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(carbontrack_[a-z0-9_]+)\b", expr))


def label_names(expr: str) -> set[str]:
    labels: set[str] = set()
    for group in re.findall(r"\b(?:by|on|without|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        labels |= {x.strip() for x in group.split(",") if x.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    return labels


RECORDED = {r["record"] for r in load_rules() if "record" in r}
ALL_EXPRS = [("rule", r.get("record") or r.get("alert"), r["expr"]) for r in load_rules()] + dashboard_targets()


@pytest.mark.parametrize(("where", "name", "expr"), ALL_EXPRS, ids=lambda v: str(v)[:60])
def test_queries_use_only_contract_metrics_and_labels(where: str, name: str, expr: str) -> None:
    names = metric_names(expr)
    recorded = {n for n in re.findall(r"\b([a-z_]+:carbontrack_[a-z0-9_]+:[a-z0-9_]+)\b", expr)}
    raw = {n for n in names if not any(n in r for r in recorded)}
    assert raw or recorded, f"{where} {name}: no carbontrack metric in {expr!r}"
    unknown = raw - KNOWN.keys()
    assert not unknown, f"{where} {name}: metrics outside the contract: {unknown}"
    assert recorded <= RECORDED, f"{where} {name}: unknown recorded series {recorded - RECORDED}"
    allowed = set().union(*(KNOWN[n] for n in raw)) | SCRAPE_LABELS | {"__name__"}
    if recorded:
        allowed |= CONTAINER_LABELS | {"zone", "basis"}
    assert label_names(expr) <= allowed, f"{where} {name}: labels {label_names(expr) - allowed}"


def test_every_promised_metric_is_in_the_contract_and_shown_somewhere() -> None:
    assert KNOWN.keys() >= SHOWN, f"not in carbontrack.core.contract: {SHOWN - KNOWN.keys()}"
    used = set().union(*(metric_names(e) for _, _, e in ALL_EXPRS))
    assert used >= SHOWN, f"never queried: {SHOWN - used}"


def test_the_contract_check_catches_an_unknown_metric() -> None:
    """The check cannot pass vacuously: a misspelt family is outside the contract."""
    expr = "sum(rate(carbontrack_container_energy_joule_total[5m]))"
    assert metric_names(expr) - KNOWN.keys() == {"carbontrack_container_energy_joule_total"}


def test_dashboard_structure() -> None:
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), path.name
        var_names = {v["name"] for v in dash["templating"]["list"]}
        assert "datasource" in var_names
        cells: set[tuple[int, int]] = set()
        for panel in dash["panels"]:
            g = panel["gridPos"]
            assert g["x"] + g["w"] <= 24, panel["title"]
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, f"{path.name}: {panel['title']} overlaps another panel"
            cells |= mine
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval", "__range"}
                assert used <= var_names, f"{panel['title']}: undefined variables {used - var_names}"


def test_dashboards_cover_the_issue_views() -> None:
    titles = " | ".join(p["title"] for d in DASHBOARDS for p in json.loads(d.read_text())["panels"])
    for needed in ("Cluster overview", "Namespaces", "Selected Job", "GPU vs CPU vs DRAM",
                   "Grid intensity by zone", "Carbon budgets"):
        assert needed in titles


# ------------------------------------------------------------------ promtool
def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool")
    proc = run([promtool, "check", "rules", *RULE_FILES])
    assert proc.stdout.count("SUCCESS") == len(RULE_FILES)


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Each dashboard query, as a recording rule, passes promtool's parser."""
    promtool = require_tool("promtool")
    rules = [{"record": f"dashboard:query:{i}", "expr": substitute(e)}
             for i, (_, _, e) in enumerate(dashboard_targets())]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = run([promtool, "check", "rules", path])
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout


EXP = 'job="carbontrack-exporter"'


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def annotations(alert: str, labels: dict[str, str], value: str = "") -> dict[str, str]:
    """The alert's annotations with $labels/$value filled in, as Prometheus renders them."""
    rule = next(r for r in load_rules() if r.get("alert") == alert)
    out = {}
    for key, text in rule["annotations"].items():
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
        out[key] = text.replace("{{ $value | humanizePercentage }}", value)
    return out


def test_promtool_rule_unit_tests(tmp_path: Path) -> None:
    """Each alert fires on the data it is about and stays quiet otherwise;
    recording rules give the expected watts and grams per second."""
    promtool = require_tool("promtool")
    n1 = {"node": "n1", "instance": "n1:9875", "job": "carbontrack-exporter"}
    n2 = {"node": "n2", "instance": "n2:9875", "job": "carbontrack-exporter"}
    pod = {"namespace": "team-a", "pod": "train-1-abc", "pod_uid": "u1", "container": "main",
           "method": "measured", "owner_kind": "Job", "owner_name": "train-1", "owner_uid": "j1", **n1}
    node_j, cont_j, cont_g = ("carbontrack_node_energy_joules_total", "carbontrack_container_energy_joules_total",
                              "carbontrack_container_co2e_grams_total")
    unalloc, used, limit = ("carbontrack_unallocated_energy_joules_total", "carbontrack_budget_used_grams",
                            "carbontrack_budget_limit_grams")
    pkg = {"device": "package-0", "method": "measured"}
    series = [
        # n1: 10 W CPU, 300 W GPU, 2 W DRAM (joules per 1-minute step = 60 x W).
        _series(node_j, {**n1, "component": "cpu", **pkg}, "0+600x40"),
        _series(node_j, {**n1, "component": "gpu", "device": "GPU-0", "method": "measured"}, "0+18000x40"),
        _series(node_j, {**n1, "component": "dram", **pkg}, "0+120x40"),
        _series(node_j, {**n2, "component": "cpu", "device": "package-0", "method": "estimated"}, "0+600x40"),
        # The Job's pod gets 5 W CPU and the whole GPU; 0.1 g CO2e per second.
        _series(cont_j, {**pod, "component": "cpu"}, "0+300x40"),
        _series(cont_j, {**pod, "component": "gpu"}, "0+18000x40"),
        _series(cont_g, {**pod, "component": "cpu"}, "0+6x40"),
        # a PyTorchJob's pod (its series carry the PyTorchJob, its top-level owner): 0.1 g/s
        _series(cont_g, {**pod, "pod": "resnet-master-0", "pod_uid": "u2", "owner_kind": "PyTorchJob",
                         "owner_name": "resnet", "owner_uid": "p1", "component": "gpu"}, "0+6x40"),
        _series(unalloc, {**n1, "component": "cpu"}, "0+300x40"),
        _series(unalloc, {**n1, "component": "dram"}, "0+120x40"),
        _series(unalloc, {**n1, "component": "gpu"}, "0+0x40"),
        _series("carbontrack_grid_carbon_intensity_grams_per_kwh",
                {**n1, "zone": "DE", "source": "catalogue", "basis": "location"}, "380x40"),
        # n1's live provider answers for 5 minutes, then the static factor stands in
        _series("carbontrack_grid_intensity_fallback", {**n1, "provider": "electricitymaps"}, "0x5 1x35"),
        _series("carbontrack_source_up", {**n1, "source": "rapl"}, "1x40"),
        _series("carbontrack_source_up", {**n1, "source": "nvml"}, "0x40"),
        # n2's exporter stops answering after 5 minutes; n2 is a VM without
        # RAPL where the CPU estimate takes over (no SourceUnhealthy alert).
        _series("carbontrack_source_up", {**n2, "source": "cpu-estimate"}, "1x5"),
        _series("carbontrack_source_up", {**n2, "source": "rapl"}, "0x5"),
        _series("up", {"instance": "n1:9875", "job": "carbontrack-exporter"}, "1x40"),
        _series("up", {"instance": "n2:9875", "job": "carbontrack-exporter"}, "1x5 0x35"),
        # someone rewrites an accounted Job's annotations at minute 10 (the operator restores them)
        _series("carbontrack_operator_accounting_failures_total",
                {"reason": "forged_annotations", "instance": "op:8080", "job": "carbontrack-operator"},
                "0x10 1x30"),
        _series("carbontrack_operator_accounting_failures_total",
                {"reason": "temporary", "instance": "op:8080", "job": "carbontrack-operator"}, "0+1x40"),
    ]
    for budget, used_g, limit_g in (("near", 850, 1000), ("over", 1200, 1000), ("fine", 100, 1000),
                                    ("nolimit", 100, 0)):
        series.append(_series(used, {"namespace": "team-a", "budget": budget}, f"{used_g}x40"))
        series.append(_series(limit, {"namespace": "team-a", "budget": budget}, f"{limit_g}x40"))
    near = {"namespace": "team-a", "budget": "near"}
    over = {"namespace": "team-a", "budget": "over"}
    nvml = {"node": "n1", "source": "nvml", "instance": "n1:9875", "job": "carbontrack-exporter"}
    down = {"instance": "n2:9875", "job": "carbontrack-exporter"}
    job_key = 'namespace="team-a",owner_kind="Job",owner_name="train-1",owner_uid="j1"'

    def expect(record: str, *samples: tuple[str, float]) -> dict[str, Any]:
        return {"expr": record, "eval_time": "10m",
                "exp_samples": [{"labels": f"{record}{{{lab}}}", "value": v} for lab, v in samples]}

    def alert(name: str, labels: dict[str, str], severity: str, value: str = "") -> dict[str, Any]:
        return {"exp_labels": {**labels, "severity": severity},
                "exp_annotations": annotations(name, labels, value)}

    tests = {
        "rule_files": [str(p) for p in RULE_FILES],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [
                expect("namespace:carbontrack_container_energy_joules:rate5m", ('namespace="team-a"', 305)),
                expect("namespace:carbontrack_container_co2e_grams:rate5m", ('namespace="team-a"', 0.2)),
                expect("namespace_owner:carbontrack_container_energy_joules:rate5m", (job_key, 305)),
                expect("namespace_owner:carbontrack_container_co2e_grams:sum", (job_key, 60),
                       ('namespace="team-a",owner_kind="PyTorchJob",owner_name="resnet",owner_uid="p1"', 60)),
                expect("namespace_owner_kind:carbontrack_container_co2e_grams:rate5m",
                       ('namespace="team-a",owner_kind="Job"', 0.1),
                       ('namespace="team-a",owner_kind="PyTorchJob"', 0.1)),
                expect("node_component:carbontrack_node_energy_joules:rate5m",
                       ('component="cpu",node="n1"', 10), ('component="dram",node="n1"', 2),
                       ('component="gpu",node="n1"', 300), ('component="cpu",node="n2"', 10)),
                # n2 (10 W CPU, estimated) has no unallocated series: 5 / 20.
                expect("component:carbontrack_unallocated_energy:ratio_rate5m",
                       ('component="cpu"', 0.25), ('component="dram"', 1), ('component="gpu"', 0)),
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "CarbonTrackBudgetNearLimit", "exp_alerts": []},
                {"eval_time": "10m", "alertname": "CarbonTrackBudgetNearLimit",
                 "exp_alerts": [alert("CarbonTrackBudgetNearLimit", near, "warning", "85%")]},
                {"eval_time": "10m", "alertname": "CarbonTrackBudgetExceeded",
                 "exp_alerts": [alert("CarbonTrackBudgetExceeded", over, "critical", "120%")]},
                {"eval_time": "15m", "alertname": "CarbonTrackSourceUnhealthy",
                 "exp_alerts": [alert("CarbonTrackSourceUnhealthy", nvml, "warning")]},
                {"eval_time": "4m", "alertname": "CarbonTrackExporterDown", "exp_alerts": []},
                {"eval_time": "15m", "alertname": "CarbonTrackExporterDown",
                 "exp_alerts": [alert("CarbonTrackExporterDown", down, "warning")]},
                {"eval_time": "15m", "alertname": "CarbonTrackUnknownGridZone",
                 "exp_alerts": [alert("CarbonTrackUnknownGridZone", {"node": "n2"}, "warning")]},
                {"eval_time": "20m", "alertname": "CarbonTrackGridIntensityFallback", "exp_alerts": []},
                {"eval_time": "38m", "alertname": "CarbonTrackGridIntensityFallback",
                 "exp_alerts": [alert("CarbonTrackGridIntensityFallback",
                                      {"node": "n1", "provider": "electricitymaps"}, "info")]},
                {"eval_time": "30m", "alertname": "CarbonTrackHighUnallocatedEnergy", "exp_alerts": []},
                {"eval_time": "9m", "alertname": "CarbonTrackAccountingTampered", "exp_alerts": []},
                {"eval_time": "12m", "alertname": "CarbonTrackAccountingTampered",
                 "exp_alerts": [alert("CarbonTrackAccountingTampered", {"reason": "forged_annotations"},
                                      "warning")]},
            ],
        }],
    }
    path = tmp_path / "rules-test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = run([promtool, "test", "rules", path], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
