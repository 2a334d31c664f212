"""The images' bill of materials (carbontrack.sbom): every installed distribution listed,
with its version, package URL, licence and record hash; deterministic; valid CycloneDX shape."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from importlib.metadata import distributions
from pathlib import Path

import pytest

from carbontrack.sbom import bom, components


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _site_packages() -> Path:
    return Path(pytest.__file__).parents[1]  # where this environment's packages are


def test_every_installed_distribution_is_listed_with_its_version() -> None:
    sp = _site_packages()
    installed = {(_norm(d.metadata["Name"]), d.version) for d in distributions(path=[str(sp)])}
    listed = {(_norm(c["name"]), c["version"]) for c in components(sp)}
    assert len(installed) > 20  # this environment: pytest, hypothesis, kubernetes, ...
    assert listed == installed
    assert {"pytest", "hypothesis", "psutil"} <= {n for n, _ in listed}


def test_components_carry_purl_licence_and_record_hash() -> None:
    sp = _site_packages()
    by_name = {_norm(c["name"]): c for c in components(sp)}
    psutil = by_name["psutil"]
    info = next(sp.glob(f"psutil-{psutil['version']}.dist-info"))
    assert psutil["purl"] == f"pkg:pypi/psutil@{psutil['version']}" == psutil["bom-ref"]
    record_hash = hashlib.sha256((info / "RECORD").read_bytes()).hexdigest()
    assert psutil["hashes"] == [{"alg": "SHA-256", "content": record_hash}]
    assert psutil["licenses"]  # BSD-3-Clause, however psutil's metadata spells it


def test_a_dist_info_by_hand(tmp_path: Path) -> None:
    info = tmp_path / "Foo_Bar-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.4\nName: Foo_Bar\nVersion: 1.2\n"
                                   "License-Expression: MIT OR Apache-2.0\n")
    (info / "RECORD").write_text("foo_bar/__init__.py,,\n")
    other = tmp_path / "plain-0.1.dist-info"
    other.mkdir()
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: plain\nVersion: 0.1\n"
                                    "Classifier: License :: OSI Approved :: MIT License\n")
    doc = bom(tmp_path, "carbontrack-exporter", "0.1.0")
    assert [c["purl"] for c in doc["components"]] == ["pkg:pypi/foo-bar@1.2", "pkg:pypi/plain@0.1"]
    assert doc["components"][0]["licenses"] == [{"expression": "MIT OR Apache-2.0"}]
    assert doc["components"][1]["licenses"] == [{"license": {"name": "MIT License"}}]
    assert "hashes" not in doc["components"][1]  # no RECORD: nothing to hash
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.5"
    assert doc["metadata"]["component"] == {"type": "container", "bom-ref": "carbontrack-exporter",
                                            "name": "carbontrack-exporter", "version": "0.1.0"}
    assert doc["dependencies"] == [{"ref": "carbontrack-exporter",
                                    "dependsOn": ["pkg:pypi/foo-bar@1.2", "pkg:pypi/plain@0.1"]}]
    assert re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", doc["serialNumber"])
    assert bom(tmp_path, "carbontrack-exporter", "0.1.0") == doc  # deterministic: same inputs, same file
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: plain\nVersion: 0.2\n")
    assert bom(tmp_path, "carbontrack-exporter", "0.1.0")["serialNumber"] != doc["serialNumber"]


def test_the_command_line_the_dockerfiles_run(tmp_path: Path) -> None:
    info = tmp_path / "x-1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Name: x\nVersion: 1\n")
    out = subprocess.run([sys.executable, "-m", "carbontrack.sbom", str(tmp_path), "--name", "carbontrack-operator",
                          "--version", "9"], capture_output=True, text=True, check=True).stdout
    doc = json.loads(out)
    assert [c["name"] for c in doc["components"]] == ["x"]
    assert doc["metadata"]["component"]["name"] == "carbontrack-operator"
    for dockerfile in Path(__file__).parents[2].glob("docker/*.Dockerfile"):
        text = dockerfile.read_text()
        assert "-m carbontrack.sbom /opt/carbontrack/lib/python3.11/site-packages" in text
        assert "> /opt/carbontrack/sbom.cdx.json" in text
