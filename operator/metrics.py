"""The operator's own metrics, on an injected registry (a fresh one per test)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from carbontrack.core import contract

# Completion -> annotation latency: accounting waits one scrape interval by design, so the
# buckets start at a few seconds and reach into minutes (Prometheus outages).
LATENCY_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600, 1800)


# Accounting state changed by someone other than the operator (docs/reliability.md).
TAMPER_REASONS = ("forged_annotations", "malformed_record", "malformed_ledger")


def _counter(family: contract.MetricFamily, registry: CollectorRegistry) -> Counter:
    return Counter(family.name, family.help, family.labels, registry=registry)


def _gauge(family: contract.MetricFamily, registry: CollectorRegistry) -> Gauge:
    return Gauge(family.name, family.help, family.labels, registry=registry)


class OperatorMetrics:
    """The families of ``carbontrack.core.contract.OPERATOR_FAMILIES``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.jobs_accounted = _counter(contract.OPERATOR_JOBS_ACCOUNTED, registry)
        self.accounting_failures = _counter(contract.OPERATOR_ACCOUNTING_FAILURES, registry)
        # Exported at 0 from the start: the first tampering must show as an increase (a
        # series born at 1 has none), which the CarbonTrackAccountingTampered alert reads.
        for reason in TAMPER_REASONS:
            self.accounting_failures.labels(reason=reason)
        latency = contract.OPERATOR_ACCOUNTING_LATENCY
        self.accounting_latency = Histogram(latency.name, latency.help, latency.labels,
                                            buckets=LATENCY_BUCKETS, registry=registry)
        self.prometheus_queries = _counter(contract.OPERATOR_PROMETHEUS_QUERIES, registry)
        self.pending_jobs = _gauge(contract.OPERATOR_PENDING_JOBS, registry)
        self.jobs_suspended = _counter(contract.OPERATOR_JOBS_SUSPENDED, registry)
        self.jobs_resumed = _counter(contract.OPERATOR_JOBS_RESUMED, registry)
        # Budget gauges for the chart's dashboards and alerts (charts/carbontrack/rules,
        # dashboards): the status' usedGrams / limitGrams of each valid CarbonBudget, set
        # whenever the operator computes a budget's status, removed when it is deleted or
        # becomes invalid. Grams, so ratios need no unit handling.
        self.budget_used_grams = _gauge(contract.BUDGET_USED, registry)
        self.budget_limit_grams = _gauge(contract.BUDGET_LIMIT, registry)
        self.mlflow_logs = _counter(contract.OPERATOR_MLFLOW_LOGS, registry)
        self.budget_updates = _counter(contract.OPERATOR_BUDGET_UPDATES, registry)
        self.ledger_entries_folded = _counter(contract.OPERATOR_LEDGER_FOLDED, registry)

    def set_budget(self, namespace: str, budget: str, used_grams: float, limit_grams: float) -> None:
        self.budget_used_grams.labels(namespace=namespace, budget=budget).set(used_grams)
        self.budget_limit_grams.labels(namespace=namespace, budget=budget).set(limit_grams)

    def forget_budget(self, namespace: str, budget: str) -> None:
        """Drop a deleted or invalid budget's series (a stale gauge would keep alerting)."""
        for gauge in (self.budget_used_grams, self.budget_limit_grams):
            with contextlib.suppress(KeyError):  # never set: nothing to drop
                gauge.remove(namespace, budget)
