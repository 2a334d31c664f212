#!/usr/bin/env bash
# The README's test command runs this: lint, type checks, unit tests, then the end-to-end
# tests on the local control plane. Extra arguments go to pytest (e.g. -k budget, --no-e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff"; ruff check .
echo "== mypy (strict, every package)"; mypy
echo "== pytest"; pytest --e2e "$@"
