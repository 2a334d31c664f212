"""`carbontrack` command: dispatches to one module per subcommand.

Subcommand modules are imported only when chosen, so `carbontrack run` does
not pay for the Kubernetes client or kopf at start-up. Each module exposes
``main(argv: list[str]) -> int``.
"""

from __future__ import annotations

import importlib
import sys

from . import __version__
from .core.errors import CarbonTrackError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("carbontrack.tracker.cli", "run a command and measure its energy and CO2e"),
    "zones": ("carbontrack.intensity.cli_zones", "list grid zones with their factors"),
    "intensity": ("carbontrack.intensity.cli_intensity", "show one zone's carbon intensity"),
    "exporter": ("carbontrack.exporter.cli", "run the node exporter (DaemonSet entry point)"),
    "operator": ("carbontrack.operator.cli", "run the Kubernetes operator"),
    "report": ("carbontrack.reports.cli", "ESG / EU AI Act / paper reports"),
}


# Packages a command's process must never import. kopf imports the `kubernetes` client's
# models whenever that package is installed (kopf/_cogs/helpers/thirdparty.py): ~28 MiB of
# the operator's RSS for nothing, since it talks to the API over its own aiohttp transport
# (docs/performance/operator-memory.md). A None entry in sys.modules makes kopf's optional
# import fail as if the package were absent.
BLOCKED_IMPORTS: dict[str, tuple[str, ...]] = {"operator": ("kubernetes",)}


def block_imports(command: str) -> None:
    """Only in the command's own process (the console script, ``python -m carbontrack``):
    tests and the local cluster import the operator and the client in one process."""
    for package in BLOCKED_IMPORTS.get(command, ()):
        sys.modules.setdefault(package, None)  # type: ignore[arg-type]


def _usage() -> str:
    lines = [f"carbontrack {__version__}", "", "usage: carbontrack COMMAND [ARGS...]", ""]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `carbontrack COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(__version__)
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"carbontrack: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if argv is None:  # this process's entry point, not a call from a test
        block_imports(name)
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest))
    except CarbonTrackError as err:
        print(f"carbontrack {name}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
