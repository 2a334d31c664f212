"""Build Kepler (sustainable-computing-io/kepler) from its source, once per version, for the
side-by-side bench (bench/bench_vs_kepler.py). Not part of scripts/setup.sh or CI.

Source: a git directory holding the release tag (``--kepler-git``, e.g. a clone or mirror;
the tag must point at the pinned commit), else the Go module proxy's zip of the same tag
(``go mod download``, checked against sum.golang.org by the go command; the proxy this
project's machines use answered 403 for Kepler itself on 2026-12-07, so there pass
``--kepler-git``). Dependencies come
from the Go module proxy, pinned by the release's go.sum. Kepler's Makefile builds with
CGO_ENABLED=1 (github.com/NVIDIA/go-nvml needs cgo: with CGO_ENABLED=0 its package does not
compile), so a C compiler is needed.

Cache layout as for the control-plane binaries (carbontrack.devcluster.binaries):
``<cache>/bin/kepler-<version>`` with the cold build's record beside it
(``kepler-<version>.build.json``: seconds, source); sources under ``<cache>/kepler/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from carbontrack.devcluster.binaries import bin_dir, cache_dir

MODULE = "github.com/sustainable-computing-io/kepler"
VERSION = "v0.11.4"
# `git rev-parse v0.11.4^{commit}` in the project's repository (tagged 2026-02-16)
COMMIT = "cdef473938d033f4ef2b58b67e1e34d3f4f0f684"


@dataclass(frozen=True)
class KeplerBinary:
    path: Path
    version: str
    source: str  # where the source came from
    build_s: float | None  # the cold build's wall time, when this cache built it


def ensure_kepler(git_dir: Path | None = None, version: str = VERSION) -> KeplerBinary:
    """The cached binary, built first if missing. Raises RuntimeError saying what failed."""
    out = bin_dir() / f"kepler-{version}"
    record = out.with_name(out.name + ".build.json")
    if os.access(out, os.X_OK):
        info = json.loads(record.read_text()) if record.exists() else {}
        return KeplerBinary(out, version, info.get("source", "cache"), info.get("seconds"))
    if shutil.which("go") is None:
        raise RuntimeError("go is not on PATH: Kepler is built from source (Go >= 1.24)")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        raise RuntimeError("no C compiler: Kepler links github.com/NVIDIA/go-nvml with cgo")
    t0 = time.monotonic()
    src, source = _source(git_dir, version)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    ldflags = f"-s -w -X {MODULE}/internal/version.version={version}"
    env = dict(os.environ, CGO_ENABLED="1", GOFLAGS="-buildvcs=false -mod=readonly")
    cmd = ["nice", "-n", "10", "go", "build", "-trimpath", "-ldflags", ldflags,
           "-o", str(tmp), "./cmd/kepler"]
    done = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"go build of Kepler {version} failed:\n{done.stderr[-3000:]}")
    tmp.rename(out)
    seconds = time.monotonic() - t0
    record.write_text(json.dumps({"seconds": round(seconds, 1), "source": source}) + "\n")
    return KeplerBinary(out, version, source, seconds)


def _source(git_dir: Path | None, version: str) -> tuple[Path, str]:
    dest = cache_dir() / "kepler" / f"src-{version}"
    if git_dir is not None:
        got = _git(git_dir, "rev-parse", f"{version}^{{commit}}").strip()
        if version == VERSION and got != COMMIT:
            raise RuntimeError(f"{git_dir}: tag {version} is {got}, expected {COMMIT}")
        if not (dest / "go.mod").exists():
            _extract_git(git_dir, version, dest)
        return dest, f"git tag {version} ({got[:12]}) of {git_dir}"
    done = subprocess.run(["go", "mod", "download", "-json", f"{MODULE}@{version}"],
                          capture_output=True, text=True)
    info = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    if done.returncode != 0 or "Error" in info or "Dir" not in info:
        # e.g. a proxy that serves Kepler's dependencies but not Kepler itself (403)
        why = info.get("Error") or done.stderr[-2000:]
        raise RuntimeError(f"go mod download {MODULE}@{version} failed; pass --kepler-git DIR "
                           f"(a clone of {MODULE} with tag {version}):\n{why}")
    if not (dest / "go.mod").exists():
        # the module cache is read-only: build from a writable copy
        shutil.copytree(info["Dir"], dest)
        for p in [dest, *dest.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    return dest, f"Go module proxy zip of {MODULE}@{version} ({info.get('Sum', '?')})"


def _extract_git(git_dir: Path, version: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        archive = Path(tmp) / "src.tar"
        with archive.open("wb") as fh:
            subprocess.run(["git", f"--git-dir={git_dir}", "archive", version],
                           stdout=fh, check=True)
        staged = Path(tmp) / "src"
        with tarfile.open(archive) as tar:
            tar.extractall(staged, filter="data")
        staged.rename(dest)


def _git(git_dir: Path, *args: str) -> str:
    done = subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} in {git_dir}: {done.stderr.strip()}")
    return done.stdout
