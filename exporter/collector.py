"""Prometheus exposition of the engine's latest Snapshot (a client_python custom Collector).

``collect()`` only reads an immutable snapshot (cheap, lock-free); nothing is computed per
scrape. Metric names, help and labels come from carbontrack.core.contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from carbontrack import __version__
from carbontrack.core import contract as c

from .engine import Snapshot


def _meta(family: c.MetricFamily) -> tuple[str, str, None, list[str]]:
    """(name, documentation, value, labels): a client_python metric family's arguments."""
    return family.name, family.help, None, list(family.labels)


class ExporterCollector(Collector):
    """Yields the exporter's metric families from ``snapshot()`` (injected: the engine's)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | InfoMetricFamily]:
        s = self._snapshot()
        node = s.node_name

        f = CounterMetricFamily(*_meta(c.NODE_ENERGY))
        for (comp, dev, meth), j in s.node:
            f.add_metric([node, comp, dev, meth], j)
        yield f

        energy = CounterMetricFamily(*_meta(c.CONTAINER_ENERGY))
        co2e = CounterMetricFamily(*_meta(c.CONTAINER_CO2E))
        for (uid, name), o, vals in s.containers:
            for comp, meth, j, g in vals:
                labels = [node, o.namespace, o.pod, uid, name, comp, meth, o.owner_kind,
                          o.owner_name, o.owner_uid]
                energy.add_metric(labels, j)
                if g is not None:
                    co2e.add_metric(labels, g)
        yield energy
        yield co2e

        un = CounterMetricFamily(*_meta(c.UNALLOCATED_ENERGY))
        for comp, j in s.unallocated:
            un.add_metric([node, comp], j)
        yield un

        gi = GaugeMetricFamily(*_meta(c.GRID_INTENSITY))
        if s.intensity is not None:
            zone, source, basis, value = s.intensity
            gi.add_metric([node, zone, source, basis], value)
        yield gi

        fb = GaugeMetricFamily(*_meta(c.GRID_INTENSITY_FALLBACK))
        if s.intensity_fallback is not None:
            fb.add_metric([node, s.intensity_fallback[0]], 1.0 if s.intensity_fallback[1] else 0.0)
        yield fb

        pue = GaugeMetricFamily(*_meta(c.PUE))
        pue.add_metric([node], s.pue)
        yield pue

        up = GaugeMetricFamily(*_meta(c.SOURCE_UP))
        dur = GaugeMetricFamily(*_meta(c.COLLECTION_DURATION))
        for name, st in s.sources:
            up.add_metric([node, name], 1.0 if st.up else 0.0)
            dur.add_metric([node, name], st.duration_s)
        yield up
        yield dur

        attr = InfoMetricFamily(*_meta(c.ATTRIBUTION_INFO))
        attr.add_metric([s.cpu_weight_basis, s.cpu_weight_map, s.idle_policy, node], {})
        yield attr

        build = InfoMetricFamily(*_meta(c.BUILD_INFO))
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


# sample names (name_total, name_info, ...) of the contract's families
_S_NODE_ENERGY = c.NODE_ENERGY.sample
_S_CONTAINER_ENERGY = c.CONTAINER_ENERGY.sample
_S_CONTAINER_CO2E = c.CONTAINER_CO2E.sample
_S_UNALLOCATED_ENERGY = c.UNALLOCATED_ENERGY.sample
_S_GRID_INTENSITY = c.GRID_INTENSITY.sample
_S_GRID_INTENSITY_FALLBACK = c.GRID_INTENSITY_FALLBACK.sample
_S_PUE = c.PUE.sample
_S_SOURCE_UP = c.SOURCE_UP.sample
_S_COLLECTION_DURATION = c.COLLECTION_DURATION.sample
_S_ATTRIBUTION_INFO = c.ATTRIBUTION_INFO.sample
_S_BUILD_INFO = c.BUILD_INFO.sample


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

        w(self._head(s, c.NODE_ENERGY.name))
        for (comp, dev, meth), j in s.node:
            w(f"{_S_NODE_ENERGY}{{{_labels([('node', node), ('component', comp), ('device', dev), ('method', meth)])}}} {fmt(j)}\n")  # noqa: E501

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
                energy.append(f"{_S_CONTAINER_ENERGY}{{{lab}}} {fmt(j)}\n")
                if g is not None:
                    co2e.append(f"{_S_CONTAINER_CO2E}{{{lab}}} {fmt(g)}\n")
        self._frag = frag
        w(self._head(s, c.CONTAINER_ENERGY.name))
        out += energy
        w(self._head(s, c.CONTAINER_CO2E.name))
        out += co2e

        w(self._head(s, c.UNALLOCATED_ENERGY.name))
        for comp, j in s.unallocated:
            w(f'{_S_UNALLOCATED_ENERGY}{{component="{_escape(comp)}",'
              f'node="{enode}"}} {fmt(j)}\n')
        w(self._head(s, c.GRID_INTENSITY.name))
        if s.intensity is not None:
            zone, source, basis, value = s.intensity
            lab = _labels([("node", node), ("zone", zone), ("source", source), ("basis", basis)])
            w(f"{_S_GRID_INTENSITY}{{{lab}}} {fmt(value)}\n")
        w(self._head(s, c.GRID_INTENSITY_FALLBACK.name))
        if s.intensity_fallback is not None:
            provider, fallback = s.intensity_fallback
            w(f'{_S_GRID_INTENSITY_FALLBACK}{{node="{enode}",'
              f'provider="{_escape(provider)}"}} {fmt(1.0 if fallback else 0.0)}\n')
        w(self._head(s, c.PUE.name))
        w(f'{_S_PUE}{{node="{enode}"}} {fmt(s.pue)}\n')
        w(self._head(s, c.SOURCE_UP.name))
        for name, st in s.sources:
            w(f'{_S_SOURCE_UP}{{node="{enode}",source="{_escape(name)}"}} '
              f"{fmt(1.0 if st.up else 0.0)}\n")
        w(self._head(s, c.COLLECTION_DURATION.name))
        for name, st in s.sources:
            w(f'{_S_COLLECTION_DURATION}{{node="{enode}",'
              f'source="{_escape(name)}"}} {fmt(st.duration_s)}\n')
        w(self._head(s, c.ATTRIBUTION_INFO.name))
        w(f'{_S_ATTRIBUTION_INFO}{{cpu_weight_basis="{_escape(s.cpu_weight_basis)}",'
          f'cpu_weight_map="{_escape(s.cpu_weight_map)}",'
          f'idle_policy="{_escape(s.idle_policy)}",node="{enode}"}} 1.0\n')
        w(self._head(s, c.BUILD_INFO.name))
        w(f'{_S_BUILD_INFO}{{version="{_escape(__version__)}"}} 1.0\n')
        return "".join(out).encode()
