"""The names other programs rely on, in one place: metric families with their labels,
``carbontrack.io/`` annotation and label keys, and the report JSON the operator writes into
a Job's ``carbontrack.io/report`` annotation and its CarbonRecord entry.

Dashboards, alerts, the operator's PromQL, the reports and users' queries all read these
names; a renamed metric or key is a breaking change. Product code takes them from here
(tests/unit/test_contract.py fails on a metric name or ``carbontrack.io/`` key spelled out
anywhere else in src/, exporter/ or operator/) and the chart's rules and dashboards are
checked against ``EXPORTER_FAMILIES`` and ``OPERATOR_FAMILIES`` (tests/unit/test_chart_rules.py).
docs/architecture.md describes the same contract for people.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, cast

# ---------------------------------------------------------------------------- metrics
MetricKind = Literal["counter", "gauge", "info", "histogram"]


@dataclass(frozen=True)
class MetricFamily:
    """One metric family as client_python names it: a counter's ``name`` has no ``_total``
    and an info family's no ``_info`` (the library adds them to the samples)."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...]

    @property
    def sample(self) -> str:
        """The name of its samples in the exposition (and in PromQL)."""
        if self.kind == "counter":
            return f"{self.name}_total"
        if self.kind == "info":
            return f"{self.name}_info"
        return self.name

    @property
    def samples(self) -> tuple[str, ...]:
        """Every sample name the family exposes (a histogram has three)."""
        if self.kind == "histogram":
            return tuple(f"{self.name}{s}" for s in ("_bucket", "_sum", "_count"))
        return (self.sample,)


CONTAINER_LABELS = ("node", "namespace", "pod", "pod_uid", "container", "component", "method",
                    "owner_kind", "owner_name", "owner_uid")

# The exporter's families, in the order it exposes them (exporter/collector.py).
NODE_ENERGY = MetricFamily(
    "carbontrack_node_energy_joules", "counter",
    "Energy drawn by the node per component and device since first seen (joules).",
    ("node", "component", "device", "method"))
CONTAINER_ENERGY = MetricFamily(
    "carbontrack_container_energy_joules", "counter",
    "Node energy attributed to a container, per component (joules).",
    CONTAINER_LABELS)
CONTAINER_CO2E = MetricFamily(
    "carbontrack_container_co2e_grams", "counter",
    "Emissions of the container's energy: each interval's joules x grid intensity x PUE (grams CO2e).",
    CONTAINER_LABELS)
UNALLOCATED_ENERGY = MetricFamily(
    "carbontrack_unallocated_energy_joules", "counter",
    "Node energy no container is charged with (idle not reserved, system processes, "
    "departed cgroups) (joules).",
    ("node", "component"))
GRID_INTENSITY = MetricFamily(
    "carbontrack_grid_carbon_intensity_grams_per_kwh", "gauge",
    "Grid carbon intensity used for the last interval (gCO2e per kWh).",
    ("node", "zone", "source", "basis"))
GRID_INTENSITY_FALLBACK = MetricFamily(
    "carbontrack_grid_intensity_fallback", "gauge",
    "1 if the last interval's intensity is the static catalogue's because the live "
    "provider failed or is backing off (see logs), 0 if it is the provider's.",
    ("node", "provider"))
PUE = MetricFamily(
    "carbontrack_pue", "gauge",
    "Power usage effectiveness applied to emissions (facility energy / IT energy).",
    ("node",))
SOURCE_UP = MetricFamily(
    "carbontrack_source_up", "gauge",
    "1 if the source worked in the last cycle, else 0 (see logs).",
    ("node", "source"))
COLLECTION_DURATION = MetricFamily(
    "carbontrack_collection_duration_seconds", "gauge",
    "Wall time the source took in the last cycle (seconds).",
    ("node", "source"))
ATTRIBUTION_INFO = MetricFamily(
    "carbontrack_attribution", "info", "Attribution rules in force.",
    ("cpu_weight_basis", "cpu_weight_map", "idle_policy", "node"))
BUILD_INFO = MetricFamily(
    "carbontrack_build", "info", "CarbonTrack exporter build.", ("version",))

EXPORTER_FAMILIES = (NODE_ENERGY, CONTAINER_ENERGY, CONTAINER_CO2E, UNALLOCATED_ENERGY,
                     GRID_INTENSITY, GRID_INTENSITY_FALLBACK, PUE, SOURCE_UP, COLLECTION_DURATION,
                     ATTRIBUTION_INFO, BUILD_INFO)

# The operator's families (operator/metrics.py).
OPERATOR_JOBS_ACCOUNTED = MetricFamily(
    "carbontrack_operator_jobs_accounted", "counter",
    "Finished Jobs accounted (result=ok: energy and CO2e written; no_data: no energy series)",
    ("result",))
