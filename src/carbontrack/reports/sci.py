"""SCI (Green Software Foundation, ISO/IEC 21031:2024): SCI = ((E x I) + M) per R.

E x I is the line's location-based operational emissions (the SCI excludes market-based
instruments). M is the Job's share of the embodied emissions of the hardware it reserved:

    M = TE x (TiR / EL) x (RR / ToR)

TE: total embodied emissions of the host server (Cloud Carbon Footprint coefficients,
packaged with provenance in ``data/``, or a server declared in the report config);
TiR: time reserved (the Job's window); EL: expected lifespan (4 years, CCF's default);
RR / ToR: resources reserved / total resources of the server, from the Job's CPU requests
(or GPUs, when the server's GPU count is known) against the platform's vCPUs (GPUs). A Job
spread over several nodes reserves several servers' worth: the share is not capped at one
server, only at the number of nodes it ran on (when recorded), since it cannot hold more
than all of each.
R: the functional unit, one Job unless the Job declares epochs/tokens via annotations; for
a slice of a long-running workload, the units its carbontrack.io/functional-unit-query counter
counted in the slice (the operator's count, recorded), and per workload ``sci_over`` its slices.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from carbontrack.core.errors import ConfigError

from .model import LineItem

HOURS_PER_YEAR = 8760.0
# CCF adds 150 kgCO2e per GPU to a platform's embodied total ("additional_gpus"), so the
# platform's GPU count is additional_gpus / 150: p2.16xlarge 2400 -> 16 K80s, g4dn.metal
# 1200 -> 8 T4s, Azure NC24 600 -> 4 K80s, as the providers document.
CCF_KG_PER_GPU = 150.0
CCF_SOURCE = "Cloud Carbon Footprint ccf-coefficients b0032d9 (2026-04-24), Apache-2.0"


@dataclass(frozen=True)
class Server:
    """Embodied footprint of one host server and how many resources it has."""

    total_kgco2e: float
    vcpus: float
    gpus: float
    source: str


@dataclass(frozen=True)
class EmbodiedSettings:
    lifespan_years: float = 4.0
    default_instance_type: str = ""  # used when a Job does not say which nodes it ran on
    servers: Mapping[str, Server] = field(default_factory=dict)  # own hardware, by name

    @staticmethod
    def from_dict(doc: Mapping[str, Any]) -> EmbodiedSettings:
        servers = {}
        for name, s in (doc.get("servers") or {}).items():
            try:
                servers[str(name)] = Server(
                    float(s["total_kgco2e"]), float(s["vcpus"]), float(s.get("gpus", 0)),
                    str(s["source"]),
                )
            except (KeyError, TypeError, ValueError):
                raise ConfigError(
                    f"embodied.servers.{name}: give total_kgco2e, vcpus, [gpus,] and source"
                ) from None
        life = float(doc.get("lifespan_years", 4.0))
        if life <= 0:
            raise ConfigError("embodied.lifespan_years must be > 0")
        return EmbodiedSettings(life, str(doc.get("default_instance_type", "")), servers)


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("carbontrack.reports").joinpath("data").joinpath(name).read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def load_ccf_servers() -> dict[str, Server]:
    """Instance type -> host server, from the packaged CCF files (see data/PROVENANCE.md)."""
    out: dict[str, Server] = {}
    # AWS: platform vCPUs = the largest instance of the same family (CCF's method).
    vcpu: dict[str, float] = {}
    family_max: dict[str, float] = defaultdict(float)
    for r in _rows("aws-instances-latest-2026.csv"):
        t, n = r["Instance Type"].strip(), float(r["vCPUs"] or 0)
        vcpu[t] = n
        fam = t.split(".")[0]
        family_max[fam] = max(family_max[fam], n)
    for r in _rows("coefficients-aws-embodied.csv"):
        t = r["type"].strip()
        fam = t.split(".")[0]
        if family_max.get(fam):
            gpus = float(r["additional_gpus"] or 0) / CCF_KG_PER_GPU
            out[f"aws:{t}"] = Server(float(r["total"]), family_max[fam], gpus, CCF_SOURCE + ", AWS")
    # Azure: the instances file states platform vCPUs and GPUs directly.
    az: dict[str, tuple[float, float]] = {}
    for r in _rows("azure-instances.csv"):
        try:
            az[r["Virtual Machine"].strip()] = (
                float(r["Platform vCPUs (highest vCPU possible)"]),
                float(r["Platform GPU"] or 0),
            )
        except ValueError:
            continue
    az_gpus: dict[str, float] = {}
    for r in _rows("coefficients-azure-embodied.csv"):
        try:
            az_gpus[r["type"].strip()] = float(r["additional_gpus"] or 0) / CCF_KG_PER_GPU
        except ValueError:
            continue
    az_total: dict[str, list[float]] = defaultdict(list)
    for r in _rows("coefficients-azure-embodied.csv"):
        az_total[r["type"].strip()].append(float(r["total"]))
    for t, totals in az_total.items():
        if t in az:
            te = sum(totals) / len(totals)  # mean over microarchitecture variants
            gpus = az[t][1] or az_gpus.get(t, 0.0)
            out[f"azure:{t}"] = Server(te, az[t][0], gpus, CCF_SOURCE + ", Azure (mean)")
    # GCP: platform vCPUs = the largest instance on the same platform.
    plat_of: dict[str, str] = {}
    plat_max: dict[str, float] = defaultdict(float)
    for r in _rows("gcp-instances-latest-2026.csv"):
        t, p = r["Instance Type"].strip(), r["Platform"].strip()
        plat_of[t] = p
        plat_max[p] = max(plat_max[p], float(r["Instance vCPU"] or 0))
    for r in _rows("coefficients-gcp-embodied-mean.csv"):
        t = r["type"].strip()
        if t in plat_of and plat_max[plat_of[t]]:
            out[f"gcp:{t}"] = Server(
                float(r["total_mean"]), plat_max[plat_of[t]], 0.0, CCF_SOURCE + ", GCP (mean)"
            )
    return out


class EmbodiedModel:
    """Computes M for a line. Catalogue injected (tests pass their own servers)."""

    def __init__(self, settings: EmbodiedSettings, catalogue: Mapping[str, Server] | None = None):
        self._settings = settings
        self._catalogue = dict(load_ccf_servers() if catalogue is None else catalogue)
        self._catalogue.update(settings.servers)

    def find(self, instance_type: str) -> tuple[str, Server] | None:
        if instance_type in self._catalogue:
            return instance_type, self._catalogue[instance_type]
        for provider in ("aws", "azure", "gcp"):
            key = f"{provider}:{instance_type}"
            if key in self._catalogue:
                return key, self._catalogue[key]
        return None

    def embodied(self, line: LineItem) -> tuple[float | None, str]:
        """(M in kgCO2e or None, the assumptions in one sentence)."""
        itype = line.instance_type or self._settings.default_instance_type
        if not itype:
            return None, "M not computed: the Job names no instance type and no default is configured"
        found = self.find(itype)
        if found is None:
            return None, f"M not computed: no embodied coefficient for instance type {itype!r}"
        key, srv = found
        if line.duration_h <= 0:
            return None, "M not computed: the Job has no time window"
        shares = []
        if line.cpu_cores_reserved > 0:
            shares.append(("vCPU", line.cpu_cores_reserved / srv.vcpus))
        if line.gpu_count > 0 and srv.gpus > 0:
            shares.append(("GPU", line.gpu_count / srv.gpus))
        if not shares:
            return None, (
                f"M not computed: the Job requests no CPU"
                f"{' and the server GPU count is unknown' if line.gpu_count else ''}, "
                "so its resource share of the server is unknown"
            )
        basis, share = max(shares, key=lambda s: s[1])
        capped = ""
        if line.node_count > 0 and share > line.node_count:
            share, capped = float(line.node_count), f", capped at its {line.node_count} nodes"
        time_share = line.duration_h / (self._settings.lifespan_years * HOURS_PER_YEAR)
        m = srv.total_kgco2e * time_share * share
        return m, (
            f"TE {srv.total_kgco2e:.6g} kgCO2e for {key} ({srv.source}); "
            f"time {line.duration_h:.4g} h of {self._settings.lifespan_years:g}-year lifespan; "
            f"resource share {share:.4g} servers by {basis} reserved{capped}"
        )

    def apply(self, line: LineItem) -> LineItem:
        m, why = self.embodied(line)
        return line.with_(embodied_kgco2e=m, embodied_assumptions=why, sci_g_per_unit=sci(line, m))


def sci(line: LineItem, m_kg: float | None) -> float | None:
    """gCO2e per functional unit; None when R is not positive."""
    if line.functional_units <= 0:
        return None
    return (line.location_kgco2e + (m_kg or 0.0)) * 1000.0 / line.functional_units


def sci_over(lines: Sequence[LineItem]) -> float | None:
    """SCI of several lines of one functional unit (a long-running workload's slices): their
    (O + M) over their summed R, in gCO2e per unit; M missing counts 0 as in ``sci``. None
    when R is not positive."""
    r = math.fsum(x.functional_units for x in lines)
    if r <= 0:
        return None
    return math.fsum(x.location_kgco2e + (x.embodied_kgco2e or 0.0) for x in lines) * 1000.0 / r
