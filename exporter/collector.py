"""Prometheus exposition of the engine's latest Snapshot (a client_python custom Collector).

``collect()`` only reads an immutable snapshot (cheap, lock-free); nothing is computed per
scrape. Metric names and labels are the contract in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

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
                                labels=["node", "idle_policy"])
        attr.add_metric([node, s.idle_policy], {})
        yield attr

        build = InfoMetricFamily("carbontrack_build", "CarbonTrack exporter build.",
                                 labels=["version"])
        build.add_metric([__version__], {})
        yield build
