"""Prometheus exposition of the engine's latest Snapshot (a client_python custom Collector).

``collect()`` only reads an immutable snapshot (cheap, lock-free); nothing is computed per
scrape. Metric names and labels are the contract in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from carbontrack import __version__

from .engine import Snapshot

CONTAINER_LABELS = ["node", "namespace", "pod", "pod_uid", "container", "component", "method",
                    "owner_kind", "owner_name", "owner_uid"]


class ExporterCollector(Collector):
    """Yields the exporter's metric families from ``snapshot()`` (injected: the engine's)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | InfoMetricFamily]:
        s = self._snapshot()
        node = s.node_name

        f = CounterMetricFamily(
            "carbontrack_node_energy_joules",
            "Energy drawn by the node per component and device since first seen (joules).",
            labels=["node", "component", "device", "method"],
        )
        for (comp, dev, meth), j in s.node:
            f.add_metric([node, comp, dev, meth], j)
        yield f

        energy = CounterMetricFamily(
            "carbontrack_container_energy_joules",
            "Node energy attributed to a container, per component (joules).",
            labels=CONTAINER_LABELS,
        )
        co2e = CounterMetricFamily(
            "carbontrack_container_co2e_grams",
            "Emissions of the container's energy: each interval's joules x grid intensity x "
            "PUE (grams CO2e).",
            labels=CONTAINER_LABELS,
        )
        for (uid, name), o, vals in s.containers:
            for comp, meth, j, g in vals:
                labels = [node, o.namespace, o.pod, uid, name, comp, meth, o.owner_kind,
                          o.owner_name, o.owner_uid]
                energy.add_metric(labels, j)
                if g is not None:
                    co2e.add_metric(labels, g)
        yield energy
        yield co2e

        un = CounterMetricFamily(
            "carbontrack_unallocated_energy_joules",
            "Node energy no container is charged with (idle not reserved, system processes, "
            "departed cgroups) (joules).",
            labels=["node", "component"],
        )
        for comp, j in s.unallocated:
            un.add_metric([node, comp], j)
        yield un

        gi = GaugeMetricFamily(
            "carbontrack_grid_carbon_intensity_grams_per_kwh",
            "Grid carbon intensity used for the last interval (gCO2e per kWh).",
            labels=["node", "zone", "source", "basis"],
        )
        if s.intensity is not None:
            zone, source, basis, value = s.intensity
            gi.add_metric([node, zone, source, basis], value)
        yield gi

        fb = GaugeMetricFamily(
            "carbontrack_grid_intensity_fallback",
            "1 if the last interval's intensity is the static catalogue's because the live "
            "provider failed or is backing off (see logs), 0 if it is the provider's.",
            labels=["node", "provider"],
        )
        if s.intensity_fallback is not None:
            fb.add_metric([node, s.intensity_fallback[0]], 1.0 if s.intensity_fallback[1] else 0.0)
        yield fb

        pue = GaugeMetricFamily("carbontrack_pue", "Power usage effectiveness applied to "
                                "emissions (facility energy / IT energy).", labels=["node"])
        pue.add_metric([node], s.pue)
        yield pue

        up = GaugeMetricFamily("carbontrack_source_up",
                               "1 if the source worked in the last cycle, else 0 (see logs).",
                               labels=["node", "source"])
        dur = GaugeMetricFamily("carbontrack_collection_duration_seconds",
                                "Wall time the source took in the last cycle (seconds).",
                                labels=["node", "source"])
        for name, st in s.sources:
            up.add_metric([node, name], 1.0 if st.up else 0.0)
            dur.add_metric([node, name], st.duration_s)
        yield up
        yield dur

        attr = InfoMetricFamily("carbontrack_attribution", "Attribution rules in force.",
                                labels=["cpu_weight_basis", "cpu_weight_map", "idle_policy",
                                        "node"])
        attr.add_metric([s.cpu_weight_basis, s.cpu_weight_map, s.idle_policy, node], {})
        yield attr

        build = InfoMetricFamily("carbontrack_build", "CarbonTrack exporter build.",
                                 labels=["version"])
        build.add_metric([__version__], {})
        yield build


# -- fast text exposition ------------------------------------------------------------------
# generate_latest() validates and escapes every label of every sample on every render
# (~15 us per sample): 1,000 containers are ~4,500 samples. The renderer below writes the
# same text format (labels sorted by name, values as client_python formats them; a test
# checks byte equality with generate_latest) and caches each container's escaped label
# fragments across renders.

# client_python's value formatting (untyped there), so the bytes match generate_latest
_FMT = cast(Callable[[float], str], floatToGoString)


