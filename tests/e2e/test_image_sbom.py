"""The images ship a bill of materials: the exporter image is built Docker-free
(carbontrack.devcluster.imagebuild, the real node's image) and its /opt/carbontrack/sbom.cdx.json
lists exactly the distributions installed in the image, with their versions; those are exactly
the hash-locked requirements (docker/requirements-exporter.lock) and the project's wheel, and
every installed distribution's requirements are met (nothing the lock misses is needed)."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from carbontrack.devcluster.binaries import cache_dir
from carbontrack.devcluster.imagebuild import EXPORTER, PYTHON_MINOR, SBOM_NAME, VENV, ImageBuilder
from carbontrack.devcluster.locks import lock_path, parse_lock, unmet_requirements

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_exporter_image_sbom_lists_every_installed_distribution(tmp_path: Path) -> None:
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap missing (scripts/setup.sh installs it)")
    # the shared base layer (built once, ~170 MB), the app image in a private cache: building
    # into the shared one would prune an exporter image another run may be importing
    base = ImageBuilder(cache_dir() / "images", tmp_path / "build.log").base_layer()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / base.name).symlink_to(base)
    image = ImageBuilder(tmp_path / "images", tmp_path / "build.log").app(EXPORTER, REPO)
    with tarfile.open(image.archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        app_layer = outer.extractfile(manifest[0]["Layers"][-1])
        assert app_layer is not None
        with tarfile.open(fileobj=app_layer) as layer:
            names = layer.getnames()
            member = layer.extractfile(f"{VENV.lstrip('/')}/{SBOM_NAME}")
            assert member is not None
            doc = json.load(member)
            site = tmp_path / "site"  # the installed distributions' metadata, read back below
            layer.extractall(site, members=[m for m in layer.getmembers()
                                            if re.search(r"\.dist-info/(METADATA|RECORD)$", m.name)],
                             filter="data")
    installed = set()
    for n in names:
        if n.endswith(".dist-info"):
            name, version = Path(n).name.removesuffix(".dist-info").rsplit("-", 1)
            installed.add((_norm(name), version))
    listed = {(_norm(c["name"]), c["version"]) for c in doc["components"]}
    assert listed == installed
    assert {"carbontrack", "prometheus-client", "grpcio", "protobuf", "psutil"} <= {n for n, _ in listed}
    assert doc["bomFormat"] == "CycloneDX" and doc["metadata"]["component"]["name"] == "carbontrack-exporter"
    # installed from the lock: exactly its distributions and versions, plus the project
    import carbontrack

    locked = {(n, item.version) for n, item in parse_lock(lock_path(REPO, "exporter").read_text()).items()}
    assert listed == locked | {("carbontrack", carbontrack.__version__)}
    # with --no-deps nothing resolves dependencies at install time: check them now, for the
    # image's Python on Linux, the exporter extra asked of carbontrack
    (pkgs,) = list(site.glob(f"**/lib/python{PYTHON_MINOR}/site-packages"))
    env = {"python_version": PYTHON_MINOR, "python_full_version": f"{PYTHON_MINOR}.2",
           "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
           "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython"}
    assert unmet_requirements(pkgs, {"carbontrack": ["exporter"]}, env) == []
