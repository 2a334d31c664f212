"""RAPL energy counters through the Linux powercap interface.

Reads ``<sysfs_root>/class/powercap/intel-rapl:*`` (AMD Zen parts use the same
interface); which zones exist and how the kernel names them is
:mod:`carbontrack.sources.rapl_zones`. What it reports, per socket:

* ``package-N`` (component cpu) and ``dram-N`` (component dram) — these two are
  disjoint RAPL domains, so summing them is correct. On multi-die parts the kernel
  gives one zone per die (``package-N-die-M``, each its own counter); their energy is
  summed into ``package-N``. When the die zones of a package show one counter (the same
  raw value and step: package-scoped MSRs read once per die, as kernels before
  ``rapl_msrs_are_pkg_scope()`` did on AMD), that interval's step is added once.
* ``core``/``uncore`` are parts *of* the package and ``psys`` covers the whole
  platform, so they are never returned by :meth:`RaplSource.read` (which would
  double count); :meth:`RaplSource.read_detail` gives them for display.

Counters are turned into cumulative joules since the source was opened:
``energy_uj`` wraps at ``max_energy_range_uj`` (add the range), and a drop that
would need implausible power to be a wrap is a counter reset (driver reload):
the new raw value is the energy since the reset. ``intel-rapl-mmio:N`` zones
expose the same package counter again and are skipped when the MSR zone exists.
A zone that does not parse is skipped and named once in :meth:`RaplSource.health`;
nothing a powercap tree holds makes :meth:`RaplSource.read` raise.

Since CVE-2020-8694 ``energy_uj`` is root-only; an unreadable zone turns health
down with one message that names the fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from carbontrack.core.errors import SourceUnavailable
from carbontrack.core.types import Component, EnergyReading, Method, SourceHealth

from .rapl_zones import FileReader, RaplZone, discover_zones, parse_uint

if TYPE_CHECKING:
    from .registry import SourceContext

__all__ = ["RaplSettings", "RaplSource", "RaplZone", "discover_zones", "read_sysfs_file"]

# Since Haswell RAPL is measured, not modelled; published comparisons against
# wall-plug meters put package+dram within a few percent. We carry +/-5 %.
RAPL_UNCERTAINTY = 0.05

PERMISSION_FIX = (
    "RAPL energy_uj under {root} is readable by root only (CVE-2020-8694): run carbontrack "
    "as root, or give its user read access, e.g. a udev rule "
    '\'SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod 0444 /sys%p/energy_uj"\' '
    "(CAP_SYS_RAWIO is not enough); unreadable zones: {zones}"
)

_COMPONENT = {"package": Component.CPU, "dram": Component.DRAM}


def read_sysfs_file(path: Path) -> str:
    """Default file seam: plain read. Tests inject another reader to fake EACCES."""
    with open(path, encoding="ascii") as fh:
        return fh.read()


@dataclass(frozen=True)
class RaplSettings:
    """Tunables. Units are in the names."""

    # A wrap implies the zone drew (range - last + new) in the interval. If that is
    # more than this per-zone power, the drop was a reset, not a wrap.
    max_plausible_zone_watts: float = 1500.0
    # Package TDP for the plausibility check. None: each package's
    # constraint_0_max_power_uw (PL1, which defaults to TDP); absent there: no check.
    tdp_watts: float | None = None
    # Flag package power above this multiple of summed TDP (mirrored multi-die zones).
    plausibility_factor: float = 2.0
    # Flag packages as mirrored after this many consecutive intervals in which all of them
    # show the same raw counter and the same non-zero increment.
    mirror_intervals: int = 3


@dataclass
class _Counter:
    last_raw: int | None = None
    last_t: float = 0.0
    last_delta_uj: int = 0
    resets: int = 0
    wraps: int = 0


@dataclass
class _State:
    counters: dict[str, _Counter] = field(default_factory=dict)  # per zone key
    totals_uj: dict[str, int] = field(default_factory=dict)  # per reported device
    steps_uj: dict[str, int] = field(default_factory=dict)  # per reported device, last interval
    unreadable: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)
    implausible: str = ""
    mirrored_dies: set[str] = field(default_factory=set)  # devices whose dies showed one counter
    mirror_streak: int = 0
    last_poll: float | None = None


class RaplSource:
    """Cumulative package and dram joules per socket from powercap (an ``EnergySource``)."""

    name = "rapl"

    def __init__(
        self,
        sysfs_root: Path,
        *,
        settings: RaplSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        reader: FileReader = read_sysfs_file,
    ) -> None:
        self._powercap = Path(sysfs_root) / "class" / "powercap"
        self._settings = settings or RaplSettings()
        self._clock = clock
        self._reader = reader
        if not self._powercap.is_dir():
            raise SourceUnavailable(
                f"no RAPL: {self._powercap} does not exist (no powercap driver, or a VM); use the estimate source"
            )
        found = discover_zones(self._powercap, reader)
        self.zones = found.zones
        self.skipped = found.skipped
        if not any(z.kind == "package" for z in self.zones):
            why = f" (skipped: {'; '.join(self.skipped)})" if self.skipped else ""
            raise SourceUnavailable(f"no RAPL package zones under {self._powercap}{why}; use the estimate source")
        # one reported device per (kind, socket): the dies of a package are summed
        self._devices: dict[str, list[RaplZone]] = {}
        for z in self.zones:
            self._devices.setdefault(z.device, []).append(z)
        self._state = _State({z.key: _Counter() for z in self.zones}, {d: 0 for d in self._devices})
        self._poll()  # baseline: cumulative energy counts from here

    # -- EnergySource ---------------------------------------------------------
    def read(self) -> Sequence[EnergyReading]:
        """Cumulative joules of each package (cpu) and dram device since the source was opened."""
        self._poll()
        return [self._reading(d, zs[0].kind) for d, zs in self._devices.items() if zs[0].kind in _COMPONENT]

    def read_detail(self) -> Sequence[EnergyReading]:
        """core/uncore (parts of a package) and psys (whole platform): display only, never add
        these to :meth:`read`'s values. Values are as of the last :meth:`read`."""
        return [self._reading(d, zs[0].kind) for d, zs in self._devices.items() if zs[0].kind not in _COMPONENT]

    def health(self) -> SourceHealth:
        st = self._state
        if st.unreadable:
            zones = ", ".join(sorted(st.unreadable))
            return SourceHealth(False, PERMISSION_FIX.format(root=self._powercap, zones=zones))
        if st.errors:
            dev, err = sorted(st.errors.items())[0]
            return SourceHealth(False, f"RAPL zone {dev} unreadable: {err}")
        if st.implausible:
            return SourceHealth(False, st.implausible)
        notes = []
        if self.skipped:
            notes.append(f"RAPL zones skipped: {'; '.join(self.skipped)}")
        if st.mirrored_dies:
            notes.append(
                f"RAPL die zones of {', '.join(sorted(st.mirrored_dies))} show one package counter; counted once"
            )
        return SourceHealth(True, "; ".join(notes))

    def close(self) -> None:
        """Nothing is held open between reads."""

    # -- internals ------------------------------------------------------------
    def _reading(self, device: str, kind: str) -> EnergyReading:
        component = _COMPONENT.get(kind, Component.OTHER)
        total = self._state.totals_uj[device]
        return EnergyReading(component, device, total / 1e6, Method.MEASURED, RAPL_UNCERTAINTY)

    def _poll(self) -> None:
        now = self._clock()
        st = self._state
        interval = now - st.last_poll if st.last_poll is not None else 0.0
        st.last_poll = now
        for zone in self.zones:
            c = st.counters[zone.key]
            c.last_delta_uj = 0
            name = zone.device if zone.die is None else f"{zone.device} (die {zone.die})"
            try:
                text = self._reader(zone.path / "energy_uj").strip()
            except PermissionError:
                st.unreadable.add(name)
                continue
            except (OSError, ValueError) as err:  # UnicodeDecodeError is a ValueError
                # keep the last cumulative value; health says why it stopped moving
                st.errors[name] = str(err)
                continue
            raw = parse_uint(text)
            if raw is None:
                st.errors[name] = f"energy_uj is {text[:40]!r}, not a microjoule count"
                continue
            st.unreadable.discard(name)
            st.errors.pop(name, None)
            self._advance(zone, c, raw, now)
        for device, zones in self._devices.items():
            st.steps_uj[device] = self._device_step(device, zones)
            st.totals_uj[device] += st.steps_uj[device]
        self._check_plausible(interval)

    def _device_step(self, device: str, zones: list[RaplZone]) -> int:
        """This interval's energy of one device: the sum over its dies, or one step when the
        dies show the same counter (same raw value and same step on every die)."""
        counters = [self._state.counters[z.key] for z in zones]
        steps = [c.last_delta_uj for c in counters]
        if len(zones) > 1 and steps[0] > 0 and len(set(steps)) == 1 and len({c.last_raw for c in counters}) == 1:
            self._state.mirrored_dies.add(device)
            return steps[0]
        return sum(steps)

    def _advance(self, zone: RaplZone, c: _Counter, raw: int, now: float) -> None:
        if c.last_raw is None:
            c.last_raw, c.last_t = raw, now
            return
        delta = raw - c.last_raw
        if delta < 0:
            elapsed = max(now - c.last_t, 1e-3)
            wrapped = delta + zone.max_range_uj
            plausible = self._settings.max_plausible_zone_watts * elapsed * 1e6
            if zone.max_range_uj > 0 and 0 <= wrapped <= plausible:
                delta = wrapped
                c.wraps += 1
            else:
                # counter restarted (driver reload, resume): energy since then is raw
                delta = raw
                c.resets += 1
        c.last_delta_uj = delta
        c.last_raw, c.last_t = raw, now

    def _check_plausible(self, interval_s: float) -> None:
        """Flag package devices that cannot all be real: the same counter value and increment
        on every package for several intervals (each socket's zone mirrors one counter), or
        more than factor x TDP."""
        packages = {d: zs for d, zs in self._devices.items() if zs[0].kind == "package"}
        counters = [[self._state.counters[z.key] for z in zs] for zs in packages.values()]
        deltas = [sum(c.last_delta_uj for c in cs) for cs in counters]
        if interval_s <= 0 or any(d <= 0 for d in deltas):
            return  # nothing measured this interval: keep the previous verdict
        raws = [tuple(c.last_raw for c in cs) for cs in counters]
        mirrored = len(deltas) > 1 and len(set(deltas)) == 1 and len(set(raws)) == 1
        # One equal step can be chance (or a simulator); the same counter value and step
        # several intervals running is one counter seen twice.
        self._state.mirror_streak = self._state.mirror_streak + 1 if mirrored else 0
        if self._state.mirror_streak >= self._settings.mirror_intervals:
            self._state.implausible = (
                f"RAPL package zones {', '.join(packages)} report identical "
                "energy increments: they mirror one counter (multi-die part); count one of them "
                "or set an explicit CPU TDP and use the estimate source"
            )
            return
        tdps = [self._settings.tdp_watts or _summed_tdp(zs) for zs in packages.values()]
        known = [t for t in tdps if t is not None]
        if len(known) != len(tdps):
            self._state.implausible = ""
            return
        power = sum(self._state.steps_uj[d] for d in packages) / 1e6 / interval_s
        bound = self._settings.plausibility_factor * sum(known)
        if power > bound:
            self._state.implausible = (
                f"RAPL package power {power:.0f} W exceeds {self._settings.plausibility_factor:g}x "
                f"TDP ({bound:.0f} W): package zones probably mirror each other; "
                "check the powercap tree or set the CPU TDP override"
            )
        else:
            self._state.implausible = ""


def _summed_tdp(zones: list[RaplZone]) -> float | None:
    """A package's TDP: per-die PL1s add up (each die zone carries its own limit)."""
    tdps = [z.tdp_watts for z in zones]
    if any(t is None for t in tdps):
        return None
    return sum(t for t in tdps if t is not None)


def open_source(ctx: SourceContext) -> RaplSource:
    """The registry's factory (carbontrack.sources.registry)."""
    return RaplSource(ctx.sysfs)
