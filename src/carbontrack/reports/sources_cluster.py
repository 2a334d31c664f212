"""Line items from the cluster: Jobs annotated by the operator, and CarbonBudget ledgers.

``job_to_line`` is a pure function of a Job as a plain dict (the API's JSON shape), so it
is tested by equality; ``ClusterSource`` only lists objects through an injected
kubernetes ``ApiClient`` and hands them over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from carbontrack.core import contract
from carbontrack.core.errors import ConfigError, TemporaryError
from carbontrack.sources.registry import gpu_count, gpu_vendors

from . import methods
from .model import COMPONENTS, SOURCE_CLUSTER, LineItem, parse_time

ANN_ENERGY = contract.ENERGY_KWH
ANN_CO2E = contract.CO2E_GRAMS
ANN_ZONE = contract.GRID_ZONE
ANN_INTENSITY = contract.INTENSITY_G_PER_KWH
ANN_METHOD = contract.METHOD
ANN_ACCOUNTED = contract.ACCOUNTED_AT
ANN_ACCOUNTED_UID = contract.ACCOUNTED_UID
ANN_REPORT = contract.REPORT
ANN_MLFLOW = contract.MLFLOW_RUN_ID
ANN_WANDB = contract.WANDB_RUN_ID
ANN_UNIT = contract.FUNCTIONAL_UNIT
ANN_UNITS = contract.FUNCTIONAL_UNITS
ANN_RUN_KIND = contract.RUN_KIND

# Node-selector keys that name a node pool on the common platforms (first match wins).
NODE_POOL_KEYS = (
    contract.NODE_POOL_LABEL,
    "cloud.google.com/gke-nodepool",
    "eks.amazonaws.com/nodegroup",
    "karpenter.sh/nodepool",
    "kubernetes.azure.com/agentpool",
    "agentpool",
)
INSTANCE_TYPE_KEYS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
# every registered GPU vendor's model label (carbontrack.sources.registry), then GKE's
GPU_MODEL_KEYS = (*(k for v in gpu_vendors() for k in v.product_labels),
                  "cloud.google.com/gke-accelerator")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class IdentityKeys:
    """Which Job labels name the model and the team (settings, not constants)."""

    model_label: str = contract.MODEL_LABEL
    team_label: str = "team"
    cluster: str = ""  # cluster name written into every line


@dataclass(frozen=True)
class Skipped:
    """A Job in scope that could not become a line, and why (shown, never swallowed)."""

    namespace: str
    job: str
    reason: str


def _num(text: Any, what: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: {text!r} is not a number") from None
    return v


def _job_status(job: Mapping[str, Any]) -> str:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return str(cond["type"])
    return "Running" if (job.get("status") or {}).get("active") else ""


_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
           "m": 1e-3}


def _quantity(q: Any) -> float:
    """Kubernetes quantity (``"500m"``, ``"2"``, ``"16Gi"``, ``4``) as a number of units."""
    s = str(q).strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * _SUFFIX[suffix]
    return float(s)


def _first(mapping: Mapping[str, Any], keys: Sequence[str]) -> str:
    for k in keys:
        if mapping.get(k):
            return str(mapping[k])
    return ""


def _report_json(ann: Mapping[str, str], where: str) -> contract.JobReport:
    raw = ann.get(ANN_REPORT)
    if not raw:
        return {}
    try:
        return contract.decode_report(raw)
    except ValueError as err:
        raise ConfigError(f"{where}: annotation {ANN_REPORT}: {err}") from None


def _components_kwh(report: contract.JobReport) -> dict[str, float]:
    raw = report.get("energyKwhByComponent")
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, float] = {}
    for comp, v in raw.items():
        name = comp if comp in COMPONENTS else "other"
        out[name] = out.get(name, 0.0) + float(v)
    return out


def _factor_meta(report: contract.JobReport) -> tuple[str, str]:
    """(basis, source) of the grid factors the operator recorded, each listed once."""
    factors = report.get("intensityFactors")
    items = [f for f in factors if isinstance(f, Mapping)] if isinstance(factors, list) else []
    bases = dict.fromkeys(str(f["basis"]) for f in items if f.get("basis"))
    sources = dict.fromkeys(str(f["source"]) for f in items if f.get("source"))
    return "; ".join(bases), "; ".join(sources)


def _by_zone(report: contract.JobReport) -> tuple[tuple[str, float, float], ...]:
    """(zone, facility kWh, kgCO2e) per zone from the operator's ``byZone`` (absent in
    records written before it existed: the line is then one zone or unsplit)."""
    raw = report.get("byZone")
    if not isinstance(raw, Mapping):
        return ()
    out = []
    for zone, v in sorted(raw.items()):
        if isinstance(v, Mapping):
            out.append((str(zone), _num(v.get("facilityKwh"), f"byZone {zone}"),
                        _num(v.get("co2eGrams"), f"byZone {zone}") / 1000.0))
    return tuple(out)


def _pue_and_facility(
    report: contract.JobReport, it_kwh: float, grams: float, intensity: float | None
) -> tuple[float, str, float]:
    """(PUE, its source, facility kWh). The operator records PUE per node; with one value
    facility = IT x PUE, with several the operator's energy-weighted intensity (per facility
    kWh) gives facility = CO2e / intensity, and the line shows the effective PUE."""
    raw = report.get("pue")
    by_node = {str(k): float(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
    values = sorted(set(by_node.values()))
    if len(values) == 1:
        return values[0], f"{contract.PUE.sample} gauge, node(s) {', '.join(sorted(by_node))}", it_kwh * values[0]
    if len(values) > 1 and intensity and it_kwh > 0:
        facility = grams / intensity
        return facility / it_kwh, f"energy-weighted over nodes {by_node}", facility
    if isinstance(raw, (int, float)):
        return float(raw), "report", it_kwh * float(raw)
    return 1.0, "not reported (1.0 assumed)", it_kwh


def _nested(report: contract.JobReport, key: str, inner: str) -> float | None:
    v = report.get(key)
    if isinstance(v, Mapping):
        v = v.get(inner)
    return float(v) if isinstance(v, (int, float)) else None


def job_to_line(
    job: Mapping[str, Any],
    keys: IdentityKeys,
    node_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> LineItem | Skipped:
    """One Job (API JSON dict) -> a validated line item, or Skipped if not accounted (yet).

    ``node_labels`` (node name -> labels) fills instance type, node pool and GPU model for
    Jobs whose pod template does not pin them, from the nodes the operator recorded.
    """
    meta = job.get("metadata") or {}
    ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    where = f"Job {ns}/{name}"
    ann: Mapping[str, str] = meta.get("annotations") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    if ANN_ENERGY not in ann or ANN_CO2E not in ann:
        return Skipped(ns, name, f"not accounted by the operator yet (no {ANN_ENERGY})")
    report = _report_json(ann, where)
    # A Job re-created from an accounted Job's manifest carries the old Job's annotations until
    # the operator accounts the new one; counting them would report the old Job twice.
    job_section = report.get("job")
    written_for = ann.get(ANN_ACCOUNTED_UID) or (
        job_section.get("uid") if isinstance(job_section, dict) else None
    )
    own_uid = meta.get("uid")
    if written_for and own_uid and written_for != own_uid:
        return Skipped(ns, name, f"annotations were written for another Job (uid {written_for}); not accounted yet")
    energy_text = ann[ANN_ENERGY].strip().lower()
    if energy_text == "no-data":
        why = report.get("noData") or "no reason recorded"
        return Skipped(ns, name, f"operator recorded no energy data: {why}")
    total_kwh = _num(ann[ANN_ENERGY], f"{where} annotation {ANN_ENERGY}")
    grams = _num(ann[ANN_CO2E], f"{where} annotation {ANN_CO2E}")
    comps = _components_kwh(report)
    if not comps:
        # No breakdown: the whole energy stays visible as "other" rather than disappearing.
        comps = {"other": total_kwh}
    elif abs(sum(comps.values()) - total_kwh) > 1e-3 * max(total_kwh, 1e-9) + 1e-6:
        raise ConfigError(
            f"{where}: {ANN_REPORT} components sum to {sum(comps.values()):.6g} kWh but "
            f"{ANN_ENERGY} says {total_kwh:.6g} kWh"
        )
    else:
        # Both are rounded to 6 significant figures; the breakdown is what the line items add.
        total_kwh = sum(comps.values())
    zone = ann.get(ANN_ZONE, "")
    zone = "" if zone == "unknown" else zone
    intensity_text = ann.get(ANN_INTENSITY, "unknown")
    intensity = None if intensity_text == "unknown" else _num(intensity_text, f"{where} {ANN_INTENSITY}")
    basis, source = _factor_meta(report)
    pue, pue_source, facility = _pue_and_facility(report, total_kwh, grams, intensity)
    status = job.get("status") or {}
    window_raw = report.get("window")
    window: Mapping[str, Any] = window_raw if isinstance(window_raw, Mapping) else {}
    start = _opt_time(window.get("start") or status.get("startTime"), f"{where} start")
    end = _opt_time(
        window.get("end") or status.get("completionTime") or _failed_time(status), f"{where} end"
    )
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    selector: dict[str, str] = dict(pod.get("nodeSelector") or {})
    nodes = report.get("nodes") if isinstance(report.get("nodes"), list) else []
    for n in nodes or []:  # node labels fill what the template did not pin (first node wins)
        for k, v in (node_labels or {}).get(str(n), {}).items():
            selector.setdefault(k, v)
    parallelism = int((job.get("spec") or {}).get("parallelism") or 1)
    gpus, cores, memory = 0.0, 0.0, 0.0
    for c in pod.get("containers") or []:
        res = c.get("resources") or {}
        lim, req = res.get("limits") or {}, res.get("requests") or {}
        # whole GPUs of every registered vendor (nvidia.com/gpu, amd.com/gpu, ...)
        gpus += gpu_count({**req, **lim}, _quantity)
        cores += _quantity(req.get("cpu", lim.get("cpu", 0)))
        memory += _quantity(req.get("memory", lim.get("memory", 0)))
    outcome = job_section.get("outcome") if isinstance(job_section, Mapping) else None
    line = LineItem(
        source=SOURCE_CLUSTER,
        cluster=keys.cluster,
        namespace=ns,
        job=name,
        job_uid=str(meta.get("uid", "")),
        team=str(labels.get(keys.team_label, "")),
        model=str(labels.get(keys.model_label, "")),
        mlflow_run_id=ann.get(ANN_MLFLOW, ""),
        wandb_run_id=ann.get(ANN_WANDB, ""),
        status=str(outcome or _job_status(job)),
        run_kind=labels.get(ANN_RUN_KIND, ann.get(ANN_RUN_KIND, "")),
        start=start,
        end=end,
        node_pool=_first(selector, NODE_POOL_KEYS),
        instance_type=_first(selector, INSTANCE_TYPE_KEYS),
        node_count=len(nodes or []),
        gpu_model=_first(selector, GPU_MODEL_KEYS),
        gpu_count=int(gpus * parallelism),
        gpu_hours=_nested(report, "gpuHours", "value") or 0.0,
        cpu_cores_reserved=cores * parallelism,
        memory_gb_reserved=memory * parallelism / 1e9,
        cpu_kwh=comps.get("cpu", 0.0),
        dram_kwh=comps.get("dram", 0.0),
        gpu_kwh=comps.get("gpu", 0.0),
        other_kwh=comps.get("other", 0.0),
        it_energy_kwh=total_kwh,
        energy_method=methods.canonical([ann.get(ANN_METHOD, "")]),
        # the operator's report does not carry the idle rule (it is per node, on the
        # exporter's carbontrack_attribution_info): the line leaves it empty
        idle_rule="",
        pue=pue,
        pue_source=pue_source,
        facility_energy_kwh=facility,
        grid_zone=zone,
        intensity_g_per_kwh=intensity or 0.0,
        intensity_basis=basis,
        intensity_source=source,
        intensity_year=None,  # the operator records factor source and basis, not year
        location_kgco2e=grams / 1000.0,
        by_zone=_by_zone(report),
        uncertainty=_nested(report, "uncertainty", "relative"),
        tool_version=str(report.get("toolVersion", "")),
        accounted_at=_opt_time(ann.get(ANN_ACCOUNTED), f"{where} {ANN_ACCOUNTED}"),
        functional_unit=ann.get(ANN_UNIT, "job"),
        functional_units=_num(ann.get(ANN_UNITS, "1"), f"{where} {ANN_UNITS}"),
    )
    return line.validate()


def _in_window(job: Mapping[str, Any], since: datetime | None, until: datetime | None) -> bool:
    status = job.get("status") or {}
    end_text = status.get("completionTime") or _failed_time(status)
    if not end_text:
        return False
    try:
        end = parse_time(str(end_text), "Job end")
    except ConfigError:
        return True  # shown as skipped: a person should look at it
    return (since is None or end >= since) and (until is None or end < until)


def _failed_time(status: Mapping[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return str(cond.get("lastTransitionTime") or "") or None
    return None


def _opt_time(text: Any, what: str) -> datetime | None:
    return parse_time(str(text), what) if text else None


@dataclass(frozen=True)
class Budget:
    """A CarbonBudget's ledger as the operator left it (status is the operator's)."""

    namespace: str
    name: str
    limit: str
    used_grams: float | None
    percent: float | None
    period: str
    jobs_counted: int | None
    conditions: list[str]

    @staticmethod
    def from_object(obj: Mapping[str, Any]) -> Budget:
        """From the CarbonBudget object (status fields as the operator's budgets.py writes them)."""
        meta, spec, st = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        jobs = st.get("jobsCounted")
        return Budget(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            limit=str(spec.get("limit", "")),
            used_grams=_try_float(st.get("usedGrams")),
            percent=_try_float(st.get("percent")),
            period=str(st.get("periodName", "")),
            jobs_counted=int(jobs) if jobs is not None else None,
            conditions=[
                f"{c.get('type')}={c.get('status')}"
                for c in st.get("conditions") or []
                if isinstance(c, Mapping)
            ],
        )


def _try_float(v: Any) -> float | None:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None


class ClusterSource:
    """Lists Jobs and CarbonBudgets through an injected ``kubernetes.client.ApiClient``."""

    PAGE = 200

    def __init__(self, api_client: Any, keys: IdentityKeys, progress: Progress | None = None):
        from kubernetes import client  # the [operator] extra; imported when used

        self._batch = client.BatchV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._serialize = api_client.sanitize_for_serialization
        self._api_client = api_client
        self._keys = keys
        self._progress = progress or (lambda _msg: None)

    def jobs(self, namespaces: Sequence[str], selector: str) -> Iterator[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        targets: list[str | None] = list(namespaces) or [None]
        seen = 0
        for ns in targets:
            token: str | None = None
            while True:
                kw: dict[str, Any] = {"limit": self.PAGE, "label_selector": selector or None}
                if token:
                    kw["_continue"] = token
                try:
                    page = (
                        self._batch.list_namespaced_job(ns, **kw)
                        if ns
                        else self._batch.list_job_for_all_namespaces(**kw)
                    )
                except ApiException as err:
                    raise _api_error(err, "list Jobs") from None
                except OSError as err:  # urllib3 connection errors are OSError subclasses
                    raise TemporaryError(f"cannot reach the Kubernetes API to list Jobs: {err}") from None
                for item in page.items:
                    seen += 1
                    yield self._serialize(item)
                self._progress(f"cluster: {seen} Jobs listed" + (f" in {ns}" if ns else ""))
                token = page.metadata._continue if page.metadata else None
                if not token:
                    break

    def node_labels(self) -> dict[str, dict[str, str]]:
        """Labels of every node (instance type, pool, GPU product); empty when not allowed."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            nodes = client.CoreV1Api(self._api_client).list_node().items
        except ApiException as err:
            if err.status in (401, 403):  # optional enrichment: the report still works without
                self._progress("cluster: nodes not readable; instance types only from Job templates")
                return {}
            raise _api_error(err, "list Nodes") from None
        return {str(n.metadata.name): dict(n.metadata.labels or {}) for n in nodes if n.metadata}

    def lines(
        self, namespaces: Sequence[str], selector: str,
        since: datetime | None = None, until: datetime | None = None,
    ) -> tuple[list[LineItem], list[Skipped]]:
        """Lines from the operator's CarbonRecords (the accounting of record: Jobs deleted by
        TTL keep their line); live Jobs only add a Skipped note where their annotations claim
        an accounting the operator never recorded (forged, or accounted before CarbonRecords existed)."""
        from .sources_records import RecordSource

        labels = self.node_labels()
        lines, skipped, recorded = RecordSource(self._api_client, self._keys, self._progress).lines(
            namespaces, selector, since, until, labels)
        for job in self.jobs(namespaces, selector):
            meta = job.get("metadata") or {}
            ann = meta.get("annotations") or {}
            if ANN_CO2E in ann and meta.get("uid") not in recorded and _in_window(job, since, until):
                skipped.append(Skipped(
                    str(meta.get("namespace", "")), str(meta.get("name", "")),
                    "its carbontrack.io annotations claim an accounting the operator has no record of "
                    "(forged, or accounted before CarbonRecords existed); not counted"))
        return lines, skipped

    def budgets(self, namespaces: Sequence[str]) -> list[Budget]:
        from kubernetes.client.exceptions import ApiException

        try:
            items: list[dict[str, Any]] = []
            if namespaces:
                for ns in namespaces:
                    got: Any = self._custom.list_namespaced_custom_object(
                        contract.API_GROUP, contract.API_VERSION, ns, "carbonbudgets"
                    )
                    items += got["items"]
            else:
                got = self._custom.list_cluster_custom_object(contract.API_GROUP, contract.API_VERSION, "carbonbudgets")
                items = list(got["items"])
        except ApiException as err:
            if err.status == 404:  # CRD not installed: budgets are optional in a report
                self._progress("cluster: no CarbonBudget CRD; the report has no budget ledgers")
                return []
            if err.status in (401, 403):  # optional too: say so, keep the Job lines
                self._progress(
                    f"warning: CarbonBudgets not readable (HTTP {err.status}); grant get/list on "
                    f"carbonbudgets.{contract.API_GROUP} to include budget ledgers"
                )
                return []
            raise _api_error(err, "list CarbonBudgets") from None
        self._progress(f"cluster: {len(items)} CarbonBudgets listed")
        return [Budget.from_object(o) for o in items]


def _api_error(err: Any, what: str) -> Exception:
    if err.status in (401, 403):
        return ConfigError(
            f"Kubernetes API refused to {what} (HTTP {err.status}); give the report's "
            f"credentials get/list on jobs.batch and carbonbudgets.{contract.API_GROUP}"
        )
    return TemporaryError(f"Kubernetes API failed to {what}: HTTP {err.status} {err.reason}")
