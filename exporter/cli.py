"""`carbontrack exporter`: wire settings, sources, cgroups, pods and the HTTP server together.

Everything concrete is built here and injected; the modules it wires take their roots,
libraries and clients as arguments. A source that cannot open is not fatal: its series are
missing, ``carbontrack_source_up{source=…}`` is 0 and one log line says why.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from carbontrack.core.apiconfig import from_kubeconfig, in_cluster
from carbontrack.core.errors import (
    CarbonTrackError,
    ConfigError,
    SourceUnavailable,
    UnknownZoneError,
)
from carbontrack.core.types import EnergySource
from carbontrack.sources import procstat, registry

from .cgroups import CgroupReader
from .cpu_weight import CpuWeightMap
from .emissions import EmissionsRates
from .engine import Engine, EngineConfig, GpuTopologyProvider
from .kubeapi import ApiClient, ApiError
from .owners import RootOwners
from .pods import PodCache
from .podwatch import HEALTH_SOURCE, PodWatcher
from .server import CollectionLoop, ExpositionCache, make_server
from .settings import Settings, from_args

log = logging.getLogger("carbontrack.exporter")


def build_sources(s: Settings, pods: PodCache, down: dict[str, str]
                  ) -> tuple[list[EnergySource], GpuTopologyProvider | None]:
    """Energy sources from the registry (carbontrack.sources.registry, as the tracker's):
    CPU sources first, then every GPU vendor's, with one topology provider over all GPU
    vendors. ``down`` collects (name -> reason) for enabled sources that did not open."""
    ctx = registry.SourceContext(sysfs=s.sysfs, procfs=s.procfs, env=os.environ,
                                 provider=s.provider or "aws")
    built = registry.build(ctx, s.sources)
    down.update(built.down)
    gpu = {id(src) for _, src in built.gpus}
    sources = [x for x in built.sources if id(x) not in gpu] + [x for _, x in built.gpus]
    if not built.gpus:
        return sources, None
    from .gpu_topology import build_topology

    return sources, build_topology(s, pods, built.gpus)


def build_emissions(s: Settings, node: Mapping[str, Any] | None = None,
                    env: Mapping[str, str] | None = None) -> EmissionsRates:
    """The node's zone and intensity lookup, through carbontrack.intensity.selection (the
    rules the tracker uses too): --zone (or --provider/--region) > the Node's
    carbontrack.io/grid-zone label > its cloud region (providerID + region label) >
    --default-zone. An explicit zone that does not resolve stops start-up; a node nothing
    resolves for exports energy without CO2e and says why (carbontrack_source_up
    {source="intensity"} 0, one log line)."""
    from carbontrack.intensity.resolve import node_facts
    from carbontrack.intensity.selection import select

    sel = select(s.intensity, env)
    if sel.market is not None:
        # the exporter's counters are location-based; market-based figures are the tracker's
        # and the reports' (GHG Protocol dual reporting keeps the two apart)
        log.warning("--market-factors is not used by the exporter (its CO2e is location-based)")
    cat = sel.catalogue
    explicit = s.zone or (f"{s.provider}:{s.region}" if s.provider and s.region else None)
    labels, provider_id = node_facts(node) if node is not None else ({}, None)
    pue = s.pue
    try:
        res = sel.resolve(explicit=explicit, node_labels=labels, provider_id=provider_id,
                          cluster_default=s.default_zone, subject=f"node {s.node_name}")
    except UnknownZoneError as err:
        if explicit:
            raise  # the user asked for this zone: fail now with the catalogue's message
        log.warning("%s: energy is exported, CO2e is not", err)
        return EmissionsRates(None, None, 1.0 if pue is None else pue,
                              provider=sel.provider, unresolved=str(err))
    if res.warning:
        log.warning("%s", res.warning)
    if pue is None and res.rule in ("explicit", "cloud-region") and ":" in res.key:
        cloud, _, region = res.key.partition(":")
        if cloud in ("aws", "gcp", "gce", "google", "azure"):
            pue, src = cat.provider_pue(cloud, region)
            log.info("PUE %.3f from %s", pue, src)
    log.info("grid zone %s (catalogue zone %s, rule %s); intensity from %s", res.key,
             res.zone, res.rule, sel.provider)
    return EmissionsRates(sel.lookup, res.key, 1.0 if pue is None else pue,
                          provider=sel.provider, zone_label=res.zone)


def read_node(s: Settings) -> dict[str, Any] | None:
    """This node's object (labels, providerID) for zone resolution; None, with one log line,
    when the API does not give it (no RBAC for nodes, API down): the other rules apply."""
    try:
        api = ApiClient(build_api(s).endpoint, timeout_s=5.0)
        return api.get_json(f"/api/v1/nodes/{s.node_name}", {})
    except (ApiError, OSError, ValueError, CarbonTrackError) as err:
        log.warning("cannot read node %s for its grid zone labels (%s); using --zone, "
                    "--default-zone", s.node_name, err)
        return None


def build_api(s: Settings) -> ApiClient:
    """The API client of the pod watch: ``--kubeconfig``, else the pod's service account."""
    endpoint = from_kubeconfig(s.kubeconfig) if s.kubeconfig is not None else in_cluster()
    return ApiClient(endpoint)


