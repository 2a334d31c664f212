"""Build the images a real node runs, without Docker or a registry, cached by content.

- ``pause``: the sandbox image. A static C binary that waits for signals and reaps
  children, like Kubernetes' own pause (no registry is reachable to pull that one).
- ``exporter`` / ``operator``: the same images docker/*.Dockerfile describe. Layer 1 is a
  Debian root filesystem from ``mmdebstrap`` (Python 3.11 from Debian, like the Dockerfiles'
  python:3.11-slim-bookworm); layer 2 is a virtual environment at /opt/carbontrack with the
  project's wheel and the distributions of its hash-locked requirements
  (docker/requirements-<image>.lock, carbontrack.devcluster.locks), installed by the host's
  pip with ``--require-hashes --no-deps`` for the image's Python and glibc (same Python
  minor) so that building needs no chroot; with it ``VENV/sbom.cdx.json``, a CycloneDX
  bill of materials of every distribution installed (``carbontrack.sbom``). :data:`SPECS`
  mirrors the Dockerfiles and tests/e2e/test_images.py keeps the two equal.

Archives land in ``<cache>/images/`` named by a hash of everything that goes into them, so
a warm build only hashes the source tree.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..core.errors import ConfigError
from ..sbom import bom
from .images import ImageConfig, tree_layer, write_docker_archive
from .locks import install_requirements, lock_path, target_args

PYTHON_MINOR = "3.11"  # Debian bookworm's python3; the Dockerfiles' python:3.11-slim-bookworm
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
VENV = "/opt/carbontrack"
PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOCAL_REGISTRY = "carbontrack.local"
SBOM_NAME = "sbom.cdx.json"  # in VENV: CycloneDX of every installed distribution

PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
"""


@dataclass(frozen=True)
class ImageSpec:
    """One application image: what its Dockerfile's runtime stage says."""

    name: str
    extras: str
    user: str
    port: int
    cmd: tuple[str, ...]
    title: str

    def config(self) -> ImageConfig:
        return ImageConfig(
            entrypoint=("carbontrack",),
            cmd=self.cmd,
            user=self.user,
            env={"PATH": PATH, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
                 "LANG": "C.UTF-8"},
            exposed_ports=(self.port,),
            labels={"org.opencontainers.image.title": self.title,
                    "org.opencontainers.image.licenses": "Apache-2.0"},
        )


EXPORTER = ImageSpec("exporter", "exporter", "65534:65534", 9875, ("exporter", "--help"),
                     "carbontrack-exporter")
OPERATOR = ImageSpec("operator", "operator", "65532:65532", 8080, ("operator", "--help"),
                     "carbontrack-operator")
SPECS = {s.name: s for s in (EXPORTER, OPERATOR)}

# What the Dockerfiles copy into their build context (their .dockerignore allow-list).
SOURCE_PATHS = ("pyproject.toml", "setup.py", "README.md", "src", "exporter", "operator")


@dataclass(frozen=True)
class BuiltImage:
    ref: str  # repository:tag as containerd will know it
    archive: Path


def mmdebstrap_args(out: Path) -> list[str]:
    """The base layer's recipe (pure; its hash is part of every image's cache key)."""
    return [
        "mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar",
        f"--include=python{PYTHON_MINOR},ca-certificates",
        *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "locale", "info")),
        SUITE, str(out), MIRROR,
    ]


def venv_files(python_minor: str = PYTHON_MINOR) -> dict[str, str]:
    """The files that make ``VENV`` a virtual environment of the image's Debian Python
    (``bin/carbontrack`` is the console script pip would have written)."""
    return {
        "pyvenv.cfg": "home = /usr/bin\ninclude-system-site-packages = false\n"
                      f"version = {python_minor}\n",
        "bin/carbontrack": f"#!{VENV}/bin/python\nimport sys\nfrom carbontrack.cli import main\n"
                           "sys.exit(main())\n",
    }


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _source_files(repo: Path) -> Iterator[Path]:
    for top in SOURCE_PATHS:
        p = repo / top
        if p.is_file():
            yield p
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and "__pycache__" not in f.parts and ".egg-info" not in str(f) \
                        and f.suffix != ".pyc":
                    yield f


