"""`carbontrack run [OPTIONS] -- CMD [ARGS...]` (the dispatcher calls ``main(argv)``)."""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ..core.errors import ConfigError
from ..intensity.selection import add_arguments, config_from_args
from .settings import DEFAULT_INTERVAL_S, FORMATS, SCOPES, TrackerSettings, parse_gpus

if TYPE_CHECKING:
    from .api import Tracker


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, through the dispatcher's error path, instead of usage + message.
        raise ConfigError(f"{message} (see carbontrack run --help)")


def _formats(text: str) -> tuple[str, ...]:
    if text == "none":
        return ()
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in parts if p not in FORMATS]
    if bad or not parts:
        raise argparse.ArgumentTypeError(f"unknown format {text!r}: use csv, json, csv,json or none")
    return parts


def _span(text: str) -> timedelta:
    from ..intensity.window import parse_span

    try:
        return parse_span(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="carbontrack run",
        description="Run CMD, measure the energy and CO2e of its process tree (or the machine), "
        "print a summary, write CSV (CodeCarbon columns) and JSON, exit with CMD's status.",
        usage="carbontrack run [OPTIONS] -- CMD [ARGS...]",
    )
    p.add_argument(
        "--zone",
        help="grid zone key, ISO code, eGRID subregion or provider:region "
        "(default: $CARBONTRACK_ZONE, then cloud metadata)",
    )
    p.add_argument("--pue", type=float, help="data-centre PUE >= 1 (default: $CARBONTRACK_PUE or 1.0)")
    p.add_argument(
        "--output",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="directory for emissions.csv and carbontrack-<run>.json (default: .)",
    )
    p.add_argument(
        "--scope",
        choices=SCOPES,
        default="process",
        help="process: CMD's process tree share of CPU energy; machine: everything",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="S",
        help=f"seconds between samples (default {DEFAULT_INTERVAL_S:g})",
    )
    p.add_argument("--cpu-watts", type=float, metavar="W", help="fixed CPU power instead of RAPL/model")
    p.add_argument("--gpus", type=parse_gpus, metavar="0,1", help="NVML GPU indices to measure")
    p.add_argument(
        "--market-factor", type=float, metavar="G", help="market-based factor, gCO2e/kWh (supplier or residual mix)"
    )
    p.add_argument(
        "--format",
        type=_formats,
        default=FORMATS,
        metavar="csv,json",
        help="output files: csv, json, csv,json (default) or none",
    )
    p.add_argument("--project-name", default="carbontrack")
    p.add_argument("--experiment-id", default="")
    p.add_argument("--quiet", action="store_true", help="no summary table")
    p.add_argument("--until-low-carbon", type=_span, default=None, metavar="DURATION",
                   help="wait up to DURATION ('6h', '90m') for the lowest-carbon window of the "
                        "live provider's forecast, then run (without a forecast: at once, "
                        "saying why)")
    p.add_argument("--expected-duration", type=_span, default=timedelta(hours=1),
                   metavar="DURATION", help="how long CMD runs, for --until-low-carbon's "
                                            "window (default 1h)")
    add_arguments(p)
    # Test and bench hooks: read a fake sysfs/procfs tree instead of the real one.
    p.add_argument("--sysfs", type=Path, default=Path("/sys"), help=argparse.SUPPRESS)
    p.add_argument("--procfs", type=Path, default=Path("/proc"), help=argparse.SUPPRESS)
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    if "--" in argv:
        split = argv.index("--")
        opts, command = argv[:split], argv[split + 1 :]
        if "-h" in opts or "--help" in opts:
            parser.print_help()
            return 0
        a = parser.parse_args(opts)
    else:  # `carbontrack run --zone DE python x.py`: CMD starts at the first positional
        parser.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        a = parser.parse_args(argv)
        command = a.command
    settings = TrackerSettings(
        project_name=a.project_name,
        experiment_id=a.experiment_id,
        zone=a.zone,
        pue=a.pue,
        output_dir=a.output if a.format else None,
        formats=a.format,
        scope=a.scope,
        interval_s=a.interval,
        cpu_watts=a.cpu_watts,
        gpus=a.gpus,
        market_factor_g_per_kwh=a.market_factor,
        sysfs_root=a.sysfs,
        procfs_root=a.procfs,
        summary=False,
        intensity=config_from_args(a, os.environ),
    )
    # Imported here: `--help` and bad flags answer without loading the tracker.
    from .api import Tracker
    from .run import run_command
    from .summary import render

    tracker = Tracker(settings)
    if a.until_low_carbon is not None:
        _wait_for_low_carbon(tracker, settings, a.until_low_carbon, a.expected_duration)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, result = run_command(command, tracker)
    if not a.quiet:
        print(render(result, tuple(map(str, tracker.files))), file=sys.stderr)
    for w in caught:  # after the table, so they are the last thing on screen
        print(f"carbontrack run: warning: {w.message}", file=sys.stderr)
    return code


def _wait_for_low_carbon(tracker: Tracker, settings: TrackerSettings, within: timedelta,
                         duration: timedelta) -> None:
    """Resolve the zone as the run will (bad input fails before any wait), then wait."""
    from .clock import SystemClock
    from .low_carbon import wait_for_low_carbon
    from .wiring import build_selection

    tracker.prepare()
    assert tracker.zone_choice is not None
    selection = build_selection(settings.resolved(), os.environ)
    wait_for_low_carbon(selection.forecaster, tracker.zone_choice.lookup_key, within=within,
                        duration=duration, clock=SystemClock(), sleep=time.sleep,
                        say=lambda line: print(line, file=sys.stderr, flush=True))
