#!/usr/bin/env python3
"""Build the CPU coefficient tables packaged in ``src/carbontrack/sources/data`` from the raw
reference data (``data/raw`` by default; see its PROVENANCE.md).

Outputs (all CSV, UTF-8, one header line):

* ``ccf_cpu_coefficients.csv`` — provider, architecture, min/max watts per vCPU, from
  cloud-carbon-footprint/ccf-coefficients ``coefficients-{aws,gcp,azure}-use.csv`` (Apache-2.0).
* ``cpu_model_architecture.csv`` — normalised CPU model line -> CCF architecture, from
  ``cpu_model_to_architecture_group.csv`` (ccf-coefficients ``data/*.csv``, Apache-2.0).
* ``cpu_tdp.csv`` — normalised CPU model -> TDP watts (+ cores where known), from
  green-algorithms ``TDP_cpu.csv`` (CC BY 4.0) and codecarbon ``hardware__cpu_power.csv`` (MIT).

``cpuid_architecture.csv`` and ``constants.json`` are written by hand (facts with their
sources in PROVENANCE.md) and are not touched here. Run:

    python scripts/build_source_data.py [--raw DIR] [--out DIR]

The output is deterministic (sorted rows), so a rebuild that changes nothing shows no diff.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RAW = REPO / "data" / "raw"
DEFAULT_OUT = REPO / "src" / "carbontrack" / "sources" / "data"

# ccf-coefficients groups model lists by file stem; these are the CCF architecture names
# the coefficients use. Neoverse N1 is the core of Graviton2 and Ampere Altra.
GROUP_TO_ARCH = {
    "amd-epyc-gen1": "EPYC 1st Gen",
    "amd-epyc-gen2": "EPYC 2nd Gen",
    "amd-epyc-gen3": "EPYC 3rd Gen",
    "amd-epyc-gen4": "EPYC 4th Gen",
    "amd-epyc-gen5": "EPYC 5th Gen",
    "amd-neoverse-n1": "Graviton2",
    "intel-broadwell": "Broadwell",
    "intel-cascadelake": "Cascade Lake",
    "intel-coffeelake": "Coffee Lake",
    "intel-emeraldrapids": "Emerald Rapids",
    "intel-graniterapids": "Granite Rapids",
    "intel-haswell": "Haswell",
    "intel-icelake": "Ice Lake",
    "intel-ivybridge": "Ivy Bridge",
    "intel-sandybridge": "Sandy Bridge",
    "intel-sapphirerapids": "Sapphire Rapids",
    "intel-skylake": "Skylake",
    "intel-skylake-client": "Skylake",
    "intel-skylake-server": "Skylake",
}

_NOISE = re.compile(
    r"\((?:r|tm|c)\)|®|™|\bintel\b|\bamd\b|\bxeon\b|\bcore\b|\bcpu\b|\bprocessor\b|"
    r"\b\d+-core\b|@.*$",
    re.IGNORECASE,
)


def normalise_model(text: str) -> str:
    """The same normalisation as ``carbontrack.sources.estimate.normalise_model`` (kept in step
    by a unit test): lower case, vendor/brand words and clock suffixes removed."""
    text = _NOISE.sub(" ", text.lower())
    return " ".join(text.replace(",", " ").split())


def _usable_key(key: str) -> bool:
    """A model key must name a part: old Xeons listed only by clock ("Xeon 1.4") would match
    any string containing that number, so they are dropped."""
    return bool(key) and re.fullmatch(r"\d*\.\d*", key) is None


def build_coefficients(raw: Path) -> list[list[str]]:
    rows = []
    for provider in ("aws", "gcp", "azure"):
        path = raw / "ccf-coefficients" / f"coefficients-{provider}-use.csv"
        with path.open(newline="") as fh:
            for rec in csv.DictReader(fh):
                rows.append(
                    [
                        provider,
                        rec["Architecture"].strip(),
                        f"{float(rec['Min Watts']):.6f}",
                        f"{float(rec['Max Watts']):.6f}",
                    ]
                )
    return sorted(rows)


def build_model_architecture(raw: Path) -> list[list[str]]:
    seen: dict[str, str] = {}
    path = raw / "ccf-coefficients" / "cpu_model_to_architecture_group.csv"
    with path.open(newline="") as fh:
        for rec in csv.DictReader(fh):
            arch = GROUP_TO_ARCH.get(rec["architecture_group_file"])
            # lines may carry vendor SKU notes after a comma or in brackets: keep the model
            line = re.sub(r"\[.*?\]", "", rec["cpu_model_line"]).split(",")[0]
            key = normalise_model(line)
            if arch is None or not _usable_key(key):
                continue
            # a model listed under two groups (skylake and skylake-server) maps to one arch
            seen.setdefault(key, arch)
    return sorted([k, v] for k, v in seen.items())


def build_tdp(raw: Path) -> list[list[str]]:
    out: dict[str, list[str]] = {}
    ga = raw / "green-algorithms" / "TDP_cpu.csv"
    with ga.open(newline="") as fh:
        next(fh)  # line 1 holds units, line 2 the column names
        for rec in csv.DictReader(fh):
            key = normalise_model(rec["model"])
            if not _usable_key(key) or key == "any" or not rec["TDP"]:
                continue
            out[key] = [key, f"{float(rec['TDP']):g}", rec["n_cores"].strip(), "green-algorithms"]
    cc = raw / "codecarbon" / "hardware__cpu_power.csv"
    with cc.open(newline="") as fh:
        for rec in csv.DictReader(fh):
            key = normalise_model(rec["Name"])
            if not _usable_key(key) or key in out:
                continue  # green-algorithms rows carry core counts: they win
            try:
                watts = float(rec["TDP"])
            except ValueError:
                continue  # a few scraped rows are garbled ("27.29.5"): no TDP is better
            out[key] = [key, f"{watts:g}", "", "codecarbon"]
    return sorted(out.values())


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, default=DEFAULT_RAW)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    if not (args.raw / "ccf-coefficients").is_dir():
        print(f"build_source_data: no ccf-coefficients under {args.raw}; pass --raw", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    coeff = build_coefficients(args.raw)
    write_csv(
        args.out / "ccf_cpu_coefficients.csv",
        ["provider", "architecture", "min_watts_per_vcpu", "max_watts_per_vcpu"],
        coeff,
    )
    arch = build_model_architecture(args.raw)
    write_csv(args.out / "cpu_model_architecture.csv", ["model", "architecture"], arch)
    tdp = build_tdp(args.raw)
    write_csv(args.out / "cpu_tdp.csv", ["model", "tdp_watts", "n_cores", "table"], tdp)
    print(f"coefficients {len(coeff)}, model->architecture {len(arch)}, tdp {len(tdp)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
