"""Run every benchmark in bench/ and rebuild docs/performance.md from their figure files.

Each bench script writes its own page under docs/performance/; this script runs them in
turn (so one command refreshes every figure) and writes the index page with the machine
description. Run: `make bench` or `python3 bench/run_all.py [NAME ...]`.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
PAGES = REPO / "docs" / "performance"


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, {mem_gib:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def main(argv: list[str]) -> int:
    scripts = sorted(BENCH.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(name in s.stem for name in argv)]
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)], cwd=REPO).returncode != 0:
            failed.append(script.name)
    write_index()
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def write_index() -> None:
    pages = sorted(PAGES.glob("*.md"))
    lines = [
        "# Performance",
        "",
        "Figures come from the scripts in `bench/` (`make bench` reruns them all); each page",
        "states its own workload, repetitions, medians and spreads. Tests never assert on time.",
        "A page is written whole by its script; figures measured by hand sit in the page's",
        "dated `## Notes` section, each with the command that produced it",
        "(tests/unit/test_bench_pages.py checks every page against its script).",
        "",
        f"Index last rebuilt on: {machine_description()}.",
        "",
    ]
    lines += [f"- [{p.stem}](performance/{p.name})" for p in pages]
    (REPO / "docs" / "performance.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
