"""`carbontrack exporter`: wire settings, sources, cgroups, pods and the HTTP server together.

Everything concrete is built here and injected; the modules it wires take their roots,
libraries and clients as arguments. A source that cannot open is not fatal: its series are
missing, ``carbontrack_source_up{source=…}`` is 0 and one log line says why.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from carbontrack.core.errors import CarbonTrackError, ConfigError, SourceUnavailable
from carbontrack.core.types import EnergySource, IntensityLookup
from carbontrack.sources import procstat

from .apiconfig import from_kubeconfig, in_cluster
from .cgroups import CgroupReader
from .cpu_weight import CpuWeightMap
from .emissions import EmissionsRates
from .engine import Engine, EngineConfig, GpuTopologyProvider
from .kubeapi import ApiClient
from .pods import PodCache
from .podwatch import HEALTH_SOURCE, PodWatcher
from .server import CollectionLoop, ExpositionCache, make_server
from .settings import Settings, from_args

log = logging.getLogger("carbontrack.exporter")


def build_sources(s: Settings, down: dict[str, str]) -> list[EnergySource]:
    """Energy sources in order; ``down`` collects (name -> reason) for those that failed."""
    out: list[EnergySource] = []
    have_rapl = False
    if s.rapl:
        from carbontrack.sources.rapl import RaplSource

        try:
            out.append(RaplSource(s.sysfs))
            have_rapl = True
        except SourceUnavailable as err:
            down["rapl"] = str(err)
    if s.estimate and not have_rapl:
        # model-based CPU/DRAM energy only where no counter exists, never both (no double count)
        from carbontrack.sources.estimate import CpuEstimateSource, MemoryEstimateSource

        try:
            out.append(CpuEstimateSource(s.procfs, provider=s.provider or "aws"))
        except CarbonTrackError as err:
            down["cpu-estimate"] = str(err)
        try:
            out.append(MemoryEstimateSource(s.procfs))
        except CarbonTrackError as err:
            down["memory-estimate"] = str(err)
    return out


def build_gpu(s: Settings, pods: PodCache, down: dict[str, str]
              ) -> tuple[EnergySource | None, GpuTopologyProvider | None]:
    if not s.nvml:
        return None, None
    try:
        from .nvml_gpu import open_gpu
    except ImportError as err:
        down["nvml"] = f"NVML support unavailable: {err}"
        return None, None
    try:
        return open_gpu(s, pods)
    except SourceUnavailable as err:
        down["nvml"] = str(err)
        return None, None


def build_emissions(s: Settings) -> EmissionsRates:
    from carbontrack.intensity.catalogue import Catalogue

    cat = Catalogue.load()
    zone = s.zone
    pue = s.pue
    if s.provider and s.region:
        zone = zone or f"{s.provider}:{s.region}"
        if pue is None:
            pue, src = cat.provider_pue(s.provider, s.region)
            log.info("PUE %.3f from %s", pue, src)
    if zone:
        cat.get(zone)  # unknown zones fail at start-up with the catalogue's message
    else:
        log.warning("no --zone (or --provider/--region): energy is exported, CO2e is not")
    lookup: IntensityLookup = cat
    return EmissionsRates(lookup, zone, 1.0 if pue is None else pue)


def build_api(s: Settings) -> ApiClient:
    """The API client of the pod watch: ``--kubeconfig``, else the pod's service account."""
    endpoint = from_kubeconfig(s.kubeconfig) if s.kubeconfig is not None else in_cluster()
    return ApiClient(endpoint)


def build_watcher(s: Settings, pods: PodCache) -> PodWatcher:
    """The pod watch of this node (its health is wired to the engine in ``main``)."""
    return PodWatcher(build_api(s), s.node_name, pods, keep_deleted_s=s.retention_s)


def build_engine(s: Settings, pods: PodCache) -> Engine:
    from .state import StateStore

    down: dict[str, str] = {}
    sources = build_sources(s, down)
    gpu_source, gpu_topo = build_gpu(s, pods, down)
    if gpu_source is not None:
        sources.append(gpu_source)
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
        emissions=build_emissions(s),
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
    engine = build_engine(s, pods)
    if isinstance(watcher, PodWatcher):  # carbontrack_source_up{source="pod-watch"}
        watcher.health = partial(engine.mark_source, HEALTH_SOURCE)
    cache = ExpositionCache(lambda: engine.snapshot)
    try:
        server = make_server(s.host, s.port, cache)
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
    log.info("serving http://%s:%d/metrics every %.3g s (node %s, state %s)",
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
