"""Container build files: what the chart runs is what the images provide.

No Docker engine runs here, so the build stage is replayed: the files the
Dockerfile COPYs (and its .dockerignore lets through) must build a wheel with
both entry points, and the runtime stage's user/ports must match the chart.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from test_chart_tools import CHART, REPO, run

DOCKER = REPO / "docker"
IMAGES = {"exporter": DOCKER / "exporter.Dockerfile", "operator": DOCKER / "operator.Dockerfile"}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for op, rest in instructions(dockerfile):
        if op == "FROM":
            result.append([])
        if result:
            result[-1].append((op, rest))
    return result


def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics: a pattern matches the path or a folder above it;
    the last matching pattern wins and `!` re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatch(p, pat) for p in prefixes):
            verdict = not negate
    return verdict


def test_dockerignore_semantics() -> None:
    patterns = ["*", "!src/", "**/__pycache__", "src/*.egg-info"]
    assert ignored("tests/unit/x.py", patterns)
    assert not ignored("src/carbontrack/cli.py", patterns)
    assert ignored("src/carbontrack/__pycache__/cli.cpython-311.pyc", patterns)
    assert ignored("src/carbontrack.egg-info/PKG-INFO", patterns)


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_multi_stage_non_root_entrypoint_and_ports(name: str) -> None:
    dockerfile = IMAGES[name]
    st = stages(dockerfile)
    assert len(st) == 2, "a build stage and a runtime stage"
    assert st[0][0][1].endswith("AS build")
    runtime = dict(st[1])
    assert "COPY" in runtime and "--from=build" in runtime["COPY"]
    assert not any(op == "RUN" for op, _ in st[1]), "nothing installed or compiled in the runtime stage"
    user = runtime["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0, "numeric non-root uid (runAsNonRoot is checked by uid)"
    assert runtime["ENTRYPOINT"] == '["carbontrack"]'
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(runtime["EXPOSE"]) == values[name]["port"]
    if name == "operator":
        assert int(user) == values["operator"]["podSecurityContext"]["runAsUser"]
    assert values[name]["image"]["repository"].endswith(f"/{name}")


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_build_stage_context_builds_a_wheel_with_the_entry_point(name: str, tmp_path: Path) -> None:
    """Replay the build stage's COPYs through the .dockerignore, then build the wheel."""
    dockerfile = IMAGES[name]
    patterns = [p.strip() for p in Path(f"{dockerfile}.dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    ctx = tmp_path / "src"
    ctx.mkdir()
    for op, rest in stages(dockerfile)[0]:
        if op != "COPY":
            continue
        *sources, dest = rest.split()
        # COPY sources may be wildcards (docker/requirements-*.lock): Docker expands them
        roots = [r for src in sources
                 for r in (sorted(REPO.glob(src)) if any(c in src for c in "*?[") else [REPO / src])]
        assert roots, f"COPY {rest}: nothing matches"
        for root in roots:
            files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
            for path in files:
                if ignored(path.relative_to(REPO).as_posix(), patterns):
                    continue
                # Docker: a directory's contents go into dest; a file into dest/ or as dest.
                if root.is_dir():
                    target = ctx / dest / path.relative_to(root)
                elif dest.endswith("/"):
                    target = ctx / dest / path.name
                else:
                    target = ctx / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    assert not list(ctx.rglob("__pycache__"))
    assert not (ctx / "tests").exists() and not (ctx / "charts").exists()
    # the hash locks the build stage installs from pass the .dockerignore
    assert (ctx / "docker" / "requirements-build.lock").is_file()
    assert (ctx / "docker" / f"requirements-{name}.lock").is_file()
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", tmp_path / "dist", ctx], env=env)
    wheel = next((tmp_path / "dist").glob("carbontrack-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "carbontrack/cli.py" in names
    assert f"carbontrack/{name}/cli.py" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "carbontrack = carbontrack.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
