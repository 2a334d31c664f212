"""The operator's own metrics, on an injected registry (a fresh one per test)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Completion -> annotation latency: accounting waits one scrape interval by design, so the
# buckets start at a few seconds and reach into minutes (Prometheus outages).
LATENCY_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600, 1800)


# Accounting state changed by someone other than the operator (docs/reliability.md).
TAMPER_REASONS = ("forged_annotations", "malformed_record", "malformed_ledger")


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.jobs_accounted = Counter(
            "carbontrack_operator_jobs_accounted_total",
            "Finished Jobs accounted (result=ok: energy and CO2e written; no_data: no energy series)",
            ["result"],
            registry=registry,
        )
        self.accounting_failures = Counter(
            "carbontrack_operator_accounting_failures_total",
            "Accounting attempts that failed and were rescheduled, by reason",
            ["reason"],
            registry=registry,
        )
        # Exported at 0 from the start: the first tampering must show as an increase (a
        # series born at 1 has none), which the CarbonTrackAccountingTampered alert reads.
        for reason in TAMPER_REASONS:
            self.accounting_failures.labels(reason=reason)
        self.accounting_latency = Histogram(
            "carbontrack_operator_accounting_latency_seconds",
            "Seconds from a Job's completion to its CO2e annotation",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.prometheus_queries = Counter(
            "carbontrack_operator_prometheus_queries_total",
            "Prometheus queries by outcome",
            ["outcome"],
            registry=registry,
        )
        self.pending_jobs = Gauge(
            "carbontrack_operator_pending_jobs",
            "Finished Jobs waiting to be accounted",
            registry=registry,
        )
        self.jobs_suspended = Counter(
            "carbontrack_operator_jobs_suspended_total",
            "Jobs suspended because a matching budget with action Suspend was exceeded",
            registry=registry,
        )
        self.jobs_resumed = Counter(
            "carbontrack_operator_jobs_resumed_total",
            "Jobs resumed after their budget allowed it again",
            registry=registry,
        )
        # Budget gauges for the chart's dashboards and alerts (charts/carbontrack/rules,
        # dashboards): the status' usedGrams / limitGrams of each valid CarbonBudget, set
        # whenever the operator computes a budget's status, removed when it is deleted or
        # becomes invalid. Grams, so ratios need no unit handling.
        self.budget_used_grams = Gauge(
            "carbontrack_budget_used_grams",
            "CO2e grams counted in the CarbonBudget's current period (status.usedGrams)",
            ["namespace", "budget"],
            registry=registry,
        )
        self.budget_limit_grams = Gauge(
            "carbontrack_budget_limit_grams",
            "The CarbonBudget's limit in grams CO2e (spec.limit)",
            ["namespace", "budget"],
            registry=registry,
        )
        self.mlflow_logs = Counter(
            "carbontrack_operator_mlflow_logs_total",
            "Accounted Jobs logged to the MLflow run they name, by result (ok, failed)",
            ["result"],
            registry=registry,
        )
        self.budget_updates = Counter(
            "carbontrack_operator_budget_status_updates_total",
            "CarbonBudget status writes",
            registry=registry,
        )
        self.ledger_entries_folded = Counter(
            "carbontrack_operator_ledger_entries_folded_total",
            "Budget ledger entries folded into 15-minute totals (one per Job and budget)",
            registry=registry,
        )

    def set_budget(self, namespace: str, budget: str, used_grams: float, limit_grams: float) -> None:
        self.budget_used_grams.labels(namespace=namespace, budget=budget).set(used_grams)
        self.budget_limit_grams.labels(namespace=namespace, budget=budget).set(limit_grams)

    def forget_budget(self, namespace: str, budget: str) -> None:
        """Drop a deleted or invalid budget's series (a stale gauge would keep alerting)."""
        for gauge in (self.budget_used_grams, self.budget_limit_grams):
            with contextlib.suppress(KeyError):  # never set: nothing to drop
                gauge.remove(namespace, budget)