OPERATOR_ACCOUNTING_FAILURES = MetricFamily(
    "carbontrack_operator_accounting_failures", "counter",
    "Accounting attempts that failed and were rescheduled, by reason",
    ("reason",))
OPERATOR_ACCOUNTING_LATENCY = MetricFamily(
    "carbontrack_operator_accounting_latency_seconds", "histogram",
    "Seconds from a Job's completion to its CO2e annotation", ())
OPERATOR_PROMETHEUS_QUERIES = MetricFamily(
    "carbontrack_operator_prometheus_queries", "counter",
    "Prometheus queries by outcome", ("outcome",))
OPERATOR_PENDING_JOBS = MetricFamily(
    "carbontrack_operator_pending_jobs", "gauge", "Finished Jobs waiting to be accounted", ())
OPERATOR_JOBS_SUSPENDED = MetricFamily(
    "carbontrack_operator_jobs_suspended", "counter",
    "Jobs suspended because a matching budget with action Suspend was exceeded", ())
OPERATOR_JOBS_RESUMED = MetricFamily(
    "carbontrack_operator_jobs_resumed", "counter",
    "Jobs resumed after their budget allowed it again", ())
BUDGET_USED = MetricFamily(
    "carbontrack_budget_used_grams", "gauge",
    "CO2e grams counted in the CarbonBudget's current period (status.usedGrams)",
    ("namespace", "budget"))
BUDGET_LIMIT = MetricFamily(
    "carbontrack_budget_limit_grams", "gauge",
    "The CarbonBudget's limit in grams CO2e (spec.limit)",
    ("namespace", "budget"))
OPERATOR_MLFLOW_LOGS = MetricFamily(
    "carbontrack_operator_mlflow_logs", "counter",
    "Accounted Jobs logged to the MLflow run they name, by result (ok, failed)",
    ("result",))
OPERATOR_BUDGET_UPDATES = MetricFamily(
    "carbontrack_operator_budget_status_updates", "counter", "CarbonBudget status writes", ())
OPERATOR_LEDGER_FOLDED = MetricFamily(
    "carbontrack_operator_ledger_entries_folded", "counter",
    "Budget ledger entries folded into 15-minute totals (one per Job and budget)", ())

# long-running workloads accounted per slice (operator/long_running.py)
OPERATOR_SLICES_ACCOUNTED = MetricFamily(
    "carbontrack_operator_slices_accounted", "counter",
    "Slices of long-running workloads recorded (result=ok|no_data)", ("result",))
WORKLOAD_SLICE_CO2E = MetricFamily(
    "carbontrack_workload_slice_co2e_grams", "counter",
    "CO2e of recorded slices, per long-running workload (restarts at 0 with the operator: "
    "use increase())",
    ("namespace", "kind", "workload"))
WORKLOAD_FUNCTIONAL_UNITS = MetricFamily(
    "carbontrack_workload_functional_units", "counter",
    "Functional units (carbontrack.io/functional-unit-query) of recorded slices, per "
    "long-running workload",
    ("namespace", "kind", "workload", "unit"))

# carbon-aware timing of deferrable Jobs (operator/deferral.py)
OPERATOR_JOBS_DEFERRED = MetricFamily(
    "carbontrack_operator_jobs_deferred", "counter",
    "Deferrable Jobs by decision: held for a lower-carbon window, or run at once (the Job's "
    "Events say why)", ("decision",))
OPERATOR_DEFERRAL_AVOIDED = MetricFamily(
    "carbontrack_operator_deferral_avoided_co2e_grams_estimate", "counter",
    "ESTIMATE of the CO2e deferred Jobs avoided: metered energy x (forecast intensity at "
    "submission - forecast intensity of the window run), grams, positive estimates only; "
    "never counted in budgets (carbontrack report deferrals lists each Job)", ())

OPERATOR_FAMILIES = (OPERATOR_JOBS_ACCOUNTED, OPERATOR_ACCOUNTING_FAILURES,
                     OPERATOR_ACCOUNTING_LATENCY, OPERATOR_PROMETHEUS_QUERIES,
                     OPERATOR_PENDING_JOBS, OPERATOR_JOBS_SUSPENDED, OPERATOR_JOBS_RESUMED,
                     BUDGET_USED, BUDGET_LIMIT, OPERATOR_MLFLOW_LOGS, OPERATOR_BUDGET_UPDATES,
                     OPERATOR_LEDGER_FOLDED, OPERATOR_SLICES_ACCOUNTED, WORKLOAD_SLICE_CO2E,
                     WORKLOAD_FUNCTIONAL_UNITS, OPERATOR_JOBS_DEFERRED, OPERATOR_DEFERRAL_AVOIDED)


