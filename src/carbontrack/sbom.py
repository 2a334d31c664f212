"""A CycloneDX 1.5 software bill of materials of a Python environment, from its metadata.

The images write one at build time (``/opt/carbontrack/sbom.cdx.json``): every distribution
installed in the image's environment, with version, PyPI package URL, declared licence and
the SHA-256 of its installed-files record. Built from ``*.dist-info`` directories with the
standard library only, so it runs in the image's build stage without extra tools. The output
is deterministic (no timestamp, serial number derived from the content), so an image rebuilt
from the same inputs is the same image.

    python -m carbontrack.sbom SITE_PACKAGES [--name NAME] [--version VERSION] > sbom.cdx.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import uuid
from email.parser import HeaderParser
from importlib.metadata import PathDistribution
from pathlib import Path
from typing import Any


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503, as purls for PyPI spell names


def _licence(meta: Any) -> list[dict[str, Any]]:
    expression = meta.get("License-Expression")
    if expression:
        return [{"expression": expression}]
    text = (meta.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 100:
        return [{"license": {"name": text}}]
    classifiers = [c.rsplit("::", 1)[-1].strip() for c in meta.get_all("Classifier") or []
                   if c.startswith("License ::")]
    return [{"license": {"name": c}} for c in sorted(set(classifiers))]


def components(site_packages: Path) -> list[dict[str, Any]]:
    """One CycloneDX component per ``*.dist-info`` in ``site_packages``, sorted by name."""
    out = []
    for info in sorted(site_packages.glob("*.dist-info")):
        text = (info / "METADATA").read_text(encoding="utf-8", errors="replace") \
            if (info / "METADATA").is_file() else ""
        meta = HeaderParser().parsestr(text)
        name, version = meta.get("Name"), meta.get("Version")
        if not name or not version:
            dist = PathDistribution(info)
            name, version = name or dist.name, version or dist.version
        comp: dict[str, Any] = {
            "type": "library",
            "bom-ref": f"pkg:pypi/{_normalise(name)}@{version}",
            "name": name,
            "version": version,
            "purl": f"pkg:pypi/{_normalise(name)}@{version}",
        }
        licences = _licence(meta)
        if licences:
            comp["licenses"] = licences
        record = info / "RECORD"
        if record.is_file():
            comp["hashes"] = [{"alg": "SHA-256", "content": hashlib.sha256(record.read_bytes()).hexdigest()}]
        out.append(comp)
    unique = {c["bom-ref"]: c for c in sorted(out, key=lambda c: c["bom-ref"], reverse=True)}
    return sorted(unique.values(), key=lambda c: (_normalise(c["name"]), c["version"]))


def bom(site_packages: Path, name: str, version: str) -> dict[str, Any]:
    comps = components(site_packages)
    digest = hashlib.sha256(json.dumps([name, version, comps], sort_keys=True).encode()).digest()
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.UUID(bytes=digest[:16], version=5)}",
        "version": 1,
        "metadata": {
            "component": {"type": "container", "bom-ref": name, "name": name, "version": version},
            "tools": {"components": [{"type": "application", "name": "carbontrack.sbom"}]},
        },
        "components": comps,
        "dependencies": [{"ref": name, "dependsOn": [c["bom-ref"] for c in comps]}],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m carbontrack.sbom", description=__doc__.splitlines()[0])
    p.add_argument("site_packages", type=Path)
    p.add_argument("--name", default="carbontrack")
    p.add_argument("--version", default="")
    args = p.parse_args(argv)
    if not args.site_packages.is_dir():
        p.error(f"{args.site_packages} is not a directory")
    json.dump(bom(args.site_packages, args.name, args.version), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
