"""Hash-locked requirements of the images (docker/requirements-<image>.lock).

Every third-party distribution an image installs is pinned to one version with the SHA-256 of
each wheel that may be installed (Linux x86_64 and aarch64, CPython 3.11, glibc of Debian
bookworm), in pip's requirements format, so ``pip install --require-hashes --no-deps -r``
installs exactly those files or refuses. ``scripts/lock.py`` writes the files with pip's own
``pip download``; the project's wheel, built from the checkout, is added with its own hash at
build time (:func:`install_requirements`). ``requirements-build.lock`` pins what the
Dockerfiles' build stage needs to build that wheel (setuptools, wheel).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import PathDistribution
from pathlib import Path

from ..core.errors import ConfigError

DOCKER_DIR = "docker"
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


GLIBC_MINOR = 36  # Debian bookworm's glibc 2.36, the images' (and the Dockerfiles' base's)
ARCHES = ("x86_64", "aarch64")
PYTHON = "3.11"


def target_args(arch: str) -> list[str]:
    """pip flags that choose wheels for the image rather than for this host: CPython 3.11 and
    every manylinux tag bookworm's glibc runs, best first (pip does not expand
    ``manylinux_2_36`` to older tags by itself)."""
    platforms = [f"manylinux_2_{m}_{arch}" for m in range(GLIBC_MINOR, 4, -1)]
    platforms += [f"manylinux{legacy}_{arch}" for legacy in ("2014", "2010", "1")
                  if arch == "x86_64" or legacy == "2014"]
    return ["--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp",
            "--abi", f"cp{PYTHON.replace('.', '')}", "--abi", "abi3", "--abi", "none",
            *(f"--platform={p}" for p in platforms)]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def lock_path(repo: Path, image: str) -> Path:
    return repo / DOCKER_DIR / f"requirements-{image}.lock"


@dataclass(frozen=True)
class Locked:
    name: str  # PEP 503 normalised
    version: str
    hashes: tuple[str, ...]


def parse_lock(text: str, source: str = "lock file") -> dict[str, Locked]:
    """name -> Locked; a line without ``name==version`` or without a hash is a ConfigError
    (pip would refuse it under --require-hashes too, later and less clearly)."""
    out: dict[str, Locked] = {}
    joined = re.sub(r"\\\n", " ", text)
    for n, line in enumerate(joined.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        pin = PIN.match(line)
        hashes = tuple(HASH.findall(line))
        if pin is None or not hashes:
            raise ConfigError(f"{source} line {n}: {line[:80]!r} is not 'name==version "
                              "--hash=sha256:...'; regenerate it with scripts/lock.py")
        name = normalise(pin.group(1))
        if name in out:
            raise ConfigError(f"{source}: {name} is pinned twice")
        out[name] = Locked(name, pin.group(2), hashes)
    return out


def format_lock(locked: Iterable[Locked], header: str) -> str:
    lines = [f"# {h}".rstrip() for h in header.splitlines()]
    for item in sorted(locked, key=lambda x: x.name):
        lines.append(f"{item.name}=={item.version} \\")
        hashes = sorted(set(item.hashes))
        for i, h in enumerate(hashes):
            lines.append(f"    --hash=sha256:{h}" + (" \\" if i < len(hashes) - 1 else ""))
    return "\n".join(lines) + "\n"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def install_requirements(lock_text: str, wheel: Path) -> str:
    """The requirements file an image installs: its lock plus the project's wheel by path and
    hash, so one ``pip install --require-hashes --no-deps`` installs everything by hash."""
    parse_lock(lock_text)  # refuse a malformed lock before pip does
    return (lock_text.rstrip("\n") + "\n"
            f"carbontrack @ {wheel.resolve().as_uri()} --hash=sha256:{sha256_file(wheel)}\n")


def installed(site_packages: Path) -> dict[str, str]:
    """normalised name -> version of every distribution in ``site_packages``."""
    out = {}
    for info in site_packages.glob("*.dist-info"):
        dist = PathDistribution(info)
        out[normalise(dist.metadata["Name"])] = dist.version
    return out


def unmet_requirements(site_packages: Path, extras: Mapping[str, Iterable[str]],
                       environment: Mapping[str, str]) -> list[str]:
    """What ``pip check`` would report for ``site_packages``: each installed distribution's
    Requires-Dist (with the extras asked of it, markers evaluated in ``environment``, e.g. the
    image's Python 3.11 on Linux) that no installed distribution satisfies. With --no-deps a
    dependency missing from the lock is not installed; this is how it is caught."""
    from packaging.requirements import Requirement

    have = installed(site_packages)
    problems = []
    for info in sorted(site_packages.glob("*.dist-info")):
        dist = PathDistribution(info)
        name = normalise(dist.metadata["Name"])
        for raw in dist.requires or []:
            req = Requirement(raw)
            wanted = ["", *extras.get(name, ())]
            if req.marker is not None and not any(
                    req.marker.evaluate({**environment, "extra": e}) for e in wanted):
                continue
            got = have.get(normalise(req.name))
            if got is None or (req.specifier and not req.specifier.contains(got, prereleases=True)):
                problems.append(f"{name} needs {raw.split(';')[0].strip()}, has "
                                f"{got or 'nothing'}")
    return problems
