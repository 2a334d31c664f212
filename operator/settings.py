"""Operator settings. Every duration is in seconds; every field is documented with its unit.

Built from the command line by `cli.py`; tests construct it directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from carbontrack.core.errors import ConfigError
from carbontrack.intensity.selection import IntensityConfig


@dataclass(frozen=True)
class OperatorSettings:
    prometheus_url: str
    """Base URL of the Prometheus HTTP API that scrapes the exporters, e.g. http://prom:9090."""

    namespaces: tuple[str, ...] = ()
    """Namespaces whose Jobs and CarbonBudgets are watched; empty: all namespaces."""

    scrape_interval_s: float = 30.0
    """Prometheus' scrape interval for the exporters (s). Accounting waits for one full scrape
    interval after a Job finishes so the final counter values have been scraped."""

    accounting_delay_s: float = 5.0
    """Extra wait after completion + scrape interval before accounting (s); set it to at least
    the exporter's collection interval."""

    no_data_after_s: float = 300.0
    """How long after completion a Job without any energy series is declared "no data" (s),
    provided Prometheus is up and has scraped exporters since the Job finished."""

    prometheus_timeout_s: float = 10.0
    """Per-request timeout of a Prometheus query (s)."""

    api_timeout_s: float = 30.0
    """Per-request timeout of a Kubernetes API call, answer included (s); a call that runs
    out is a TemporaryError and retried like a connection error."""

    retry_initial_s: float = 1.0
    """First retry delay after a failed Prometheus query or API call (s); doubles per try."""

    retry_max_s: float = 60.0
    """Ceiling of the retry delay (s). Accounting retries without giving up: never a wrong
    number, but also never a Job silently left out."""

    query_attempts: int = 3
    """Quick attempts per Prometheus query before the Job's accounting is rescheduled."""

    budget_interval_s: float = 30.0
    """How often each CarbonBudget's status is recomputed (s): period resets, rolling windows."""

    projection_interval_s: float = 60.0
    """How often running Jobs get emissions-so-far and projection annotations (s); 0: off."""

    max_concurrent_accountings: int = 32
    """Workloads whose record is computed and written at the same time (Prometheus queries,
    the record write); the writes after the record run outside this limit (completion.py)."""

    ledger_fold_after_s: float = 300.0
    """How long after the operator has seen a Job's accounting annotation its budget ledger
    entry stays individual before it is folded into a 15-minute total (s). Folding keeps a
    budget's status far below etcd's object size limit when a period sees thousands of Jobs
    (an entry is ~195 bytes; a folded Job 12). Calendar periods and rolling windows both
    start on 15-minute UTC steps, so folding never changes a total."""

    list_chunk_size: int = 500
    """Page size (objects) of the initial list of Jobs and budgets at start-up and after a
    watch expires. kopf lists everything in one response by default; with 10,000 Jobs that
    one response and the events it releases at once are most of the operator's peak memory
    (docs/performance/operator-scale.md). 0: one response."""

    enforcement: bool = True
    """Suspend new Jobs matching an exceeded budget whose action is Suspend."""

    finalizer: bool = True
    """Put a finalizer on unaccounted Jobs so a Job deleted right after finishing
    (ttlSecondsAfterFinished: 0) stays readable until it is accounted."""

    mlflow_tracking_uri: str | None = None
    """MLflow tracking server; when set, an accounted Job that names an MLflow run (annotation
    carbontrack.io/mlflow-run-id or MLFLOW_RUN_ID on its pod template) gets its energy and
    CO2e logged to that run once. None: off (mlflow is not imported)."""

    slice_length_s: float = 3600.0
    """Length of the slices long-running workloads (Deployments, StatefulSets,
    LeaderWorkerSets, InferenceServices) are accounted in (s, whole seconds); slices lie on a
    UTC grid counted from the Unix epoch, so hourly slices are clock hours."""

    long_running: bool = True
    """Account long-running workloads per slice (docs/long-running.md). Each slice is a record
    entry shaped like a Job's (docs/performance/records.md): 100 workloads with hourly slices
    add 72,000 entries a month; off, or a longer slice, where that is too much."""

    annotate_long_running: bool = False
    """Write a copy of the latest slice (and the running total) onto long-running workloads.
    Off by default: annotating needs ``patch`` on Deployments and StatefulSets, and RBAC cannot
    limit a patch to annotations, so that grant would let the operator scale or change them.
    The records are the accounting either way; the restart hint the copy carries is then
    replaced by one scan of each namespace's records (operator/slice_cursor.py)."""

    slice_catchup_s: float = 7 * 86400.0
    """How far back slices not yet recorded are accounted (s): after an outage or a first
    start, slices that ended longer ago than this are left out (Prometheus' retention bounds
    what can be accounted anyway)."""

    kueue_admission: bool = False
    """Decide Kueue AdmissionChecks whose controllerName is carbontrack.io/carbon-budget:
    Workloads (of any Kueue-managed kind) whose top-level owner an exceeded Suspend budget
    holds stay Pending, others are Ready (operator/kueue_checks.py). Needs Kueue's CRDs."""

    deferral_zone: str | None = None
    """Grid zone whose forecast times deferrable Jobs (carbontrack.io/deferrable-until); None:
    deferrable Jobs run at once, with that reason in an Event (operator/deferral.py)."""

    intensity: IntensityConfig | None = None
    """Intensity provider for the forecasts (carbontrack.intensity.selection; None: static,
    which has no forecast). Credentials come from the environment."""

    def __post_init__(self) -> None:
        if not self.prometheus_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"invalid --prometheus-url {self.prometheus_url!r}: use http://HOST:PORT"
            )
        for name in ("scrape_interval_s", "prometheus_timeout_s", "api_timeout_s", "retry_initial_s",
                     "retry_max_s", "budget_interval_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"invalid setting {name}={getattr(self, name)!r}: must be > 0")
        if not (self.slice_length_s >= 1 and self.slice_length_s == int(self.slice_length_s)):
            raise ConfigError(f"invalid --slice-length {self.slice_length_s!r}: whole seconds >= 1")
        if not self.slice_catchup_s > 0:
            raise ConfigError(f"invalid --slice-catchup {self.slice_catchup_s!r}: must be > 0")
        for name in ("accounting_delay_s", "no_data_after_s", "projection_interval_s",
                     "ledger_fold_after_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"invalid setting {name}={getattr(self, name)!r}: must be >= 0")
        if self.mlflow_tracking_uri is not None and not self.mlflow_tracking_uri.strip():
            raise ConfigError("invalid --mlflow-tracking-uri '': give a URI or leave it unset")
        if self.list_chunk_size < 0:
            raise ConfigError(f"invalid --list-chunk-size {self.list_chunk_size}: must be >= 0 (0: no paging)")
        if self.query_attempts < 1 or self.max_concurrent_accountings < 1:
            raise ConfigError("query_attempts and max_concurrent_accountings must be >= 1")
