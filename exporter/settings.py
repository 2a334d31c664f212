"""Exporter settings: one dataclass, units in the names, built from the command line.

Errors are ``ConfigError`` (permanent: a restart with the same flags fails the same way), one
sentence naming the flag and the fix.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from carbontrack.core import contract, scrapeauth
from carbontrack.core.errors import ConfigError
from carbontrack.core.scrapeauth import ScrapeSecurity
from carbontrack.intensity.selection import IntensityConfig, add_arguments, config_from_args
from carbontrack.sources import registry

from .attribution import IdlePolicy

DEFAULT_PORT = 9847
DEFAULT_POD_RESOURCES = Path("/var/lib/kubelet/pod-resources")


@dataclass(frozen=True)
class Settings:
    node_name: str
    sysfs: Path = Path("/sys")  # powercap under class/powercap, cgroups under fs/cgroup
    procfs: Path = Path("/proc")  # stat, meminfo, <pid>/cgroup, <pid>/cmdline
    interval_s: float = 5.0  # seconds between collection cycles
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    state_dir: Path = Path("/var/lib/carbontrack")  # durable counters (ledger.json)
    kube: bool = True  # False: no API server; pods identified by UID only
    kubeconfig: Path | None = None  # None: in-cluster config
    zone: str | None = None  # grid zone key for the catalogue (DE, US-CAL-CISO, eGRID, ZIP)
    pue: float | None = None  # facility overhead; None: provider default, else 1.0
    provider: str | None = None  # cloud provider (aws, gcp, azure) with region
    region: str | None = None
    default_zone: str | None = None  # the cluster default, after node label and cloud region
    # provider, base URL, overrides... (carbontrack.intensity.selection; flags or env)
    intensity: IntensityConfig = field(default_factory=IntensityConfig)
    # registry names of the energy sources switched on (carbontrack.sources.registry; each
    # source's --<flag>/--no-<flag>): RAPL, NVML and the estimates by default, amdsmi on ask
    sources: frozenset[str] = registry.DEFAULT_ENABLED
    pod_resources_dir: Path | None = None  # kubelet pod-resources socket directory
    idle_policy: IdlePolicy = IdlePolicy.RESERVED
    # how a v2 cpu.weight is read back into a request when the pod spec is missing:
    # auto (learned from pods with API requests), linear or quadratic (exporter/cpu_weight.py)
    cpu_weight_map: str = "auto"
    retention_s: float = 600.0  # how long a finished container's series stay exported
    log_level: str = "INFO"
    # TLS, client certificates and a bearer token for /metrics (core/scrapeauth.py)
    scrape_security: ScrapeSecurity = field(default_factory=ScrapeSecurity)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
        raise ConfigError(f"--listen {value!r}: expected HOST:PORT, e.g. 0.0.0.0:{DEFAULT_PORT}")
    return host.strip("[]") or "0.0.0.0", int(port)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="carbontrack exporter",
                                description="Per-container energy and CO2e as Prometheus metrics.")
    p.add_argument("--node-name", required=True, help="this node's name (the node label)")
    p.add_argument("--sysfs", type=Path, default=Path("/sys"))
    p.add_argument("--procfs", type=Path, default=Path("/proc"))
    p.add_argument("--interval", type=float, default=5.0, help="seconds between cycles")
    p.add_argument("--listen", default=f"0.0.0.0:{DEFAULT_PORT}", help="HOST:PORT to serve")
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/carbontrack"))
    p.add_argument("--no-kube", action="store_true", help="no Kubernetes API: UID-only pods")
    p.add_argument("--kubeconfig", type=Path, default=None)
    p.add_argument("--zone", default=None, help="grid zone key (see `carbontrack zones`)")
    p.add_argument("--pue", type=float, default=None)
    p.add_argument("--provider", default=None)
    p.add_argument("--region", default=None)
    p.add_argument("--default-zone", default=None,
                   help="cluster default grid zone, used when neither --zone nor the node's "
                        f"{contract.GRID_ZONE} label nor its cloud region resolves")
    for flag, (default, text) in registry.flags().items():  # --rapl/--no-rapl, ...
        p.add_argument(f"--{flag}", dest=_source_dest(flag), default=default,
                       action=argparse.BooleanOptionalAction,
                       help=f"{text} (default: {'on' if default else 'off'})")
    p.add_argument("--pod-resources-dir", type=Path, default=None)
    p.add_argument("--idle-policy", choices=[x.value for x in IdlePolicy],
                   default=IdlePolicy.RESERVED.value,
                   help="idle energy: by requests (reserved), equally (even), or not at all")
    p.add_argument("--cpu-weight-map", choices=["auto", "linear", "quadratic"], default="auto",
                   help="runtime's CPU shares -> cgroup v2 cpu.weight map, used to read a "
                        "request back only when the pod spec is unavailable: quadratic "
                        "(runc>=1.3.2, crun>=1.23), linear (older), auto (learned from pods "
                        "whose requests the API gives; quadratic until then)")
    p.add_argument("--retention", type=float, default=600.0,
                   help="seconds a finished container's series stay exported")
    p.add_argument("--log-level", default="INFO")
    add_arguments(p)
    scrapeauth.add_arguments(p)
    return p


def _source_dest(flag: str) -> str:
    return "source_" + flag.replace("-", "_")


def from_args(argv: list[str]) -> Settings:
    a = parser().parse_args(argv)
    host, port = _listen(a.listen)
    if not a.interval > 0:
        raise ConfigError(f"--interval {a.interval}: must be a positive number of seconds")
    if not a.retention >= 0:
        raise ConfigError(f"--retention {a.retention}: must be >= 0 seconds")
    if bool(a.provider) != bool(a.region):
        raise ConfigError("--provider and --region go together: pass both, or use --zone")
    if not a.node_name.strip():
        raise ConfigError("--node-name is empty: pass the node's name (the downward API's "
                          "spec.nodeName)")
    return Settings(
        node_name=a.node_name, sysfs=a.sysfs, procfs=a.procfs, interval_s=a.interval,
        host=host, port=port, state_dir=a.state_dir, kube=not a.no_kube,
        kubeconfig=a.kubeconfig, zone=a.zone, pue=a.pue, provider=a.provider, region=a.region,
        default_zone=a.default_zone, intensity=config_from_args(a, os.environ),
        sources=registry.enabled_by_flags(
            {flag: getattr(a, _source_dest(flag)) for flag in registry.flags()}),
        pod_resources_dir=a.pod_resources_dir, idle_policy=IdlePolicy(a.idle_policy),
        cpu_weight_map=a.cpu_weight_map,
        retention_s=a.retention, log_level=a.log_level.upper(),
        scrape_security=scrapeauth.from_args(a),
    )
