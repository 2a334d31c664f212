#!/usr/bin/env python3
"""Write the images' hash-locked requirements (docker/requirements-<image>.lock) with pip alone.

    python scripts/lock.py                 # exporter, operator and build locks
    python scripts/lock.py operator-mlflow=operator,mlflow   # another image's lock (its extras)
    python scripts/lock.py --check         # exit 1 if a lock differs from what would be written

For each image: build the project's wheel, ``pip download`` ``carbontrack[<extras>]`` with
its dependencies as wheels for the image (CPython 3.11, bookworm's glibc; x86_64 and aarch64),
and record name, version and the SHA-256 of every downloaded file (the project's own wheel is
hashed at build time instead: carbontrack.devcluster.locks.install_requirements). The build
lock pins what the Dockerfiles' build stage needs to build that wheel without build isolation.
Resolution picks the newest versions the pyproject.toml bounds allow: re-run it to update.
Needs network access to the package index (pip's configuration applies).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from carbontrack.devcluster.imagebuild import SPECS  # noqa: E402
from carbontrack.devcluster.locks import (  # noqa: E402
    ARCHES,
    Locked,
    format_lock,
    lock_path,
    normalise,
    sha256_file,
    target_args,
)

IMAGES = {name: spec.extras for name, spec in SPECS.items()}  # the images' own extras
BUILD = ("setuptools>=68", "wheel")  # pyproject.toml [build-system] requires
HEADER = ("{title}: every third-party distribution it installs, pinned with the SHA-256\n"
          "of each wheel (CPython 3.11, manylinux <= glibc 2.36, {arches}).\n"
          "Written by scripts/lock.py from {what}; do not edit by hand.\n"
          "Installed with: pip install --require-hashes --no-deps -r <this file>")


def _pip(*args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"pip {' '.join(args[:2])} failed:\n{r.stderr[-2000:]}")


def _wheel_name_version(path: Path) -> tuple[str, str]:
    name, version = path.name.split("-")[:2]
    return normalise(name), version


def resolve(requirements: list[str], work: Path) -> list[Locked]:
    """Download ``requirements`` with their dependencies for each architecture; one entry
    per distribution with the hashes of all its downloaded files."""
    found: dict[str, tuple[str, set[str]]] = {}
    for arch in ARCHES:
        dest = work / arch
        _pip("download", "-q", "-d", str(dest), *target_args(arch), *requirements)
        for f in sorted(dest.glob("*.whl")):
            name, version = _wheel_name_version(f)
            if name == "carbontrack":
                continue
            prev = found.setdefault(name, (version, set()))
            if prev[0] != version:
                sys.exit(f"{name} resolves to {prev[0]} on one architecture and {version} on "
                         f"{arch}: pin it in pyproject.toml")
            prev[1].add(sha256_file(f))
    return [Locked(n, v, tuple(sorted(h))) for n, (v, h) in sorted(found.items())]


def locks(images: dict[str, str]) -> dict[Path, str]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        _pip("wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(t / "dist"), str(REPO))
        wheel = next((t / "dist").glob("carbontrack-*.whl"))
        for image, extras in images.items():
            locked = resolve([f"{wheel}[{extras}]"], t / image)
            header = HEADER.format(title=f"{image} image", arches=", ".join(ARCHES),
                                   what=f"carbontrack[{extras}]'s requirements")
            out[lock_path(REPO, image)] = format_lock(locked, header)
        locked = resolve(list(BUILD), t / "build")
        header = HEADER.format(title="the Dockerfiles' build stage", arches="pure Python",
                               what="pyproject.toml [build-system] requires")
        out[lock_path(REPO, "build")] = format_lock(locked, header)
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="*", metavar="IMAGE=EXTRAS",
                   help="images to lock (default: exporter=exporter operator=operator)")
    p.add_argument("--check", action="store_true", help="compare, do not write")
    a = p.parse_args(argv)
    images = dict(x.split("=", 1) for x in a.images) if a.images else IMAGES
    stale = []
    for path, text in locks(images).items():
        if a.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.relative_to(REPO).as_posix())
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
    if stale:
        print(f"out of date (run python scripts/lock.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
