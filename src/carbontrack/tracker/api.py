"""The Python API: ``track()`` as a context manager, a decorator, or start()/stop() cells.

    from carbontrack.tracker import track
    with track(zone="FR") as t:
        train()
    print(t.result.co2e_grams)

    @track(zone="DE", project_name="bert")
    def train(): ...

Dependencies (sources, lookup, scope, clock, registry) can be injected; by default they
are built from the settings when the tracker starts.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, overload

from .. import __version__
from ..core.errors import ConfigError
from ..core.outdir import ensure_output_dir, remove_created
from ..core.types import EnergySource, IntensityLookup
from ..sources.procstat import read_proc_stat
from .clock import Clock, SystemClock
from .host import host_facts
from .output import append_csv, write_json
from .registry import PROCESS_REGISTRY, Registry
from .result import DeviceEnergy, ResultLogger, RunResult
from .scope import MachineScope, ProcessTreeScope, Scope
from .session import Session
from .settings import TrackerSettings
from .summary import render
from .wiring import ZoneChoice, build_selection, build_sources, resolve_zone

F = TypeVar("F", bound=Callable[..., Any])


def new_run_id() -> str:
    """A random (version 4) UUID string, without importing uuid at start-up."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Tracker:
    """One tracked run. Start it once; ``result`` is set when it stops."""

    def __init__(
        self,
        settings: TrackerSettings,
        *,
        sources: Sequence[EnergySource] | None = None,
        lookup: IntensityLookup | None = None,
        scope: Scope | None = None,
        clock: Clock | None = None,
        registry: Registry | None = None,
        loggers: Sequence[ResultLogger] = (),
        root_pid: int | None = None,
    ) -> None:
        self.settings = settings
        self._sources = list(sources) if sources is not None else None
        self._own_sources = sources is None  # close only what this tracker opened
        self._lookup = lookup
        self._scope = scope
        self._clock = clock or SystemClock()
        self._registry = registry or PROCESS_REGISTRY
        self._loggers = list(loggers)
        self._root_pid = root_pid
        self.run_id = new_run_id()
        self.result: RunResult | None = None
        self.files: tuple[Path, ...] = ()
        self._created_dirs: list[Path] = []  # output directories this run made (removed on failure)
        self._session: Session | None = None
        self._parent: str | None = None
        self._notes: list[str] = []
        self._command: tuple[str, ...] | None = None
        self.exit_code: int | None = None
        self._prepared: TrackerSettings | None = None
        self.zone_choice: ZoneChoice | None = None
        self._provider = "static" if lookup is None else "injected"

    # -- lifecycle -------------------------------------------------------------------------
    def prepare(self) -> None:
        """Validate everything that can be wrong before the work starts (settings, zone,
        output directory) so that bad input fails fast and leaves no partial file."""
        if self._prepared is not None:
            return
        s = self.settings.resolved()
        created: list[Path] = []
        if s.output_dir is not None and s.formats:
            # created with its parents now, so an unwritable location fails before the work
            created = ensure_output_dir(s.output_dir, "output directory")
        try:
            self._prepare_rest(s)
        except BaseException:
            remove_created(created)  # a run that never started leaves no directory behind
            raise
        self._created_dirs = created

    def _prepare_rest(self, s: TrackerSettings) -> None:
        if s.scope == "process" and self._scope is None:
            read_proc_stat(s.procfs_root)  # the process share needs /proc/stat: fail now if absent
        catalogue = None
        if self._lookup is None:
            selection = build_selection(s, os.environ)
            self._lookup, catalogue = selection.lookup, selection.catalogue
            self._provider = selection.provider
            if selection.market is not None and s.market_factor_g_per_kwh is None:
                s = self._market_from(selection, s)
        self.zone_choice = resolve_zone(s, self._lookup, os.environ, catalogue)
        s = replace(s, zone=self.zone_choice.zone)
        if self.zone_choice.warning:
            self._notes.append(self.zone_choice.warning)
        if self._sources is None:
            self._sources, notes = build_sources(s)
            self._notes += notes
        self._prepared = s

    def _market_from(self, selection: Any, s: TrackerSettings) -> TrackerSettings:
        """The market-based rate from --market-factors for the run's zone, computed once at
        start against the catalogue's location factor (MarketFactors.dual)."""
        choice = resolve_zone(s, selection.catalogue, os.environ, selection.catalogue)
        location = selection.catalogue.get(choice.lookup_key)
        dual = selection.market.dual(choice.lookup_key, location)
        if dual.market is None:
            self._notes.append(f"--market-factors has no entry for {choice.lookup_key}: no "
                               "market-based figure")
            return s
        self._notes.append(f"market-based factor {dual.market.g_per_kwh:g} g/kWh: "
                           f"{dual.market.source}")
        return replace(s, market_factor_g_per_kwh=dual.market.g_per_kwh)

    def start(self) -> Tracker:
        if self._session is not None:
            raise RuntimeError("a Tracker runs once; call track() again for another run")
        self.prepare()
        s = self._prepared
        assert s is not None
        if self._scope is None:  # built at start: `carbontrack run` knows the pid only now
            if s.scope == "machine":
                self._scope = MachineScope()
            else:
                if self._root_pid is not None:  # `carbontrack run`: a command spawned just now
                    self._scope = ProcessTreeScope(s.procfs_root, self._root_pid, fresh=True)
                else:
                    self._scope = ProcessTreeScope(s.procfs_root, os.getpid())
        assert s is not None and s.zone is not None and s.pue is not None
        assert self._sources is not None and self._lookup is not None and self._scope is not None
        self._session = Session(
            self._sources,
            self._lookup,
            self.zone_choice.lookup_key if self.zone_choice else s.zone,
            s.pue,
            self._scope,
            self._clock,
            s.market_factor_g_per_kwh,
        )
        self._parent = self._registry.enter(self.run_id)
        try:
            self._session.start(interval_s=s.interval_s)
        except BaseException:
            self._registry.leave(self.run_id)
            raise
        return self

    def set_command(self, argv: Sequence[str], pid: int) -> None:
        """`carbontrack run`: measure this child's process tree (before start())."""
        self._command = tuple(argv)
        self._root_pid = pid

    @property
    def scope(self) -> Scope | None:
        return self._scope

    def stop(self) -> RunResult:
        if self._session is None or self._prepared is None:
            raise RuntimeError("stop() before start()")
        if self.result is not None:
            return self.result
        s = self._prepared
        try:
            totals = self._session.stop()
        finally:
            overlaps = self._registry.leave(self.run_id)
        assert s.zone is not None and s.pue is not None
        result = RunResult(
            run_id=self.run_id,
            project_name=s.project_name,
            experiment_id=s.experiment_id,
            started_at=totals.started_at,
            ended_at=totals.ended_at,
            duration_s=totals.duration_s,
            scope=s.scope,
            method=totals.method,
            energy_j=totals.energy_j,
            co2e_grams=totals.co2e_grams,
            market_based_co2e_grams=totals.market_based_co2e_grams,
            market_factor_g_per_kwh=s.market_factor_g_per_kwh,
            zone=s.zone,
            pue=s.pue,
            factors=totals.factors,
            devices=totals.devices,
            sources=totals.sources,
            uncertainty=totals.uncertainty,
            intervals=totals.intervals,
            host=self._host(s, totals.devices),
            carbontrack_version=__version__,
            parent_run_id=self._parent,
            overlaps_with=overlaps,
            warnings=totals.warnings,
            method_notes=tuple(self._notes),
            command=self._command,
            exit_code=self.exit_code,
        )
        if self._own_sources:
            for src in self._sources or ():
                src.close()
        self.result = result
        self.files = self._write(result, s)
        for logger in self._loggers:
            try:
                logger.on_result(result)
            except Exception as err:  # a logger must not lose the run's files or result
                warnings.warn(f"carbontrack: logger {logger!r} failed: {err}", stacklevel=2)
        if s.summary:
            print(render(result, tuple(map(str, self.files))), file=sys.stderr)
        return result

    def _host(self, s: TrackerSettings, devices: tuple[DeviceEnergy, ...]) -> dict[str, Any]:
        host = host_facts(s.procfs_root, devices)
        zc = self.zone_choice
        if zc is not None:
            host.update(zone_rule=zc.rule, cloud_provider=zc.cloud_provider, cloud_region=zc.cloud_region,
                        intensity_provider=self._provider)
        return host

    def _write(self, result: RunResult, s: TrackerSettings) -> tuple[Path, ...]:
        if s.output_dir is None:
            return ()
        files: list[Path] = []
        try:
            if "csv" in s.formats:
                path, warning = append_csv(s.output_dir / s.csv_name, result)
                files.append(path)
                if warning:
                    warnings.warn(f"carbontrack: {warning}", stacklevel=3)
            if "json" in s.formats:
                files.append(write_json(s.output_dir / f"carbontrack-{result.run_id}.json", result))
        except BaseException:
            # the row is one append and the JSON a rename: no half file exists; a directory
            # this run created and left empty goes too
            remove_created(self._created_dirs)
            raise
        return tuple(files)

    def summary(self) -> str:
        """The end-of-run table (what `carbontrack run` prints), e.g. for a notebook cell."""
        if self.result is None:
            raise RuntimeError("no result yet: stop() the tracker first")
        return render(self.result, tuple(map(str, self.files)))

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> Tracker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()  # the body's exception, if any, propagates

    def __repr__(self) -> str:
        r = self.result
        if r is None:
            return f"<Tracker {self.run_id} {'running' if self._session else 'not started'}>"
        return f"<Tracker {self.run_id} {r.energy_kwh:.6g} kWh {r.co2e_grams:.6g} gCO2e {r.zone}>"


