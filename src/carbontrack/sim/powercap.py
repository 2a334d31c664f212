"""A fake Linux powercap (RAPL) tree: ``<sysfs_root>/class/powercap``.

Mirrors what the kernel's intel_rapl driver exposes: one ``intel-rapl:N`` zone
per package (``name`` = ``package-N``), sub-zones ``intel-rapl:N:M`` named
``core``/``uncore``/``dram``, optional ``psys``, and ``intel-rapl-mmio:N`` zones
that report the *same* package energy again (the MMIO interface of the same
counters). Files hold microjoules; ``energy_uj`` wraps at ``max_energy_range_uj``.

Unreadable zones are made with ``chmod 000``, like the kernel's root-only
``0400`` after CVE-2020-8694: a process without CAP_DAC_OVERRIDE (a non-root
user, or root with that capability dropped) gets a real EACCES.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._atomic import write_atomic

# The range most Intel server parts report (about 262 kJ).
DEFAULT_MAX_RANGE_UJ = 262_143_328_850

_SUBZONE_INDEX = {"core": 0, "uncore": 1, "dram": 2}


@dataclass
class _Zone:
    path: Path
    max_range_uj: int
    energy_uj: int
    mirrors: list[Path]  # mmio duplicates that always show the same counter


class FakePowercap:
    """Writer for a fake powercap tree. Zone ids are the directory names (``intel-rapl:0:2``)."""

    def __init__(self, sysfs_root: Path) -> None:
        self.root = Path(sysfs_root) / "class" / "powercap"
        self.root.mkdir(parents=True, exist_ok=True)
        self._zones: dict[str, _Zone] = {}

    # -- building -----------------------------------------------------------
    def add_package(
        self,
        socket: int,
        *,
        max_range_uj: int = DEFAULT_MAX_RANGE_UJ,
        dram: bool = True,
        core: bool = False,
        uncore: bool = False,
        mmio_duplicate: bool = False,
        tdp_watts: float | None = None,
        energy_uj: int = 0,
    ) -> str:
        """Add package ``socket`` (and the chosen sub-zones); return the package zone id."""
        pkg = f"intel-rapl:{socket}"
        self._add_zone(pkg, f"package-{socket}", max_range_uj, energy_uj, tdp_watts)
        for kind, wanted in (("core", core), ("uncore", uncore), ("dram", dram)):
            if wanted:
                self._add_zone(self.sub_zone(socket, kind), kind, max_range_uj, 0, None)
        if mmio_duplicate:
            mmio = self.root / f"intel-rapl-mmio:{socket}"
            self._write_zone_files(mmio, f"package-{socket}", max_range_uj, energy_uj, tdp_watts)
            self._zones[pkg].mirrors.append(mmio)
        return pkg

    def add_die(
        self,
        socket: int,
        die: int,
        *,
        index: int,
        dram: bool = True,
        max_range_uj: int = DEFAULT_MAX_RANGE_UJ,
        tdp_watts: float | None = None,
        energy_uj: int = 0,
    ) -> str:
        """Add one die of a multi-die package as the kernel names it: zone
        ``intel-rapl:<index in hex>`` (powercap_sys.c ``dev_set_name("%s:%x")``) named
        ``package-<socket>-die-<die>`` (intel_rapl_common.c ``rapl_add_package_cpuslocked``),
        with its own counter and, optionally, its dram as sub-zone ``:0``. Return the zone id."""
        zid = f"intel-rapl:{index:x}"
        self._add_zone(zid, f"package-{socket}-die-{die}", max_range_uj, energy_uj, tdp_watts)
        if dram:
            self._add_zone(f"{zid}:0", "dram", max_range_uj, 0, None)
        return zid

    def add_psys(self, index: int = 1, *, max_range_uj: int = DEFAULT_MAX_RANGE_UJ, name: str = "psys") -> str:
        """Add a platform zone as ``intel-rapl:<index in hex>`` (laptops have one ``psys``;
        TPMI servers name the later packages' ``psys-N``, intel_rapl_common.c ``rapl_init_domains``)."""
        zid = f"intel-rapl:{index:x}"
        self._add_zone(zid, name, max_range_uj, 0, None)
        return zid

    @staticmethod
    def package_zone(socket: int) -> str:
        return f"intel-rapl:{socket}"

    @staticmethod
    def sub_zone(socket: int, kind: str) -> str:
        """Zone id of sub-zone ``kind`` (core, uncore, dram) of package ``socket``."""
        return f"intel-rapl:{socket}:{_SUBZONE_INDEX[kind]}"

    # -- driving ------------------------------------------------------------
    def advance(self, zone: str, joules: float) -> int:
        """Add ``joules`` to a zone's counter, wrapping like the hardware; return the new value."""
        z = self._zone(zone)
        return self.set_energy_uj(zone, (z.energy_uj + round(joules * 1e6)) % z.max_range_uj)

    def set_energy_uj(self, zone: str, energy_uj: int) -> int:
        """Set the raw counter (a reset is ``set_energy_uj(zone, small)``)."""
        z = self._zone(zone)
        z.energy_uj = energy_uj
        for path in [z.path, *z.mirrors]:
            write_atomic(path / "energy_uj", f"{energy_uj}\n")
        return energy_uj

    def energy_uj(self, zone: str) -> int:
        return self._zone(zone).energy_uj

    def set_unreadable(self, zone: str, unreadable: bool = True) -> None:
        """Make ``energy_uj`` root-only-like (mode 000) or readable again (0444)."""
        z = self._zone(zone)
        for path in [z.path, *z.mirrors]:
            (path / "energy_uj").chmod(0o000 if unreadable else 0o444)

    def remove(self, zone: str) -> None:
        """Remove a zone's energy file (a driver unload mid-run)."""
        (self._zone(zone).path / "energy_uj").unlink()

    # -- internals ----------------------------------------------------------
    def _zone(self, zone: str) -> _Zone:
        try:
            return self._zones[zone]
        except KeyError:
            raise KeyError(f"no fake powercap zone {zone!r}; have {sorted(self._zones)}") from None

    def _add_zone(
        self, zid: str, name: str, max_range_uj: int, energy_uj: int, tdp_watts: float | None
    ) -> None:
        path = self.root / zid
        self._write_zone_files(path, name, max_range_uj, energy_uj, tdp_watts)
        self._zones[zid] = _Zone(path, max_range_uj, energy_uj, [])

    @staticmethod
    def _write_zone_files(
        path: Path, name: str, max_range_uj: int, energy_uj: int, tdp_watts: float | None
    ) -> None:
        path.mkdir(parents=True, exist_ok=True)
        write_atomic(path / "name", f"{name}\n")
        write_atomic(path / "max_energy_range_uj", f"{max_range_uj}\n")
        write_atomic(path / "energy_uj", f"{energy_uj}\n", mode=0o444)
        write_atomic(path / "enabled", "1\n")
        if tdp_watts is not None:
            # constraint 0 is the long-term limit (PL1), which the kernel sets to TDP by default
            write_atomic(path / "constraint_0_name", "long_term\n")
            write_atomic(path / "constraint_0_max_power_uw", f"{round(tdp_watts * 1e6)}\n")
