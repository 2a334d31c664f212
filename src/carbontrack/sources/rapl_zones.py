"""Which RAPL zones a powercap tree holds, read the way the kernel names them.

What the kernel produces (torvalds/linux; function names, since line numbers move):

* ``drivers/powercap/powercap_sys.c`` ``powercap_register_zone()`` (commit
  9938b04472d5c59f8bd8152a548533a8599596a2): a zone directory is
  ``dev_set_name("%s:%x", parent, id)`` — the index is *hex*, so the eleventh top-level
  zone is ``intel-rapl:a`` (prometheus/procfs ``testdata/fixtures.ttar`` holds one) and
  sub-zones are ``intel-rapl:0:a``.
* ``drivers/powercap/intel_rapl_common.c`` ``rapl_add_package()`` (read at commit
  0b500f5b168c528b943f22db85cc345e5492b882; ``rapl_add_package_cpuslocked()`` in later
  kernels): package zones are ``package-%d``, or ``package-%d-die-%d`` when
  ``topology_max_die(s)_per_package() > 1`` (Intel Cascade Lake-AP: one counter *per die*);
  later kernels keep AMD package-scoped (``rapl_msrs_are_pkg_scope()``).
  ``rapl_init_domains()``: sub-domains ``core``, ``uncore``, ``dram``; the platform
  domain is ``psys``, or ``psys-%d`` for packages after the first (TPMI).
  ``rapl_package_register_powercap()``: core/uncore/dram are children of the package
  zone; psys is registered with no parent, i.e. a top-level zone.
* ``intel_rapl_msr.c`` and ``intel_rapl_tpmi.c`` both register control type
  ``intel-rapl``; ``intel_rapl_mmio`` (processor_thermal) registers ``intel-rapl-mmio``,
  whose ``package-N`` zone is the same counter read through MMIO.

Anything else under ``class/powercap`` that looks like a RAPL zone but does not parse is
skipped and reported once (``Discovery.skipped``): a zone we cannot place is not energy
we may add.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

FileReader = Callable[[Path], str]

# Control types that carry RAPL zones; the zone index path is hex per level.
# Patterns are used with fullmatch and ASCII digits only (int() of a longer decimal
# string raises past sys.int_info.str_digits_check_threshold).
_ZONE_DIR = re.compile(r"(?P<ctl>intel-rapl(?:-mmio)?):(?P<index>.*)", re.DOTALL)
_HEX_LEVELS = re.compile(r"[0-9a-f]{1,8}(?::[0-9a-f]{1,8})?")
_PACKAGE_NAME = re.compile(r"package-(?P<socket>[0-9]{1,9})(?:-die-(?P<die>[0-9]{1,9}))?")
_PSYS_NAME = re.compile(r"psys(?:-(?P<socket>[0-9]{1,9}))?")
_SUB_KINDS = ("core", "uncore", "dram")


@dataclass(frozen=True)
class RaplZone:
    """One RAPL counter. Several zones can make up one reported device: the dies of a
    package (``package-0-die-0`` + ``package-0-die-1`` -> ``package-0``) and their drams."""

    path: Path
    kind: str  # package | dram | core | uncore | psys
    socket: int | None  # None for the first psys
    device: str  # what is reported: package-0, dram-0, core-0, uncore-0, psys, psys-1
    max_range_uj: int  # 0 when the kernel does not say
    tdp_watts: float | None
    die: int | None = None  # set on package-N-die-M zones and their sub-zones
    key: str = ""  # the zone's own name (directory), unique per counter


@dataclass
class Discovery:
    zones: list[RaplZone] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "dir (why)", one per zone


@dataclass(frozen=True)
class _Parent:
    socket: int
    die: int | None


def discover_zones(powercap: Path, reader: FileReader) -> Discovery:
    """List the RAPL counters under ``powercap``, each once (MMIO duplicates dropped)."""
    out = Discovery()
    try:
        names = sorted(p.name for p in powercap.iterdir())
    except OSError as err:
        out.skipped.append(f"{powercap} ({err.strerror or err})")
        return out
    tops: list[tuple[str, list[int], Path]] = []
    subs: list[tuple[str, list[int], Path]] = []
    for name in names:
        m = _ZONE_DIR.fullmatch(name)
        if m is None:
            continue  # the control-type directories themselves, other drivers
        if not _HEX_LEVELS.fullmatch(m["index"]):
            out.skipped.append(f"{name} (zone index is not the kernel's hex form)")
            continue
        levels = [int(part, 16) for part in m["index"].split(":")]
        (tops if len(levels) == 1 else subs).append((m["ctl"], levels, powercap / name))
    parents: dict[tuple[str, int], _Parent] = {}
    found: list[tuple[bool, RaplZone]] = []
    for ctl, levels, path in tops:
        zone = _top_zone(path, reader, out.skipped)
        if zone is None:
            continue
        if zone.kind == "package":
            assert zone.socket is not None
            parents[(ctl, levels[0])] = _Parent(zone.socket, zone.die)
        found.append((ctl.endswith("-mmio"), zone))
    for ctl, levels, path in subs:
        parent = parents.get((ctl, levels[0]))
        zone = _sub_zone(path, parent, reader, out.skipped)
        if zone is not None:
            found.append((ctl.endswith("-mmio"), zone))
    # An MMIO zone is the MSR zone's counter again: keep it only where no MSR zone exists.
    msr = {(z.device, z.die) for mmio, z in found if not mmio}
    out.zones = sorted(
        (z for mmio, z in found if not mmio or (z.device, z.die) not in msr),
        key=lambda z: (z.socket if z.socket is not None else -1, z.kind, z.die or 0, z.key),
    )
    return out


def _top_zone(path: Path, reader: FileReader, skipped: list[str]) -> RaplZone | None:
    name = read_text(path / "name", reader)
    pkg = _PACKAGE_NAME.fullmatch(name)
    if pkg is not None:
        socket = int(pkg["socket"])
        die = int(pkg["die"]) if pkg["die"] is not None else None
        return RaplZone(
            path, "package", socket, f"package-{socket}", read_int(path / "max_energy_range_uj", reader),
            _read_tdp(path, reader), die, path.name,
        )
    psys = _PSYS_NAME.fullmatch(name)
    if psys is not None:
        psys_socket = int(psys["socket"]) if psys["socket"] is not None else None
        return RaplZone(
            path, "psys", psys_socket, name, read_int(path / "max_energy_range_uj", reader), None, None, path.name
        )
    skipped.append(f"{path.name} (name {name!r} is no RAPL zone name the kernel writes)")
    return None


def _sub_zone(path: Path, parent: _Parent | None, reader: FileReader, skipped: list[str]) -> RaplZone | None:
    kind = read_text(path / "name", reader)
    if parent is None:
        skipped.append(f"{path.name} (no package zone above it)")
        return None
    if kind not in _SUB_KINDS:
        skipped.append(f"{path.name} (name {kind!r} is no RAPL sub-zone name the kernel writes)")
        return None
    return RaplZone(
        path, kind, parent.socket, f"{kind}-{parent.socket}", read_int(path / "max_energy_range_uj", reader),
        None, parent.die, path.name,
    )


def read_text(path: Path, reader: FileReader) -> str:
    """A sysfs attribute, stripped; "" when it cannot be read or decoded."""
    try:
        return reader(path).strip()
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return ""


_UINT = re.compile(r"[0-9]{1,20}")  # a u64 in decimal, as the kernel prints it


def parse_uint(text: str) -> int | None:
    """A sysfs u64, or None: int() alone would also take "-5", "1_000" or " 7 "."""
    return int(text) if _UINT.fullmatch(text) else None


def read_int(path: Path, reader: FileReader) -> int:
    """A non-negative integer attribute; 0 when absent or not a number."""
    return parse_uint(read_text(path, reader)) or 0


def _read_tdp(path: Path, reader: FileReader) -> float | None:
    uw = read_int(path / "constraint_0_max_power_uw", reader)
    return uw / 1e6 if uw > 0 else None
