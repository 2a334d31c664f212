"""The contract module (carbontrack.core.contract) is the one place metric names and
carbontrack.io/ keys are spelled in product code, the exporter and operator expose exactly its
families, and the report JSON round-trips through its typed schema."""

from __future__ import annotations

import ast
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from carbontrack.core import contract

REPO = Path(__file__).resolve().parents[2]
PRODUCT_ROOTS = (REPO / "src/carbontrack", REPO / "exporter", REPO / "operator")
CONTRACT_FILE = REPO / "src/carbontrack/core/contract.py"

METRIC_NAME = re.compile(r"\bcarbontrack_[a-z0-9_]+")
# keys (carbontrack.io/x, sim.carbontrack.io/x), the key prefix and the bare API group
KEY = re.compile(r"(?<![A-Za-z0-9-])(?:sim\.)?carbontrack\.io(?:/|$)")
# A `carbontrack_` token that is not a metric: the tracker's CSV/JSON column (CodeCarbon's
# `codecarbon_version` counterpart), part of the tracker's own output schema.
NOT_METRICS = {"carbontrack_version"}


def _documentation(tree: ast.AST) -> set[int]:
    """ids of string constants that are statements (docstrings): documentation may spell names."""
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}


def spelled_out(path: Path) -> list[str]:
    """Metric names and carbontrack.io keys in the string literals of one source file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docs = _documentation(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value
            names = set(METRIC_NAME.findall(text)) - NOT_METRICS
            keys = KEY.search(text)
            if names or keys:
                where = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
                found.append(f"{where}:{node.lineno}: {text[:80]!r}")
    return found


def product_files() -> list[Path]:
    return [p for root in PRODUCT_ROOTS for p in sorted(root.rglob("*.py"))
            if p != CONTRACT_FILE and not p.name.endswith(("_pb2.py", "_pb2_grpc.py"))]


def test_no_metric_name_or_key_is_spelled_out_outside_the_contract() -> None:
    offenders = [hit for path in product_files() for hit in spelled_out(path)]
    assert offenders == [], "use carbontrack.core.contract:\n" + "\n".join(offenders)


@pytest.mark.parametrize("source", [
    'QUERY = "sum(carbontrack_pue)"\n',
    'x = {"carbontrack.io/energy-kwh": 1}\n',
    'x = f"{a}carbontrack.io/{b}"\n',
    'GROUP = "carbontrack.io"\n',
    'SIM = "sim.carbontrack.io/gpus"\n',
])
def test_the_grep_catches_a_spelled_out_name(tmp_path: Path, source: str) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    assert len(spelled_out(probe)) == 1


def test_the_grep_leaves_documentation_and_other_domains_alone(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text('"""Reads carbontrack_pue and carbontrack.io/report."""\n'
                     'X = "mycarbontrack.io/x"\nY = "carbontrack_version"\n')
    assert spelled_out(probe) == []


def test_the_grep_covers_every_product_folder() -> None:
    files = product_files()
    assert {p.relative_to(REPO).parts[0] for p in files} == {"src", "exporter", "operator"}
    assert {"devcluster", "reports", "podresources"} <= {p.parent.name for p in files}


# ------------------------------------------------------------------ exposition
def test_the_exporter_exposes_exactly_the_contract_families() -> None:
    from carbontrack.exporter.collector import ExporterCollector
    from carbontrack.exporter.engine import Snapshot

    empty = Snapshot(0, "", (), (), (), (), None, 1.0, "")
    exposed = [(f.name, f.type, f.documentation) for f in ExporterCollector(lambda: empty).collect()]
    assert exposed == [(f.name, f.kind, f.help) for f in contract.EXPORTER_FAMILIES]


def test_the_exporter_samples_carry_the_contract_labels() -> None:
    """On the golden exposition of a real engine cycle (tests/unit/exporter/test_collector.py)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = (REPO / "tests/fixtures/exporter-golden/metrics.prom").read_text()
    wanted = contract.sample_labels(contract.EXPORTER_FAMILIES)
    seen = {s.name: set(s.labels) for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert set(seen) == set(wanted) - {contract.GRID_INTENSITY_FALLBACK.sample}  # live providers only
    for name, labels in seen.items():
        assert labels == wanted[name], name


def test_the_operator_exposes_only_contract_families() -> None:
    from carbontrack.operator.metrics import OperatorMetrics

    registry = CollectorRegistry()
    OperatorMetrics(registry)
    by_name = {f.name: f for f in contract.OPERATOR_FAMILIES}
    exposed = list(registry.collect())
    assert exposed
    for fam in exposed:
        assert fam.name in by_name, fam.name
        assert (fam.type, fam.documentation) == (by_name[fam.name].kind, by_name[fam.name].help)


def test_sample_names_follow_the_family_kind() -> None:
    assert contract.CONTAINER_ENERGY.sample == "carbontrack_container_energy_joules_total"
    assert contract.BUILD_INFO.sample == "carbontrack_build_info"
    assert contract.PUE.sample == "carbontrack_pue"
    labels = contract.sample_labels([contract.OPERATOR_ACCOUNTING_LATENCY])
    assert labels == {"carbontrack_operator_accounting_latency_seconds_bucket": {"le"},
                      "carbontrack_operator_accounting_latency_seconds_sum": set(),
                      "carbontrack_operator_accounting_latency_seconds_count": set()}
    names = [s for f in (*contract.EXPORTER_FAMILIES, *contract.OPERATOR_FAMILIES) for s in f.samples]
    assert len(names) == len(set(names))


# ------------------------------------------------------------------ keys
def test_keys_are_distinct_and_user_keys_are_not_operator_owned() -> None:
    keys = [v for k, v in vars(contract).items() if k.isupper() and isinstance(v, str)
            and v.startswith((contract.KEY_PREFIX, contract.SIM_PREFIX)) and v not in
            (contract.KEY_PREFIX, contract.GROUP_VERSION)]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    assert all(not contract.operator_owned(k) for k in contract.USER_ANNOTATIONS)
    assert contract.operator_owned(contract.CO2E_GRAMS) and contract.operator_owned(contract.REPORT)
    assert not contract.operator_owned("example.com/x")


# ------------------------------------------------------------------ report JSON
def _accounting() -> Any:
    from carbontrack.operator.accounting import build_accounting
    from carbontrack.operator.jobs import job_facts
    from carbontrack.operator.prometheus import Sample

    job = job_facts({
        "metadata": {"uid": "u1", "namespace": "team-a", "name": "train",
                     "creationTimestamp": "2026-12-01T10:00:00Z"},
        "spec": {"template": {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}},
        "status": {"startTime": "2026-12-01T10:00:00Z", "completionTime": "2026-12-01T11:00:00Z",
                   "conditions": [{"type": "Complete", "status": "True",
                                   "lastTransitionTime": "2026-12-01T11:00:00Z"}]},
    })
    node = {"node": "n1"}
    energy = [Sample({**node, "component": "gpu", "method": "measured"}, 3.6e6)]
    co2e = [Sample({**node, "component": "gpu", "method": "measured"}, 400.0)]
    pue = [Sample(node, 1.25)]
    intensity = [Sample({**node, "zone": "DE", "source": "catalogue", "basis": "location"}, 320.0)]
    pods = [Sample({"pod_uid": "p1", "component": "gpu"}, 1.0)]
    now = datetime(2026, 12, 1, 11, 5, tzinfo=timezone.utc)
    assert job.started_at is not None
    return build_accounting(job, job.started_at, now, energy, co2e, pue, intensity, pods)


def test_the_operators_report_round_trips_through_the_schema() -> None:
    report = _accounting().report()
    assert set(report) <= contract.REPORT_KEYS
    text = contract.encode_report(report)
    assert contract.decode_report(text) == json.loads(text)
    decoded = contract.decode_report(text)
    assert decoded["energyKwhByComponent"] == {"gpu": 1.0}
    assert decoded["byZone"] == {"DE": {"facilityKwh": 1.25, "co2eGrams": 400.0}}
    assert decoded["intensityFactors"] == [{"node": "n1", "zone": "DE", "source": "catalogue",
                                            "basis": "location"}]


def test_the_report_keys_match_the_typed_schema() -> None:
    typed = contract.JobReport.__required_keys__ | contract.JobReport.__optional_keys__
    assert typed == contract.REPORT_KEYS


@pytest.mark.parametrize(("text", "problem"), [
    ("not json", "not valid JSON"),
    ("[1]", "must be a JSON object"),
    ('{"pods": "3"}', "pods must be a JSON number"),
    ('{"pods": true}', "pods must be a JSON number"),
    ('{"byZone": []}', "byZone must be a JSON object"),
    ('{"intensityGPerKwh": "high"}', "intensityGPerKwh must be a JSON number or null"),
    ("[" * 100_000, "nested too deeply"),
])
def test_a_malformed_report_is_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        contract.decode_report(text)


def test_unknown_report_keys_are_kept() -> None:
    assert contract.decode_report('{"futureKey": 1, "intensityGPerKwh": null}') == {
        "futureKey": 1, "intensityGPerKwh": None}
