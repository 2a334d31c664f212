"""RAPL energy counters through the Linux powercap interface.

Reads ``<sysfs_root>/class/powercap/intel-rapl:*`` (AMD Zen parts use the same
interface). What it reports, per socket:

* ``package-N`` (component cpu) and ``dram-N`` (component dram) — these two are
  disjoint RAPL domains, so summing them is correct.
* ``core``/``uncore`` are parts *of* the package and ``psys`` covers the whole
  platform, so they are never returned by :meth:`RaplSource.read` (which would
  double count); :meth:`RaplSource.read_detail` gives them for display.

Counters are turned into cumulative joules since the source was opened:
``energy_uj`` wraps at ``max_energy_range_uj`` (add the range), and a drop that
would need implausible power to be a wrap is a counter reset (driver reload):
the new raw value is the energy since the reset. ``intel-rapl-mmio:N`` zones
expose the same package counter again and are skipped when the MSR zone exists.

Since CVE-2020-8694 ``energy_uj`` is root-only; an unreadable zone turns health
down with one message that names the fix.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from carbontrack.core.errors import SourceUnavailable
from carbontrack.core.types import Component, EnergyReading, Method, SourceHealth

_ZONE_DIR = re.compile(r"^intel-rapl(?P<mmio>-mmio)?:(?P<top>\d+)(?::(?P<sub>\d+))?$")

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

FileReader = Callable[[Path], str]


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


@dataclass(frozen=True)
class RaplZone:
    """One physical RAPL domain."""

    path: Path
    kind: str  # package | dram | core | uncore | psys
    socket: int | None  # None for psys
    device: str  # package-0, dram-0, core-0, uncore-0, psys
    max_range_uj: int  # 0 when the kernel does not say
    tdp_watts: float | None


@dataclass
class _Counter:
    last_raw: int | None = None
    last_t: float = 0.0
    total_uj: int = 0
    last_delta_uj: int = 0
    resets: int = 0
    wraps: int = 0


@dataclass
class _State:
    counters: dict[str, _Counter] = field(default_factory=dict)
    unreadable: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)
    implausible: str = ""
    mirror_streak: int = 0
    last_poll: float | None = None


def discover_zones(powercap: Path, reader: FileReader = read_sysfs_file) -> list[RaplZone]:
    """List physical RAPL zones under ``powercap``, each once (MMIO duplicates dropped)."""
    found: list[tuple[bool, RaplZone]] = []
    packages: dict[str, int] = {}  # top-level dir index -> socket
    entries = sorted(p for p in powercap.iterdir() if _ZONE_DIR.match(p.name))
    parsed = [(p, _ZONE_DIR.match(p.name)) for p in entries]
    # Pass 1: top-level zones give the socket numbers their sub-zones inherit.
    for path, m in parsed:
        assert m is not None
        if m["sub"] is not None:
            continue
        name = _read_name(path, reader)
        is_mmio = m["mmio"] is not None
        if name.startswith("package-"):
            socket = int(name.split("-", 1)[1])
            packages[f"{m['mmio'] or ''}:{m['top']}"] = socket
            zone = RaplZone(
                path,
                "package",
                socket,
                f"package-{socket}",
                _read_int(path, "max_energy_range_uj", reader),
                _read_tdp(path, reader),
            )
        elif name == "psys":
            zone = RaplZone(path, "psys", None, "psys", _read_int(path, "max_energy_range_uj", reader), None)
        else:
            continue  # unknown top-level zone kinds are not energy we can place
        found.append((is_mmio, zone))
    # Pass 2: sub-zones.
    for path, m in parsed:
        assert m is not None
        if m["sub"] is None:
            continue
        kind = _read_name(path, reader)
        parent = packages.get(f"{m['mmio'] or ''}:{m['top']}")
        if parent is None or kind not in ("dram", "core", "uncore"):
            continue
        zone = RaplZone(
            path,
            kind,
            parent,
            f"{kind}-{parent}",
            _read_int(path, "max_energy_range_uj", reader),
            None,
        )
        found.append((m["mmio"] is not None, zone))
    # An MMIO zone is the same counter as the MSR zone of the same device: keep one.
    msr_devices = {z.device for mmio, z in found if not mmio}
    zones = [z for mmio, z in found if not mmio or z.device not in msr_devices]
    return sorted(zones, key=lambda z: (z.socket if z.socket is not None else 1 << 30, z.kind))


def _read_name(path: Path, reader: FileReader) -> str:
    try:
        return reader(path / "name").strip()
    except OSError:
        return ""


def _read_int(path: Path, name: str, reader: FileReader) -> int:
    try:
        return int(reader(path / name).strip())
    except (OSError, ValueError):
        return 0


def _read_tdp(path: Path, reader: FileReader) -> float | None:
    uw = _read_int(path, "constraint_0_max_power_uw", reader)
    return uw / 1e6 if uw > 0 else None


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
        self.zones = discover_zones(self._powercap, reader)
        if not any(z.kind == "package" for z in self.zones):
            raise SourceUnavailable(f"no RAPL package zones under {self._powercap}; use the estimate source")
        self._state = _State({z.device: _Counter() for z in self.zones})
        self._poll()  # baseline: cumulative energy counts from here

    # -- EnergySource ---------------------------------------------------------
    def read(self) -> Sequence[EnergyReading]:
        """Cumulative joules of each package (cpu) and dram zone since the source was opened."""
        self._poll()
        return [self._reading(z) for z in self.zones if z.kind in ("package", "dram")]

    def read_detail(self) -> Sequence[EnergyReading]:
        """core/uncore (parts of a package) and psys (whole platform): display only, never add
        these to :meth:`read`'s values. Values are as of the last :meth:`read`."""
        return [self._reading(z) for z in self.zones if z.kind not in ("package", "dram")]

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
        return SourceHealth(True, "")

    def close(self) -> None:
        """Nothing is held open between reads."""

    # -- internals ------------------------------------------------------------
    def _reading(self, zone: RaplZone) -> EnergyReading:
        component = _COMPONENT.get(zone.kind, Component.OTHER)
        total = self._state.counters[zone.device].total_uj
        return EnergyReading(component, zone.device, total / 1e6, Method.MEASURED, RAPL_UNCERTAINTY)

    def _poll(self) -> None:
        now = self._clock()
        st = self._state
        interval = now - st.last_poll if st.last_poll is not None else 0.0
        st.last_poll = now
        for zone in self.zones:
            c = st.counters[zone.device]
            c.last_delta_uj = 0
            try:
                raw = int(self._reader(zone.path / "energy_uj").strip())
            except PermissionError:
                st.unreadable.add(zone.device)
                continue
            except (OSError, ValueError) as err:
                # keep the last cumulative value; health says why it stopped moving
                st.errors[zone.device] = str(err)
                continue
            st.unreadable.discard(zone.device)
            st.errors.pop(zone.device, None)
            self._advance(zone, c, raw, now)
        self._check_plausible(interval)

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
        c.total_uj += delta
        c.last_delta_uj = delta
        c.last_raw, c.last_t = raw, now

    def _check_plausible(self, interval_s: float) -> None:
        """Flag package zones that cannot all be real: the same counter value and increment on
        every package for several intervals (multi-die parts where each zone mirrors the
        socket), or more than factor x TDP."""
        packages = [z for z in self.zones if z.kind == "package"]
        deltas = [self._state.counters[z.device].last_delta_uj for z in packages]
        if interval_s <= 0 or any(d <= 0 for d in deltas):
            return  # nothing measured this interval: keep the previous verdict
        raws = [self._state.counters[z.device].last_raw for z in packages]
        mirrored = len(deltas) > 1 and len(set(deltas)) == 1 and len(set(raws)) == 1
        # One equal step can be chance (or a simulator); the same counter value and step
        # several intervals running is one counter seen twice.
        self._state.mirror_streak = self._state.mirror_streak + 1 if mirrored else 0
        if self._state.mirror_streak >= self._settings.mirror_intervals:
            self._state.implausible = (
                f"RAPL package zones {', '.join(z.device for z in packages)} report identical "
                "energy increments: they mirror one counter (multi-die part); count one of them "
                "or set an explicit CPU TDP and use the estimate source"
            )
            return
        tdps = [self._settings.tdp_watts or z.tdp_watts for z in packages]
        known = [t for t in tdps if t is not None]
        if len(known) != len(tdps):
            self._state.implausible = ""
            return
        power = sum(deltas) / 1e6 / interval_s
        bound = self._settings.plausibility_factor * sum(known)
        if power > bound:
            self._state.implausible = (
                f"RAPL package power {power:.0f} W exceeds {self._settings.plausibility_factor:g}x "
                f"TDP ({bound:.0f} W): package zones probably mirror each other; "
                "check the powercap tree or set the CPU TDP override"
            )
        else:
            self._state.implausible = ""