def source_hash(repo: Path) -> str:
    h = hashlib.sha256()
    for f in _source_files(repo):
        h.update(f.relative_to(repo).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _prune(cache: Path, name: str, keep: Path) -> None:
    """Drop older archives of the same image (each holds the ~170 MB base layer)."""
    for old in cache.glob(f"{name}-*.tar"):
        if old != keep:
            old.unlink(missing_ok=True)


def _run(argv: list[str], log: Path, what: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise ConfigError(f"{what} failed (exit {rc}); log {log}:\n{tail}")


@dataclass
class ImageBuilder:
    """Builds into ``cache`` (``<cache dir>/images``); ``log`` collects tool output."""

    cache: Path
    log: Path

    def pause(self) -> BuiltImage:
        key = _key(PAUSE_C)
        ref = f"{LOCAL_REGISTRY}/pause:{key}"
        out = self.cache / f"pause-{key}.tar"
        if not out.exists():
            self.cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.cache) as tmp:
                t = Path(tmp)
                (t / "pause.c").write_text(PAUSE_C)
                (t / "root").mkdir()
                _run(["gcc", "-static", "-Os", "-s", "-o", str(t / "root" / "pause"),
                      str(t / "pause.c")], self.log, "building the pause binary")
                layer = tree_layer(t / "root", t / "layer.tar")
                write_docker_archive(out, ref, ImageConfig(entrypoint=("/pause",),
                                                           user="65535:65535"), [layer])
        return BuiltImage(ref, out)

    def base_layer(self) -> Path:
        out = self.cache / f"base-{_key(mmdebstrap_args(Path('OUT')))}.tar"
        if not out.exists():
            if shutil.which("mmdebstrap") is None:
                raise ConfigError("mmdebstrap is not installed: run scripts/setup.sh")
            self.cache.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".partial")
            _run(mmdebstrap_args(tmp), self.log, "mmdebstrap (the images' Debian base)")
            tmp.replace(out)
        return out

    def debian(self) -> BuiltImage:
        """The base layer alone as an image (shell, coreutils, Python): the real node's
        busybox for test workloads."""
        base = self.base_layer()
        key = _key(base.name)
        ref = f"{LOCAL_REGISTRY}/debian:{key}"
        out = self.cache / f"debian-{key}.tar"
        if not out.exists():
            write_docker_archive(out, ref, ImageConfig(entrypoint=(), cmd=("bash",),
                                                       env={"PATH": PATH}), [base])
        return BuiltImage(ref, out)

    def app(self, spec: ImageSpec, repo: Path) -> BuiltImage:
        if f"{sys.version_info.major}.{sys.version_info.minor}" != PYTHON_MINOR:
            raise ConfigError(
                f"image builds install wheels with this Python; it must be {PYTHON_MINOR} "
                f"like the image's, not {sys.version_info.major}.{sys.version_info.minor}"
            )
        lock = lock_path(repo, spec.name)
        if not lock.is_file():
            raise ConfigError(f"{lock} is missing: write it with `python scripts/lock.py`")
        lock_text = lock.read_text()
        base = self.base_layer()
        key = _key(base.name, spec, source_hash(repo), venv_files(), lock_text)
        ref = f"{LOCAL_REGISTRY}/{spec.name}:{key}"
        out = self.cache / f"{spec.name}-{key}.tar"
        if out.exists():
            return BuiltImage(ref, out)
        self.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache) as tmp:
            t = Path(tmp)
            _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                  "--no-build-isolation", "-w", str(t / "dist"), str(repo)],
                 self.log, "building the carbontrack wheel")
            wheel = next((t / "dist").glob("carbontrack-*.whl"))
            venv = t / "root" / VENV.lstrip("/")
            site = venv / "lib" / f"python{PYTHON_MINOR}" / "site-packages"
            # exactly the locked files and the wheel just built, each checked by hash
            reqs = t / "requirements.txt"
            reqs.write_text(install_requirements(lock_text, wheel))
            _run([sys.executable, "-m", "pip", "install", "-q", "--no-compile",
                  "--disable-pip-version-check", "--require-hashes", "--no-deps",
                  *target_args(platform.machine()), "--target", str(site), "-r", str(reqs)],
                 self.log, f"installing {wheel.name} and {lock.name} (--require-hashes)")
            shutil.rmtree(site / "bin", ignore_errors=True)  # --target's scripts: host paths
            for rel, text in venv_files().items():
                (venv / rel).parent.mkdir(parents=True, exist_ok=True)
                (venv / rel).write_text(text)
            (venv / "bin" / "carbontrack").chmod(0o755)
            (venv / "bin" / "python").symlink_to(f"/usr/bin/python{PYTHON_MINOR}")
            (venv / "bin" / "python3").symlink_to("python")
            # the bill of materials of what was installed, shipped in the image (as the
            # Dockerfiles' build stage writes it)
            sbom = bom(site, f"carbontrack-{spec.name}", __version__)
            (venv / SBOM_NAME).write_text(json.dumps(sbom, indent=1, sort_keys=True) + "\n")
            layer = tree_layer(t / "root", t / "app.tar")
            write_docker_archive(out, ref, spec.config(), [base, layer])
        _prune(self.cache, spec.name, out)
        return BuiltImage(ref, out)