@overload
def track(func: F, /) -> F: ...


@overload
def track(
    func: None = None,
    *,
    loggers: Sequence[ResultLogger] = (),
    sources: Sequence[EnergySource] | None = None,
    lookup: IntensityLookup | None = None,
    scope: str | Scope = "process",
    clock: Clock | None = None,
    registry: Registry | None = None,
    **settings: Any,
) -> DecoratingTracker: ...


def track(
    func: Callable[..., Any] | None = None,
    *,
    loggers: Sequence[ResultLogger] = (),
    sources: Sequence[EnergySource] | None = None,
    lookup: IntensityLookup | None = None,
    scope: str | Scope = "process",
    clock: Clock | None = None,
    registry: Registry | None = None,
    **settings: Any,
) -> Any:
    """``with track(zone="DE") as t:``, ``@track(zone="DE")``, ``@track``, or ``t = track(); t.start()``.

    Keyword settings are ``TrackerSettings`` fields (zone, pue, output_dir, scope,
    interval_s, cpu_watts, gpus, market_factor_g_per_kwh, project_name, ...).
    ``loggers`` get ``on_result(result)`` after each run (MLflow / W&B from carbontrack.reports).
    """
    unknown = sorted(set(settings) - _SETTING_NAMES)
    if unknown:
        raise ConfigError(f"unknown track() setting {unknown[0]!r}: use one of {', '.join(sorted(_SETTING_NAMES))}")
    if settings.get("output_dir") is not None:
        settings["output_dir"] = Path(settings["output_dir"])
    # `scope` is the setting ("process" | "machine") or, injected, a Scope implementation.
    impl = None if isinstance(scope, str) else scope
    cfg = TrackerSettings(scope=scope if isinstance(scope, str) else scope.name, **settings)
    deps: dict[str, Any] = dict(
        sources=sources,
        lookup=lookup,
        scope=impl,
        clock=clock,
        registry=registry,
        loggers=loggers,
    )
    if func is not None:
        return _decorate(func, lambda: Tracker(cfg, **deps))
    return DecoratingTracker(cfg, **deps)


_SETTING_NAMES = {f.name for f in fields(TrackerSettings)} - {"scope"}


class DecoratingTracker(Tracker):
    """A Tracker that can also decorate: each call of the decorated function is its own run
    (a fresh Tracker), and this object's ``result`` is the latest call's."""

    def __call__(self, func: F) -> F:
        deps: dict[str, Any] = dict(
            sources=self._sources,
            lookup=self._lookup,
            scope=self._scope,
            clock=self._clock,
            registry=self._registry,
            loggers=self._loggers,
        )
        return _decorate(func, lambda: Tracker(self.settings, **deps), self)


def _decorate(func: F, new: Callable[[], Tracker], owner: Tracker | None = None) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = new()
        try:
            with t:
                return func(*args, **kwargs)
        finally:
            wrapper.last_result = t.result  # type: ignore[attr-defined]
            if owner is not None:
                owner.result = t.result

    wrapper.last_result = None  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
