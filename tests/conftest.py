"""Test selection for the whole suite.

Unit tests run by default. Tests marked ``e2e`` (a real local control plane, see
docs/e2e.md) run only with ``--e2e`` or ``CARBONTRACK_E2E=1``; ``--no-e2e`` wins over
both. Tests marked ``slow`` (soak variants) run only with ``--soak``.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("carbontrack")
    group.addoption("--e2e", action="store_true", default=False,
                    help="also run end-to-end tests on a real local control plane")
    group.addoption("--no-e2e", action="store_true", default=False,
                    help="skip end-to-end tests even if --e2e or CARBONTRACK_E2E=1")
    group.addoption("--soak", action="store_true", default=False,
                    help="also run long soak variants (marked slow)")
    group.addoption("--cluster", choices=("auto", "local", "kind"), default="auto",
                    help="e2e cluster: local control plane, kind, or auto (kind when "
                         "`docker info` works and kind is on PATH, else local)")


def e2e_enabled(config: pytest.Config) -> bool:
    if config.getoption("--no-e2e"):
        return False
    return bool(config.getoption("--e2e")) or os.environ.get("CARBONTRACK_E2E") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_e2e = e2e_enabled(config)
    soak = bool(config.getoption("--soak"))
    skip_e2e = pytest.mark.skip(reason="end-to-end test: run with --e2e or CARBONTRACK_E2E=1")
    skip_slow = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if item.get_closest_marker("e2e") is not None and not run_e2e:
            item.add_marker(skip_e2e)
        if item.get_closest_marker("slow") is not None and not soak:
            item.add_marker(skip_slow)
