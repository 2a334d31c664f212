"""The images ship a bill of materials: the exporter image is built Docker-free
(carbontrack.devcluster.imagebuild, the real node's image) and its /opt/carbontrack/sbom.cdx.json
lists exactly the distributions installed in the image, with their versions."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from carbontrack.devcluster.binaries import cache_dir
from carbontrack.devcluster.imagebuild import EXPORTER, SBOM_NAME, VENV, ImageBuilder

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
    installed = set()
    for n in names:
        if n.endswith(".dist-info"):
            name, version = Path(n).name.removesuffix(".dist-info").rsplit("-", 1)
            installed.add((_norm(name), version))
    listed = {(_norm(c["name"]), c["version"]) for c in doc["components"]}
    assert listed == installed
    assert {"carbontrack", "prometheus-client", "grpcio", "protobuf", "psutil"} <= {n for n, _ in listed}
    assert doc["bomFormat"] == "CycloneDX" and doc["metadata"]["component"]["name"] == "carbontrack-exporter"