def sample_labels(families: Iterable[MetricFamily]) -> dict[str, frozenset[str]]:
    """Sample name -> its label names (a histogram's ``_bucket`` adds ``le``)."""
    out: dict[str, frozenset[str]] = {}
    for family in families:
        for sample in family.samples:
            extra = {"le"} if sample.endswith("_bucket") and family.kind == "histogram" else set()
            out[sample] = frozenset(family.labels) | extra
    return out


# ------------------------------------------------------------- keys: carbontrack.io/
API_GROUP = "carbontrack.io"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
KEY_PREFIX = f"{API_GROUP}/"


def _key(name: str) -> str:
    return KEY_PREFIX + name


# Job annotations written by the operator (docs/operator.md). Only the operator may write
# them (the chart's admission policy); a copy of its CarbonRecord entry.
ENERGY_KWH = _key("energy-kwh")
CO2E_GRAMS = _key("co2e-grams")
GRID_ZONE = _key("grid-zone")  # also the node label naming a node's grid zone
INTENSITY_G_PER_KWH = _key("intensity-g-per-kwh")
METHOD = _key("method")
ACCOUNTED_AT = _key("accounted-at")
ACCOUNTED_UID = _key("accounted-uid")
REPORT = _key("report")  # JSON: JobReport below
SUSPENDED_BY = _key("suspended-by")
BUDGETS = _key("budgets")
# so-far and projected figures of running Jobs (operator/projector.py)
CO2E_GRAMS_SO_FAR = _key("co2e-grams-so-far")
ENERGY_KWH_SO_FAR = _key("energy-kwh-so-far")
PROJECTED_AT = _key("projected-at")
PROJECTED_CO2E_GRAMS = _key("projected-co2e-grams")
PROJECTION_BASIS = _key("projection-basis")
# a deferrable Job's plan and counterfactual (JSON), written by the operator (operator/deferral.py)
DEFERRAL = _key("deferral")

# long-running workloads accounted per slice (operator/long_running.py)
LAST_SLICE = _key("last-slice")
SLICE_START = _key("slice-start")
SLICE_END = _key("slice-end")
CO2E_GRAMS_TOTAL = _key("co2e-grams-total")
ENERGY_KWH_TOTAL = _key("energy-kwh-total")

# Job annotations users write as inputs (identity, projection, sync marks): the only
# carbontrack.io/ keys anyone but the operator may set (the chart's admission policy lists
# the same keys; tests/unit/test_contract.py keeps them equal).
EXPECTED_DURATION = _key("expected-duration")
MLFLOW_RUN_ID = _key("mlflow-run-id")
WANDB_RUN_ID = _key("wandb-run-id")
FUNCTIONAL_UNIT = _key("functional-unit")
FUNCTIONAL_UNITS = _key("functional-units")
# long-running workloads: a counter selector of the functional unit (operator/functional_unit.py
# forces the workload's namespace into it); decides a unit count, never what CO2e is counted
FUNCTIONAL_UNIT_QUERY = _key("functional-unit-query")
RUN_KIND = _key("run-kind")
DEFERRABLE_UNTIL = _key("deferrable-until")  # latest start of a deferrable Job (operator/deferral.py)
MLFLOW_LOGGED_AT = _key("mlflow-logged-at")
WANDB_LOGGED_AT = _key("wandb-logged-at")
USER_ANNOTATIONS = frozenset({DEFERRABLE_UNTIL, EXPECTED_DURATION, MLFLOW_RUN_ID, WANDB_RUN_ID,
                              FUNCTIONAL_UNIT, FUNCTIONAL_UNITS, FUNCTIONAL_UNIT_QUERY, RUN_KIND,
                              MLFLOW_LOGGED_AT, WANDB_LOGGED_AT})

# Kueue AdmissionCheck controller name (operator/kueue_checks.py)
KUEUE_ADMISSION_CHECK = _key("carbon-budget")

# Finalizers
ACCOUNTING_FINALIZER = _key("accounting")
KOPF_FINALIZER = _key("kopf")

# Labels
MODEL_LABEL = _key("model")  # default Job label naming the model (reports)
NODE_POOL_LABEL = _key("node-pool")  # node-selector key naming a node pool
NODE_KIND_LABEL = _key("node-kind")  # devcluster: "real" on the real worker node
RECORD_LABEL = _key("record")  # CarbonRecord objects (carbontrack.core.records)
DAY_LABEL = _key("day")
MONTH_LABEL = _key("month")

