"""Hash-locked image requirements (carbontrack.devcluster.locks, docker/requirements-*.lock):
the checked-in locks are well formed and are what the image builders install; pip itself
installs a locked wheel and refuses it once its hash in the lock is changed by one digit;
the dependency check catches a lock that misses a requirement."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from carbontrack.core.errors import ConfigError
from carbontrack.devcluster.imagebuild import SPECS
from carbontrack.devcluster.locks import (
    Locked,
    format_lock,
    install_requirements,
    lock_path,
    parse_lock,
    sha256_file,
    unmet_requirements,
)

REPO = Path(__file__).resolve().parents[2]
PY311_LINUX = {"python_version": "3.11", "python_full_version": "3.11.2", "sys_platform": "linux",
               "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64",
               "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def make_wheel(directory: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal valid wheel (PEP 427) with one module, written by hand: no index needed."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": b"VALUE = 42\n",
        f"{info}/METADATA": ("Metadata-Version: 2.1\n"
                             f"Name: {name}\nVersion: {version}\n"
                             + "".join(f"Requires-Dist: {r}\n" for r in requires)).encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return out


def pip_install(reqs: Path, target: Path, links: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(links),
         "--require-hashes", "--no-deps", "--no-compile", "--disable-pip-version-check",
         "--target", str(target), "-r", str(reqs)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("image", [*sorted(SPECS), "build"])
def test_checked_in_locks_pin_and_hash_every_distribution(image: str) -> None:
    text = lock_path(REPO, image).read_text()
    locked = parse_lock(text, image)
    assert locked and "carbontrack" not in locked  # the project's wheel is hashed at build time
    for item in locked.values():
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in item.hashes)
        # one wheel per architecture at most (x86_64, aarch64): no stray files allowed in
        assert 1 <= len(item.hashes) <= 2, item
    assert format_lock(locked.values(), "\n".join(
        ln[2:] for ln in text.splitlines() if ln.startswith("#"))) == text  # canonical form


@pytest.mark.parametrize("image", ["exporter", "operator"])
def test_each_image_lock_satisfies_pyproject(image: str) -> None:
    """Every direct requirement of the image (pyproject.toml: the core's and the image's
    extra, markers for the image's Python 3.11 on Linux) is locked at a version it allows:
    a dependency added to pyproject.toml without regenerating the lock (scripts/lock.py)
    fails here rather than as a missing module in the built image."""
    import tomllib
    from packaging.requirements import Requirement

    from carbontrack.devcluster.locks import normalise

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"][image]]]
    wanted = [r for r in wanted if r.marker is None or r.marker.evaluate({**PY311_LINUX, "extra": ""})]
    locked = parse_lock(lock_path(REPO, image).read_text())
    assert len(wanted) >= 5
    for req in wanted:
        pin = locked.get(normalise(req.name))
        assert pin is not None, f"{req} is not in docker/requirements-{image}.lock"
        assert req.specifier.contains(pin.version, prereleases=True), (str(req), pin.version)


def test_pip_installs_the_locked_wheel_and_refuses_a_tampered_hash(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    dep = make_wheel(wheels, "lockdemo", "1.0")
    app = make_wheel(tmp_path, "carbontrack", "0.0.1", ("lockdemo==1.0",))
    lock = format_lock([Locked("lockdemo", "1.0", (sha256_file(dep),))], "test lock")
    reqs = tmp_path / "ok.txt"
    reqs.write_text(install_requirements(lock, app))
    r = pip_install(reqs, tmp_path / "ok", wheels)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ok" / "lockdemo.py").read_text() == "VALUE = 42\n"
    assert (tmp_path / "ok" / "carbontrack.py").is_file()
    assert unmet_requirements(tmp_path / "ok", {}, PY311_LINUX) == []

    good = sha256_file(dep)
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    tampered = tmp_path / "tampered.txt"
    tampered.write_text(reqs.read_text().replace(good, bad))
    r = pip_install(tampered, tmp_path / "bad", wheels)
    assert r.returncode != 0
    assert "DO NOT MATCH THE HASHES" in r.stderr and bad in r.stderr and good in r.stderr
    assert not (tmp_path / "bad" / "lockdemo.py").exists()
    # the project's own wheel is checked too: a changed file after the lock was written
    app.write_bytes(app.read_bytes() + b"\0")
    r = pip_install(reqs, tmp_path / "bad2", wheels)
    assert r.returncode != 0 and "DO NOT MATCH THE HASHES" in r.stderr


def test_a_lock_line_without_a_hash_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=re.escape("line 2: 'psutil==7.2.2' is not")):
        parse_lock("# x\npsutil==7.2.2\n", "lock")
    with pytest.raises(ConfigError, match="pinned twice"):
        parse_lock(f"a==1 --hash=sha256:{'0' * 64}\nA==2 --hash=sha256:{'1' * 64}\n")
    with pytest.raises(ConfigError, match="is not"):
        parse_lock(f"a>=1 --hash=sha256:{'0' * 64}\n")


def test_a_missing_or_wrong_dependency_is_reported(tmp_path: Path) -> None:
    site = tmp_path / "site"
    for whl in (make_wheel(tmp_path, "app", "1", ("dep>=2", "win; sys_platform == 'win32'",
                                                    "extra-dep; extra == 'x'", "old<1")),
                make_wheel(tmp_path, "dep", "1.5"), make_wheel(tmp_path, "old", "1.0")):
        with zipfile.ZipFile(whl) as z:
            z.extractall(site)
    assert unmet_requirements(site, {}, PY311_LINUX) == [
        "app needs dep>=2, has 1.5", "app needs old<1, has 1.0"]
    assert "app needs extra-dep, has nothing" in unmet_requirements(site, {"app": ["x"]}, PY311_LINUX)