def _escape(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(pairs: list[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(pairs))


class TextRenderer:
    """Renders a Snapshot to the Prometheus text format (0.0.4), byte-identical to
    ``generate_latest`` over ``ExporterCollector``. Keeps escaped label fragments of the
    containers it last rendered (bounded by the snapshot's containers)."""

    def __init__(self) -> None:
        self._frag: dict[tuple[tuple[str, str], object], tuple[str, str]] = {}
        self._meta: dict[str, tuple[str, str]] | None = None

    def _head(self, s: Snapshot, name: str) -> str:
        if self._meta is None:
            empty = Snapshot(0, "", (), (), (), (), None, 1.0, "")
            self._meta = {}
            for fam in ExporterCollector(lambda: empty).collect():
                self._meta[fam.name] = (fam.documentation, fam.type)
        doc, typ = self._meta[name]
        doc = doc.replace("\\", r"\\").replace("\n", r"\n")
        full = f"{name}_total" if typ == "counter" else (
            f"{name}_info" if typ == "info" else name)
        ptype = "gauge" if typ == "info" else typ
        return f"# HELP {full} {doc}\n# TYPE {full} {ptype}\n"

    def render(self, s: Snapshot) -> bytes:
        node = s.node_name
        out: list[str] = []
        w = out.append
        fmt = _FMT
        enode = _escape(node)

        w(self._head(s, "carbontrack_node_energy_joules"))
        for (comp, dev, meth), j in s.node:
            w(f"carbontrack_node_energy_joules_total{{{_labels([('node', node), ('component', comp), ('device', dev), ('method', meth)])}}} {fmt(j)}\n")  # noqa: E501

        frag: dict[tuple[tuple[str, str], object], tuple[str, str]] = {}
        old = self._frag
        energy: list[str] = []
        co2e: list[str] = []
        for key, o, vals in s.containers:
            fk = (key, o)
            f = old.get(fk)
            if f is None:
                f = (f'container="{_escape(key[1])}"',
                     f'namespace="{_escape(o.namespace)}",node="{enode}",'
                     f'owner_kind="{_escape(o.owner_kind)}",owner_name="{_escape(o.owner_name)}",'
                     f'owner_uid="{_escape(o.owner_uid)}",pod="{_escape(o.pod)}",'
                     f'pod_uid="{_escape(key[0])}"')
            frag[fk] = f
            ctr, tail = f
            for comp, meth, j, g in vals:
                lab = f'component="{_escape(comp)}",{ctr},method="{_escape(meth)}",{tail}'
                energy.append(f"carbontrack_container_energy_joules_total{{{lab}}} {fmt(j)}\n")
                if g is not None:
                    co2e.append(f"carbontrack_container_co2e_grams_total{{{lab}}} {fmt(g)}\n")
        self._frag = frag
        w(self._head(s, "carbontrack_container_energy_joules"))
        out += energy
        w(self._head(s, "carbontrack_container_co2e_grams"))
        out += co2e

        w(self._head(s, "carbontrack_unallocated_energy_joules"))
        for comp, j in s.unallocated:
            w(f'carbontrack_unallocated_energy_joules_total{{component="{_escape(comp)}",'
              f'node="{enode}"}} {fmt(j)}\n')
        w(self._head(s, "carbontrack_grid_carbon_intensity_grams_per_kwh"))
        if s.intensity is not None:
            zone, source, basis, value = s.intensity
            lab = _labels([("node", node), ("zone", zone), ("source", source), ("basis", basis)])
            w(f"carbontrack_grid_carbon_intensity_grams_per_kwh{{{lab}}} {fmt(value)}\n")
        w(self._head(s, "carbontrack_grid_intensity_fallback"))
        if s.intensity_fallback is not None:
            provider, fallback = s.intensity_fallback
            w(f'carbontrack_grid_intensity_fallback{{node="{enode}",'
              f'provider="{_escape(provider)}"}} {fmt(1.0 if fallback else 0.0)}\n')
        w(self._head(s, "carbontrack_pue"))
        w(f'carbontrack_pue{{node="{enode}"}} {fmt(s.pue)}\n')
        w(self._head(s, "carbontrack_source_up"))
        for name, st in s.sources:
            w(f'carbontrack_source_up{{node="{enode}",source="{_escape(name)}"}} '
              f"{fmt(1.0 if st.up else 0.0)}\n")
        w(self._head(s, "carbontrack_collection_duration_seconds"))
        for name, st in s.sources:
            w(f'carbontrack_collection_duration_seconds{{node="{enode}",'
              f'source="{_escape(name)}"}} {fmt(st.duration_s)}\n')
        w(self._head(s, "carbontrack_attribution"))
        w(f'carbontrack_attribution_info{{cpu_weight_basis="{_escape(s.cpu_weight_basis)}",'
          f'cpu_weight_map="{_escape(s.cpu_weight_map)}",'
          f'idle_policy="{_escape(s.idle_policy)}",node="{enode}"}} 1.0\n')
        w(self._head(s, "carbontrack_build"))
        w(f'carbontrack_build_info{{version="{_escape(__version__)}"}} 1.0\n')
        return "".join(out).encode()