# Pod and node keys read by the node simulator (simulated hardware only, carbontrack.devcluster)
SIM_PREFIX = f"sim.{API_GROUP}/"
SIM_CPU_CORES = SIM_PREFIX + "cpu-cores"
SIM_GPU_WATTS = SIM_PREFIX + "gpu-watts"
SIM_GPUS = SIM_PREFIX + "gpus"
SIM_GPU_UTIL = SIM_PREFIX + "gpu-util"
SIM_NODE = SIM_PREFIX + "node"
SIM_RUN_SECONDS = SIM_PREFIX + "run-seconds"
SIM_FAIL = SIM_PREFIX + "fail"

# The schema id of a report document (carbontrack.reports.build)
REPORT_DOCUMENT_SCHEMA = f"{KEY_PREFIX}report/v1"


def operator_owned(key: str) -> bool:
    """True for the carbontrack.io/ annotation keys only the operator may write."""
    return key.startswith(KEY_PREFIX) and key not in USER_ANNOTATIONS


# ------------------------------------------------- the report JSON (carbontrack.io/report)
class _ReportJobHead(TypedDict):
    namespace: str
    name: str
    uid: str
    outcome: str | None


class ReportJob(_ReportJobHead, total=False):
    kind: str  # the workload kind (Job, JobSet, ...); absent in reports of older operators


class ReportWindow(TypedDict):
    start: str
    end: str


class ValueWithBasis(TypedDict):
    value: float
    basis: str


class RelativeWithBasis(TypedDict):
    relative: float
    basis: str


class ZoneShare(TypedDict):
    facilityKwh: float
    co2eGrams: float


class FactorIdentity(TypedDict):
    """The labels of the grid-intensity series a node's energy was multiplied by."""

    node: str
    zone: str
    source: str
    basis: str


class JobReport(TypedDict, total=False):
    """The operator's account of one Job (``Accounting.report()``). The operator always
    writes ``job``, ``window`` and ``toolVersion``, then ``noData`` alone when Prometheus
    had no energy series for the Job, every other key otherwise. Every key is optional to a
    reader: entries written by older operators lack the newer ones (``byZone``)."""

    job: ReportJob
    window: ReportWindow
    toolVersion: str
    noData: str
    energyKwhByComponent: dict[str, float]
    co2eGramsByComponent: dict[str, float]
    methods: dict[str, list[str]]
    gpuHours: ValueWithBasis
    pods: int
    nodes: list[str]
    pue: dict[str, float]
    zones: list[str]
    intensityFactors: list[FactorIdentity]
    byZone: dict[str, ZoneShare]
    intensityGPerKwh: float | None
    intensityBasis: str
    uncertainty: RelativeWithBasis


# JSON type of each top-level key (bool is excluded from numbers by the check below).
_REPORT_TYPES: dict[str, tuple[type, ...]] = {
    "job": (dict,), "window": (dict,), "toolVersion": (str,), "noData": (str,),
    "energyKwhByComponent": (dict,), "co2eGramsByComponent": (dict,), "methods": (dict,),
    "gpuHours": (dict,), "pods": (int,), "nodes": (list,), "pue": (dict,), "zones": (list,),
    "intensityFactors": (list,), "byZone": (dict,), "intensityGPerKwh": (int, float, type(None)),
    "intensityBasis": (str,), "uncertainty": (dict,),
}
REPORT_KEYS = frozenset(_REPORT_TYPES)


def encode_report(report: JobReport) -> str:
    """The annotation's text: compact, keys sorted (stable bytes for the same account)."""
    return json.dumps(report, separators=(",", ":"), sort_keys=True)


def decode_report(text: str) -> JobReport:
    """Parses a ``carbontrack.io/report`` value. Raises ValueError naming the problem when it
    is not a JSON object or a known key holds the wrong JSON type (an annotation can be
    edited by anyone with `edit` on Jobs where the admission policy is off). Unknown keys are
    kept (a newer operator may add some); nested values are the reader's to check."""
    try:
        doc: Any = json.loads(text)
    except RecursionError:  # "[[[[…" nested past the stack
        raise ValueError("nested too deeply") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err})") from None
    if not isinstance(doc, dict):
        raise ValueError("must be a JSON object")
    for key, types in _REPORT_TYPES.items():
        if key in doc and (isinstance(doc[key], bool) or not isinstance(doc[key], types)):
            raise ValueError(f"{key} must be a JSON {' or '.join(dict.fromkeys(map(_json_name, types)))}")
    return cast(JobReport, doc)


def _json_name(t: type) -> str:
    names: Mapping[type, str] = {dict: "object", list: "array", str: "string", int: "number",
                                 float: "number", type(None): "null"}
    return names[t]
