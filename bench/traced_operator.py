"""`carbontrack operator` under tracemalloc, for finding what holds its memory.

Run as `python3 bench/traced_operator.py OUT_FILE operator ARGS...` (bench_workloads.py
--profile does). Every 10 s it rewrites OUT_FILE with the traced current and peak sizes, the
30 largest allocation sites (file:line, with 3 frames of traceback recorded) and the live
objects by type from the garbage collector (objgraph's most_common_types, without objgraph).
tracemalloc slows the process and adds its own memory: the figures say where memory is, not
how much an untraced operator uses. TRACE_MALLOC=0 in the environment leaves tracemalloc off
and reports only the objects by type (count and own size), which costs little.
"""

from __future__ import annotations

import gc
import os
import runpy
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path


def report() -> str:
    lines = []
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        current, peak = tracemalloc.get_traced_memory()
        lines += [f"traced current {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB", "", "by line:"]
        lines += [f"  {s.size / 2**20:8.2f} MiB {s.count:9d}  {s.traceback[0]}" for s in snap.statistics("lineno")[:30]]
        lines += ["", "by traceback (3 frames):"]
        for s in snap.statistics("traceback")[:12]:
            lines.append(f"  {s.size / 2**20:8.2f} MiB {s.count:9d}")
            lines += [f"      {frame}" for frame in s.traceback]
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for o in gc.get_objects():  # containers only (gc tracks no str/int): their own sizes
        counts[type(o).__name__] += 1
        sizes[type(o).__name__] += sys.getsizeof(o)
    lines += ["", "live objects by type (gc): count, own size"]
    lines += [f"  {n:9d} {sizes[name] / 2**20:8.2f} MiB  {name}" for name, n in counts.most_common(30)]
    return "\n".join(lines) + "\n"


def main() -> None:
    out = Path(sys.argv[1])
    if os.environ.get("TRACE_MALLOC", "1") != "0":  # 0: object counts only (much faster)
        tracemalloc.start(3)

    def loop() -> None:
        while True:
            time.sleep(10)
            out.write_text(report())

    threading.Thread(target=loop, daemon=True).start()
    sys.argv = ["carbontrack", *sys.argv[2:]]
    runpy.run_module("carbontrack", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
