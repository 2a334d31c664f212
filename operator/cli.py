"""`carbontrack operator`: the Kubernetes operator's entry point (also the container's)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone

import kopf
from prometheus_client import CollectorRegistry

from carbontrack import __version__
from carbontrack.core import contract, scrapeauth
from carbontrack.core.apiconfig import ApiEndpoint
from carbontrack.core.errors import ConfigError
from carbontrack.core.scrapeauth import ScrapeSecurity
from carbontrack.intensity.selection import IntensityConfig
from carbontrack.intensity.selection import add_arguments as add_intensity_arguments
from carbontrack.intensity.selection import config_from_args as intensity_from_args

from . import kueue_admission
from .apiclient import ApiTransport
from .handlers import Operator, build_registry
from .kube import KubeApi
from .kubeconfig import load_endpoint, login_handler
from .long_running import attach as attach_long_running
from .metrics import OperatorMetrics
from .mlflow_sync import MlflowJobLogger
from .prometheus import PrometheusClient
from .settings import OperatorSettings
from .webserver import build_app, serve


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="carbontrack operator",
        description="Account finished Jobs' energy and CO2e from Prometheus, keep CarbonBudgets.",
    )
    p.add_argument("--prometheus-url", required=True, help="Prometheus HTTP API base URL")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", action="store_true", help="watch every namespace (default)")
    peer = p.add_mutually_exclusive_group()
    peer.add_argument("--peering", metavar="NAME", help="kopf peering object: one active replica")
    peer.add_argument("--standalone", action="store_true", help="no peering (single replica)")
    p.add_argument("--listen", default="0.0.0.0:8080", help="HOST:PORT for /metrics and /healthz")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    p.add_argument("--scrape-interval", type=float, default=30.0, help="Prometheus scrape interval, s")
    p.add_argument("--accounting-delay", type=float, default=5.0,
                   help="extra wait after completion + scrape interval, s (>= exporter interval)")
    p.add_argument("--no-data-after", type=float, default=300.0,
                   help="declare a Job without energy series 'no data' this long after it ended, s")
    p.add_argument("--budget-interval", type=float, default=30.0, help="budget status refresh, s")
    p.add_argument("--projection-interval", type=float, default=60.0,
                   help="running-Job projection refresh, s; 0 disables")
    p.add_argument("--prometheus-timeout", type=float, default=10.0, help="per query, s")
    p.add_argument("--api-timeout", type=float, default=30.0,
                   help="per Kubernetes API call, answer included, s")
    p.add_argument("--ledger-fold-after", type=float, default=300.0,
                   help="fold an accounted Job's budget ledger entry into a 15-minute total this "
                        "long after its annotation is seen, s")
    p.add_argument("--list-chunk-size", type=int, default=500,
                   help="page size of the start-up list of Jobs and budgets (0: one response)")
    p.add_argument("--slice-length", type=float, default=3600.0,
                   help="long-running workloads (Deployments, StatefulSets, ...) are accounted "
                        "per slice of this many seconds on a UTC grid")
    p.add_argument("--no-long-running", action="store_true",
                   help="do not account Deployments, StatefulSets, LeaderWorkerSets and "
                        "InferenceServices per slice")
    p.add_argument("--annotate-long-running", action="store_true",
                   help="copy the latest slice and the running total onto long-running workloads "
                        "(needs patch on Deployments/StatefulSets; off: records only)")
    p.add_argument("--slice-catchup", type=float, default=7 * 86400.0,
                   help="slices missed (outage, first start) are accounted this far back, s")
    p.add_argument("--no-enforcement", action="store_true", help="never suspend Jobs (Warn only)")
    p.add_argument("--no-finalizer", action="store_true",
                   help="no accounting finalizer on Jobs (Jobs deleted at once are still counted "
                        "from the watch event, but not across an operator restart)")
    p.add_argument("--mlflow-tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI") or None,
                   help="log accounted Jobs that name an MLflow run to this tracking server "
                        "(default: $MLFLOW_TRACKING_URI; unset: off)")
    p.add_argument("--kueue-admission-check", action="store_true",
                   help="decide Kueue AdmissionChecks with controllerName "
                        f"{contract.KUEUE_ADMISSION_CHECK} from Suspend CarbonBudgets")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--deferral-zone", default=os.environ.get("CARBONTRACK_DEFERRAL_ZONE") or None,
                   metavar="ZONE",
                   help=f"grid zone whose forecast times Jobs annotated {contract.DEFERRABLE_UNTIL} "
                        "(default: $CARBONTRACK_DEFERRAL_ZONE; unset: such Jobs run at once, "
                        "saying why); the forecast comes from --intensity-provider")
    add_intensity_arguments(p)
    scrapeauth.add_arguments(p)
    return p


def settings_from_args(args: argparse.Namespace) -> OperatorSettings:
    return OperatorSettings(
        prometheus_url=args.prometheus_url,
        namespaces=tuple(args.namespace),
        scrape_interval_s=args.scrape_interval,
        accounting_delay_s=args.accounting_delay,
        no_data_after_s=args.no_data_after,
        prometheus_timeout_s=args.prometheus_timeout,
        api_timeout_s=args.api_timeout,
        budget_interval_s=args.budget_interval,
        projection_interval_s=args.projection_interval,
        list_chunk_size=args.list_chunk_size,
        ledger_fold_after_s=args.ledger_fold_after,
        enforcement=not args.no_enforcement,
        finalizer=not args.no_finalizer,
        mlflow_tracking_uri=args.mlflow_tracking_uri,
        deferral_zone=args.deferral_zone,
        intensity=live_intensity(args),
        kueue_admission=args.kueue_admission_check,
        slice_length_s=args.slice_length,
        long_running=not args.no_long_running,
        annotate_long_running=args.annotate_long_running,
        slice_catchup_s=args.slice_catchup,
    )


def live_intensity(args: argparse.Namespace) -> IntensityConfig | None:
    """The forecast provider for deferrable Jobs; None for the static catalogue (no forecast)."""
    config = intensity_from_args(args, os.environ)
    return config if config.live else None


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"invalid --listen {text!r}: use HOST:PORT, e.g. 0.0.0.0:8080")
    return host or "0.0.0.0", int(port)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def api_transport(settings: OperatorSettings, endpoint: ApiEndpoint) -> ApiTransport:
    """The one API transport of the operator: as many calls in flight as accountings (at
    least 32, as the client's thread pool allowed before), and 8 more for the slice loop and
    the Kueue controller."""
    return ApiTransport(endpoint, timeout_s=settings.api_timeout_s,
                        pool_size=max(32, settings.max_concurrent_accountings) + 8)


async def run(
    settings: OperatorSettings,
    endpoint: ApiEndpoint,
    listen: tuple[str, int] | None,
    peering: str | None,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], datetime] = utcnow,
    security: ScrapeSecurity | None = None,
) -> None:
    """Run until ``stop_flag`` is set (or a signal). Tests call this in a thread."""
    metrics = OperatorMetrics(registry or CollectorRegistry())
    prometheus = PrometheusClient(settings.prometheus_url, metrics,
                                  timeout_s=settings.prometheus_timeout_s,
                                  attempts=settings.query_attempts)
    job_logger = (MlflowJobLogger(settings.mlflow_tracking_uri, metrics)
                  if settings.mlflow_tracking_uri else None)
    transport = api_transport(settings, endpoint)
    kube = KubeApi(transport)
    op = Operator(settings, kube, prometheus, metrics, clock, job_logger=job_logger)
    kopf_registry = build_registry(op, login=login_handler(endpoint))
    if settings.kueue_admission:
        admission = kueue_admission.KueueAdmission(kueue_admission.KueueApi(transport), clock)
        kueue_admission.register(kopf_registry, admission)
        # a deferral plan or release of a Kueue-managed Job decides its Workload's check now
        op.deferral.subscribe(admission.on_deferral)
    if settings.long_running:
        attach_long_running(kopf_registry, op, transport)
    runner = None
    if listen is not None:
        security = security or ScrapeSecurity()
        app = build_app(metrics.registry, lambda: (True, f"ok {__version__}"), security.guard())
        runner = await serve(app, *listen, tls=security.ssl_context())
    try:
        await kopf.operator(
            registry=kopf_registry,
            standalone=peering is None,
            peering_name=peering,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        if runner is not None:
            await runner.cleanup()
        await transport.aclose()


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from_args(args)
    listen = parse_listen(args.listen)
    endpoint = load_endpoint(args.kubeconfig)
    security = scrapeauth.from_args(args)  # before anything starts: a bad file stops here
    asyncio.run(run(settings, endpoint, listen, None if args.standalone else args.peering,
                    security=security))
    return 0
