"""`carbontrack report`: CSV/JSON/HTML, GHG, EU AI Act, SCI and compute-statement reports
for a period and scope, from the cluster, Prometheus and/or local tracker files."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from carbontrack.core import contract
from carbontrack.core.errors import ConfigError
from carbontrack.core.outdir import ensure_output_dir, remove_created
from carbontrack.core.redact import yaml_problem

from . import export
from .build import Scope, build_report
from .ghg import GhgSettings
from .model import LineItem, parse_time
from .sci import EmbodiedModel, EmbodiedSettings
from .sources_cluster import Budget, IdentityKeys, Skipped

FORMATS = ("csv", "json", "html", "aiact", "statement")


def parse_period(text: str) -> tuple[datetime, datetime]:
    """``2026``, ``2026-Q4`` or ``2026-11`` -> [start, end) in UTC."""
    m = re.fullmatch(r"(\d{4})(?:-(?:Q([1-4])|(\d{2})))?", text.strip())
    if not m:
        raise ConfigError(f"--period {text!r}: use YYYY, YYYY-Qn or YYYY-MM (e.g. 2026-11)")
    year = int(m.group(1))
    if m.group(2):
        first, months = (int(m.group(2)) - 1) * 3 + 1, 3
    elif m.group(3):
        first, months = int(m.group(3)), 1
        if not 1 <= first <= 12:
            raise ConfigError(f"--period {text!r}: month must be 01..12")
    else:
        first, months = 1, 12
    start = datetime(year, first, 1, tzinfo=timezone.utc)
    end_month = first + months
    end = datetime(year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="carbontrack report",
        epilog="Also: `carbontrack report sync-trackers --help` logs accounted Jobs to the "
        "MLflow / W&B runs they name.",
        description="Energy and CO2e report per Job with totals, GHG (Scope 2/3, location- and "
        "market-based), EU AI Act training energy, SCI and a paper compute statement.",
    )
    src = p.add_argument_group("data sources (at least one)")
    src.add_argument("--cluster", action="store_true", help="read accounted Jobs and CarbonBudgets from the cluster")
    src.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG / ~/.kube/config)")
    src.add_argument("--context", help="kubeconfig context")
    src.add_argument("--prometheus-url", help="Prometheus base URL, for Jobs the operator has not annotated")
    src.add_argument("--tracker-file", action="append", default=[], type=Path, metavar="PATH",
                     help="tracker CSV/JSON output file or directory (repeatable)")
    src.add_argument("--tracker-team", default="", help="team to record for tracker runs (they carry none)")
    sc = p.add_argument_group("scope")
    sc.add_argument("--period", help="YYYY, YYYY-Qn or YYYY-MM (UTC); or use --since/--until")
    sc.add_argument("--since", help="ISO 8601 start (inclusive), e.g. 2026-11-01T00:00:00Z")
    sc.add_argument("--until", help="ISO 8601 end (exclusive)")
    sc.add_argument("--namespace", "-n", action="append", default=[], help="namespace (repeatable; default all)")
    sc.add_argument("--team", default="", help="only Jobs whose team label has this value")
    sc.add_argument("--selector", "-l", default="", help="Kubernetes label selector for Jobs")
    sc.add_argument("--cluster-name", default="", help="cluster name written into each line")
    sc.add_argument("--team-label", default="team", help="Job label naming the team (default: team)")
    sc.add_argument("--model-label", default=contract.MODEL_LABEL, help="Job label naming the model")
    out = p.add_argument_group("output")
    out.add_argument("--format", default="csv,json,html",
                     help=f"comma-separated, from {','.join(FORMATS)} (default csv,json,html)")
    out.add_argument("--output", "-o", type=Path, default=Path("."), help="output directory")
    out.add_argument("--config", type=Path,
                     help='JSON settings: {"ghg": {...}, "embodied": {...}} (see docs/reports.md)')
    out.add_argument("--market-factors", type=Path, metavar="FILE",
                     help="JSON list of market-based instruments per zone, as for `carbontrack run "
                     "--market-factors` (default: $CARBONTRACK_MARKET_FACTORS); instead of "
                     "ghg.market_instruments in --config")
    out.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    return p


def _kube_api_client(kubeconfig: str | None, context: str | None) -> Any:
    import yaml
    from kubernetes import config

    try:
        if kubeconfig or context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            return config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        from kubernetes import client

        return client.ApiClient()
    except config.ConfigException as err:
        raise ConfigError(f"cannot load Kubernetes credentials: {err}; pass --kubeconfig FILE") from None
    except yaml.YAMLError as err:  # the kubeconfig is not YAML; its lines may hold tokens: position only
        raise ConfigError(f"cannot load Kubernetes credentials: the kubeconfig is not valid YAML "
                          f"({yaml_problem(err)}); pass --kubeconfig FILE") from None


def gather(
    args: argparse.Namespace,
    progress: Callable[[str], None],
    since: datetime | None,
    until: datetime | None,
    api_client_factory: Callable[[str | None, str | None], Any] = _kube_api_client,
) -> tuple[list[LineItem], list[Skipped], list[Budget], list[str]]:
    keys = IdentityKeys(model_label=args.model_label, team_label=args.team_label, cluster=args.cluster_name)
    lines: list[LineItem] = []
    skipped: list[Skipped] = []
    budgets: list[Budget] = []
    notes: list[str] = []
    if args.cluster:
        from .sources_cluster import ClusterSource

        cs = ClusterSource(api_client_factory(args.kubeconfig, args.context), keys, progress)
        got, skip = cs.lines(args.namespace, args.selector, since, until)
        lines += got
        skipped += skip
        budgets = cs.budgets(args.namespace)
    if args.prometheus_url:
        from .sources_prometheus import PrometheusSource

        if since is None or until is None:
            raise ConfigError("--prometheus-url needs a closed window: give --period or --since and --until")
        ps = PrometheusSource(args.prometheus_url, keys, progress=progress)
        lines += ps.lines(since, until, args.namespace)
    if args.tracker_file:
        from .sources_files import Relations, read_tracker_path, without_shared_energy

        relations: Relations = {}
        runs: list[LineItem] = []
        for path in args.tracker_file:
            got = read_tracker_path(path, cluster=args.cluster_name, team=args.tracker_team, relations=relations)
            progress(f"files: {len(got)} runs read from {path}")
            runs += got
        kept, notes = without_shared_energy(runs, relations)
        lines += kept
    return lines, skipped, budgets, notes


def main(argv: list[str]) -> int:
    if argv[:1] == ["sync-trackers"]:
        from .sync import main as sync_main

        return sync_main(argv[1:], _kube_api_client)
    if argv[:1] == ["deferrals"]:
        from .deferrals import main as deferrals_main

        return deferrals_main(argv[1:], _kube_api_client)
    args = _parser().parse_args(argv)
    formats = {f.strip() for f in args.format.split(",") if f.strip()}
    bad = formats - set(FORMATS)
    if bad or not formats:
        raise ConfigError(f"--format: unknown {sorted(bad)}; choose from {', '.join(FORMATS)}")
    if not (args.cluster or args.prometheus_url or args.tracker_file):
        raise ConfigError("no data source: pass --cluster, --prometheus-url URL and/or --tracker-file PATH")
    if args.period and (args.since or args.until):
        raise ConfigError("give either --period or --since/--until, not both")
    since, until = parse_period(args.period) if args.period else (None, None)
    if args.since:
        since = parse_time(args.since, "--since")
    if args.until:
        until = parse_time(args.until, "--until")
    if since and until and since >= until:
        raise ConfigError(f"--since {since.isoformat()} is not before --until {until.isoformat()}")
    doc: dict[str, Any] = {}
    if args.config:
        try:
            doc = json.loads(args.config.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read --config {args.config}: {err}") from None
    ghg_settings = with_market_file(GhgSettings.from_dict(doc.get("ghg") or {}),
                                    args.market_factors, os.environ)
    embodied = EmbodiedModel(EmbodiedSettings.from_dict(doc.get("embodied") or {}))

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"report: {msg}", file=sys.stderr, flush=True)

    # the output directory is made (with parents) and checked before the slow part; a run
    # that fails leaves no directory it made behind
    created = ensure_output_dir(args.output, "--output")
    try:
        return _report(args, progress, since, until, ghg_settings, embodied, formats, created)
    except BaseException:
        remove_created(created)
        raise


def with_market_file(ghg: GhgSettings, path: Path | None, env: Mapping[str, str]) -> GhgSettings:
    """Market-based instruments from ``--market-factors`` (else $CARBONTRACK_MARKET_FACTORS),
    read by the selection path the tracker uses; one source of instruments per report."""
    from carbontrack.intensity.selection import ENV_MARKET, IntensityConfig, market_factors

    chosen = path or (Path(env[ENV_MARKET]) if env.get(ENV_MARKET) else None)
    market = market_factors(IntensityConfig(market_file=chosen))
    if market is None:
        return ghg
    if len(ghg.market):
        raise ConfigError("market-based instruments given twice: in --config (ghg.market_instruments) "
                          f"and in {chosen}; keep one")
    return replace(ghg, market=market)


def _report(args: argparse.Namespace, progress: Callable[[str], None], since: datetime | None,
            until: datetime | None, ghg_settings: GhgSettings, embodied: EmbodiedModel,
            formats: set[str], created: list[Path]) -> int:
    lines, skipped, budgets, notes = gather(args, progress, since, until)
    scope = Scope(args.cluster_name, tuple(args.namespace), args.team, args.selector, since, until)
    from carbontrack.intensity.catalogue import Catalogue

    from .provenance import CatalogueYears

    years = CatalogueYears(Catalogue.load())
    report = build_report(lines, scope, ghg_settings, embodied, skipped=skipped, budgets=budgets, fill=years.fill)
    report.notes[:0] = notes
    for s in skipped:
        progress(f"warning: Job {s.namespace}/{s.job} left out: {s.reason}")
    if not report.lines:
        progress("warning: no accounted Jobs or runs matched the scope and period; the report is empty")
    for path in export.write(report, args.output, formats, created):
        print(path)
    return 0
