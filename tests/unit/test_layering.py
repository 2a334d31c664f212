"""Import rules between our packages (docs/architecture.md), checked on the source files.

Like kopf's layered packages: lower layers never import upper ones, so the
tracker never pulls in Kubernetes clients and the exporter and operator stay
independent of each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PACKAGE_ROOTS = {
    "carbontrack.core": REPO / "src/carbontrack/core",
    "carbontrack.sources": REPO / "src/carbontrack/sources",
    "carbontrack.intensity": REPO / "src/carbontrack/intensity",
    "carbontrack.sim": REPO / "src/carbontrack/sim",
    "carbontrack.tracker": REPO / "src/carbontrack/tracker",
    "carbontrack.reports": REPO / "src/carbontrack/reports",
    "carbontrack.devcluster": REPO / "src/carbontrack/devcluster",
    "carbontrack.exporter": REPO / "exporter",
    "carbontrack.operator": REPO / "operator",
}

# package -> packages of ours it may import (besides itself and carbontrack's top-level __init__)
ALLOWED = {
    "carbontrack.core": set(),
    "carbontrack.sources": {"carbontrack.core"},
    "carbontrack.intensity": {"carbontrack.core"},
    "carbontrack.sim": {"carbontrack.core"},
    "carbontrack.tracker": {"carbontrack.core", "carbontrack.sources", "carbontrack.intensity"},
    "carbontrack.reports": {
        "carbontrack.core", "carbontrack.sources", "carbontrack.intensity", "carbontrack.tracker",
    },
    # the local cluster for tests and the demo: starts the exporter and operator as processes,
    # never imports them
    "carbontrack.devcluster": {"carbontrack.core", "carbontrack.sim"},
    "carbontrack.exporter": {"carbontrack.core", "carbontrack.sources", "carbontrack.intensity"},
    "carbontrack.operator": {"carbontrack.core", "carbontrack.intensity", "carbontrack.reports"},
}


def _imports(path: Path, package: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    rel_parts = path.relative_to(PACKAGE_ROOTS[package]).with_suffix("").parts
    module_parts = package.split(".") + list(rel_parts)
    if module_parts[-1] == "__init__":
        module_parts = module_parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module_parts[: len(module_parts) - node.level + (1 if path.name == "__init__.py" else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
    return {name for name in found if name.startswith("carbontrack")}


def _owner(module: str) -> str | None:
    for package in PACKAGE_ROOTS:
        if module == package or module.startswith(package + "."):
            return package
    return None


def test_packages_respect_import_layers() -> None:
    violations = []
    for package, root in PACKAGE_ROOTS.items():
        for path in root.rglob("*.py"):
            if "tests" in path.parts or path.name.endswith("_pb2.py") or path.name.endswith("_pb2_grpc.py"):
                continue
            for module in _imports(path, package):
                owner = _owner(module)
                if owner is None or owner == package or owner in ALLOWED[package]:
                    continue
                violations.append(f"{path.relative_to(REPO)} imports {module} ({package} may not use {owner})")
    assert violations == []


def test_layer_check_detects_a_violation(tmp_path: Path) -> None:
    # Guard against a check that cannot fail: a core module importing the exporter is caught.
    bad = PACKAGE_ROOTS["carbontrack.core"] / "_layering_probe.py"
    bad.write_text("from carbontrack.exporter import cli\n")
    try:
        assert _owner(next(iter(_imports(bad, "carbontrack.core")))) == "carbontrack.exporter"
    finally:
        bad.unlink()


def _kubernetes_modules_after_import(modules: list[str]) -> list[str]:
    import subprocess
    import sys

    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & {'kubernetes'})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_exporter_never_imports_the_kubernetes_client() -> None:
    """The exporter watches pods with its own stdlib client: the `kubernetes` package costs
    the exporter pod ~46 MiB by its import alone (docs/performance/exporter-memory.md)."""
    exporter = [f"carbontrack.exporter.{p.stem}" for p in (REPO / "exporter").glob("*.py")
                if p.stem != "__init__"]
    assert _kubernetes_modules_after_import(exporter) == []
    # the check can fail: the local cluster's harness does import it
    assert _kubernetes_modules_after_import(["carbontrack.devcluster.kube"]) == ["kubernetes"]


def _operator_process_modules(entry: str) -> list[str]:
    """`carbontrack operator --help` run in a fresh interpreter as ``entry`` does, then every
    operator module imported: the `kubernetes` modules that process has loaded (a None entry
    in sys.modules, the block, is not a loaded module)."""
    import subprocess
    import sys

    modules = sorted(f"carbontrack.operator.{p.relative_to(REPO / 'operator').with_suffix('')}".replace("/", ".")
                     for p in (REPO / "operator").rglob("*.py") if p.stem != "__init__")
    code = ("import contextlib, importlib, io, sys\n"
            "from carbontrack import cli\n"
            "sys.argv = ['carbontrack', 'operator', '--help']\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            f"    {entry}\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(' '.join(sorted(m for m, mod in sys.modules.items()\n"
            "                      if m.split('.')[0] == 'kubernetes' and mod is not None)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_the_operator_process_never_imports_the_kubernetes_client() -> None:
    """kopf imports the `kubernetes` client's models whenever the package is installed (~28 MiB
    of the operator's RSS, docs/performance/operator-memory.md); the operator's entry point
    blocks it before kopf is imported, and no operator module needs it."""
    import importlib.util

    assert _operator_process_modules("cli.main()") == []  # the console script / python -m carbontrack
    if importlib.util.find_spec("kubernetes") is not None:
        # the check can fail: called as a library (a test, the local cluster), kopf loads it
        assert "kubernetes.client" in _operator_process_modules("cli.main(sys.argv[1:])")


def test_every_package_is_layered() -> None:
    """A new package under src/carbontrack cannot escape the rules by not being listed."""
    packages = {f"carbontrack.{p.parent.name}" for p in (REPO / "src/carbontrack").glob("*/__init__.py")}
    assert packages <= PACKAGE_ROOTS.keys(), f"add to PACKAGE_ROOTS/ALLOWED: {packages - PACKAGE_ROOTS.keys()}"
