#!/usr/bin/env python3
"""Catalogue load and lookup timings; writes docs/performance/catalogue.md.

    python bench/bench_catalogue.py [--out docs/performance/catalogue.md] [--repeat N]

Load is measured in fresh interpreters (what `carbontrack intensity` pays) and
in-process; lookups per key kind with timeit, warm (entry cached) and cold (a new
Catalogue per lookup batch). Figures are medians on the machine named in the file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import timeit
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import json, time
t0 = time.perf_counter()
from carbontrack.intensity.catalogue import Catalogue
t1 = time.perf_counter()
c = Catalogue.load()
t2 = time.perf_counter()
c.get("DE")
t3 = time.perf_counter()
c.get("94103")
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "first_get": t3 - t2, "first_zip": t4 - t3}))
"""

KEYS = {
    "zone key (DE)": "DE",
    "sub-national zone (US-CAL-CISO)": "US-CAL-CISO",
    "ISO alpha-3 (DEU)": "DEU",
    "eGRID subregion (CAMX)": "CAMX",
    "US ZIP (94103)": "94103",
    "provider:region (aws:eu-west-1)": "aws:eu-west-1",
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs/performance/catalogue.md")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cold = [json.loads(subprocess.run([sys.executable, "-c", CHILD], env=env, check=True,
                                      capture_output=True, text=True).stdout)
            for _ in range(args.repeat)]

    sys.path.insert(0, str(REPO / "src"))
    from carbontrack.intensity.catalogue import Catalogue

    loads = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        Catalogue.load()
        loads.append(time.perf_counter() - t0)
    cat = Catalogue.load()
    cat.get("94103")  # pay the lazy ZIP table once
    n = 20000

    def per_lookup(key: str) -> float:
        return min(timeit.repeat(lambda: cat.get(key), number=n, repeat=5)) / n

    warm = {label: per_lookup(key) for label, key in KEYS.items()}
    zones = [z.key for z in cat.zones()]
    t0 = time.perf_counter()
    fresh = Catalogue.load()
    for key in zones:
        fresh.get(key)
    first_all = (time.perf_counter() - t0) / len(zones)

    def med(key: str) -> float:
        return float(statistics.median(run[key] for run in cold)) * 1e3

    lines = [
        "# Catalogue performance",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `bench/bench_catalogue.py` "
        f"on {cpu_model()} ({os.cpu_count()} CPUs, shared with other jobs), Python "
        f"{platform.python_version()}, catalogue {cat.version} ({len(zones)} zones, "
        f"{len(cat.cloud_regions())} cloud regions). Medians of {args.repeat} runs.",
        "",
        "Budget (issue 3): load under 50 ms, lookups in microseconds.",
        "",
        "## Load",
        "",
        "| what | ms |",
        "|---|---:|",
        f"| `Catalogue.load()` in a fresh interpreter | {med('load'):.2f} |",
        f"| `Catalogue.load()` in-process (file cache warm) | {statistics.median(loads) * 1e3:.2f} |",
        f"| import `carbontrack.intensity.catalogue` in a fresh interpreter | {med('import'):.2f} |",
        f"| first `get('DE')` after load (builds the entry) | {med('first_get'):.3f} |",
        f"| first ZIP lookup (reads the 41,588-row ZIP table, lazily) | {med('first_zip'):.2f} |",
        "",
        "The ZIP table is loaded on the first ZIP lookup only, so `load()` stays small.",
        "",
        "## Lookups (`Catalogue.get`)",
        "",
        "| key kind | µs per lookup (warm) |",
        "|---|---:|",
        *[f"| {label} | {sec * 1e6:.2f} |" for label, sec in warm.items()],
        f"| every zone once on a fresh catalogue (cold, builds entries) | {first_all * 1e6:.2f} |",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
