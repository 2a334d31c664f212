"""The Docker-free image definitions (carbontrack.devcluster.imagebuild) stay equivalent to
docker/*.Dockerfile: same Python and Debian release, entrypoint, default command, user,
venv path, environment, port, title, and the hash-locked requirements the build stage installs."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from carbontrack.devcluster.imagebuild import PYTHON_MINOR, SPECS, SUITE, VENV

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def _runtime_stage(text: str) -> tuple[dict[str, str], list[str]]:
    """(ARG defaults, lines of the last stage with continuations joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.startswith("#")]
    args = {}
    for ln in lines:
        if ln.startswith("ARG ") and "=" in ln:
            k, v = ln[4:].split("=", 1)
            args[k] = v
    last_from = max(i for i, ln in enumerate(lines) if ln.startswith("FROM "))
    return args, lines[last_from:]


def _instr(stage: list[str], name: str) -> list[str]:
    return [ln[len(name) + 1:] for ln in stage if ln.startswith(name + " ")]


def _env(stage: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ln in _instr(stage, "ENV"):
        for word in shlex.split(ln):
            k, v = word.split("=", 1)
            env[k] = v
    return env


@pytest.mark.parametrize("name", sorted(SPECS))
def test_image_spec_matches_dockerfile(name: str) -> None:
    text = (DOCKER / f"{name}.Dockerfile").read_text()
    args, stage = _runtime_stage(text)
    spec = SPECS[name]
    cfg = spec.config()
    assert args["PYTHON_IMAGE"] == f"python:{PYTHON_MINOR}-slim-{SUITE}"
    assert json.loads(_instr(stage, "ENTRYPOINT")[0]) == list(cfg.entrypoint)
    assert json.loads(_instr(stage, "CMD")[0]) == list(cfg.cmd)
    assert _instr(stage, "USER") == [cfg.user]
    assert _instr(stage, "EXPOSE") == [str(p) for p in cfg.exposed_ports]
    assert _instr(stage, "COPY") == [f"--from=build {VENV} {VENV}"]
    env = _env(stage)
    assert env["PATH"] == f"{VENV}/bin:$PATH"
    assert cfg.env["PATH"].startswith(f"{VENV}/bin:")
    assert {k: v for k, v in env.items() if k != "PATH"} == {
        k: v for k, v in cfg.env.items() if k not in ("PATH", "LANG")}
    label = re.search(r'org\.opencontainers\.image\.title="([^"]+)"', text)
    assert label is not None and label.group(1) == cfg.labels["org.opencontainers.image.title"]
    # the build stage installs the image's hash-locked requirements (the lock scripts/lock.py
    # writes from spec.extras, which imagebuild installs too) and the project without deps
    installs = re.findall(r"/bin/pip install ([^&]+)", re.sub(r"\\\n\s*", " ", text))
    locks = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], i.split("-r ", 1)[1].strip().strip('"'))
             for i in installs if " -r " in f" {i}"]
    assert locks == ["docker/requirements-build.lock", f"docker/requirements-{name}.lock"]
    assert all("--require-hashes --no-deps -r" in i for i in installs if "-r " in i)
    # nothing else comes from an index: the only other install is the wheel built from the context
    assert [i.strip() for i in installs if "-r " not in i] == ["--no-deps /tmp/dist/carbontrack-*.whl"]
    assert f"python -m venv {VENV}" in text
