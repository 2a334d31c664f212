"""Host facts for the CSV/JSON (CodeCarbon's os, python_version, cpu_model, ram_total_size...)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..core.errors import SourceUnavailable
from ..sources.procstat import read_cpuinfo, read_memtotal_bytes
from .result import DeviceEnergy


def host_facts(procfs_root: Path, devices: tuple[DeviceEnergy, ...]) -> dict[str, Any]:
    gpus = sorted({d.device for d in devices if d.component == "gpu"})
    models = sorted({d.model for d in devices if d.component == "gpu" and d.model})
    try:
        ram_gb: float | str = read_memtotal_bytes(procfs_root) / 1e9  # CodeCarbon's unit is GB
    except SourceUnavailable:
        ram_gb = ""
    u = os.uname()
    return {
        "hostname": u.nodename,
        # not platform.platform(): it scans the interpreter binary for the libc version
        "os": f"{u.sysname}-{u.release}-{u.machine}",
        "python_version": "{}.{}.{}".format(*sys.version_info[:3]),
        "cpu_count": os.cpu_count() or "",
        "cpu_model": read_cpuinfo(procfs_root).model_name,
        "ram_total_size_gb": ram_gb,
        "gpu_count": len(gpus),
        "gpu_model": ", ".join(models),
    }