def build_watcher(s: Settings, pods: PodCache) -> PodWatcher:
    """The pod watch of this node (its health is wired to the engine in ``main``)."""
    api = build_api(s)
    return PodWatcher(api, s.node_name, pods, keep_deleted_s=s.retention_s, owners=RootOwners(api))


def build_engine(s: Settings, pods: PodCache, node: Mapping[str, Any] | None = None) -> Engine:
    from .state import StateStore

    down: dict[str, str] = {}
    sources, gpu_topo = build_sources(s, pods, down)
    try:
        st = procstat.read_proc_stat(s.procfs)
        cpus: int | None = st.online_cpus
    except SourceUnavailable as err:
        cpus = None
        log.warning("%s: idle energy is not split from active energy", err)
    try:
        mem: int | None = procstat.read_memtotal_bytes(s.procfs)
    except SourceUnavailable:
        mem = None
    cfg = EngineConfig(node_name=s.node_name, idle_policy=s.idle_policy,
                       retention_s=s.retention_s, cpu_count=cpus, memory_capacity_bytes=mem,
                       kube=s.kube)
    engine = Engine(
        cfg,
        cgroups=CgroupReader(s.sysfs / "fs" / "cgroup"),
        cpu_weights=CpuWeightMap(s.cpu_weight_map),
        sources=sources,
        emissions=build_emissions(s, node),
        pods=pods,
        procfs_root=s.procfs,
        store=StateStore(s.state_dir, s.node_name),
        gpu=gpu_topo,
    )
    for name, why in down.items():
        engine.mark_source(name, False, why)
    return engine


# builds the pod watch from settings and cache; main takes another for benches and tests
WatcherFactory = Callable[[Settings, PodCache], Any]


def main(argv: list[str], make_watcher: WatcherFactory = build_watcher) -> int:
    s = from_args(argv)
    logging.basicConfig(level=s.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pods = PodCache()
    # built first: a missing service account or a bad kubeconfig stops start-up at once
    watcher = make_watcher(s, pods) if s.kube else None
    # the Node's labels and providerID pick its grid zone unless --zone/--provider say
    node = read_node(s) if s.kube and not (s.zone or s.provider) else None
    engine = build_engine(s, pods, node)
    if isinstance(watcher, PodWatcher):  # carbontrack_source_up{source="pod-watch"}
        watcher.health = partial(engine.mark_source, HEALTH_SOURCE)
    cache = ExpositionCache(lambda: engine.snapshot)
    try:
        server = make_server(s.host, s.port, cache, tls=s.scrape_security.ssl_context(),
                             guard=s.scrape_security.guard())
    except OSError as err:
        raise ConfigError(f"cannot listen on {s.host}:{s.port}: {err.strerror}; "
                          "pick another --listen") from err
    if watcher is not None:
        watcher.start()
    loop = CollectionLoop(engine, s.interval_s)
    loop.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    log.info("serving %s://%s:%d/metrics every %.3g s (node %s, state %s)", server.scheme,
             s.host, server.server_address[1], s.interval_s, s.node_name, s.state_dir)
    stop.wait()
    server.shutdown()
    loop.stop()
    engine.collect()  # account the last partial interval and save it before exiting
    if watcher is not None:
        watcher.stop()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
