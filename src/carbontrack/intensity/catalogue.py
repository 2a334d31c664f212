"""The packaged static grid-intensity catalogue.

Data files live in ``carbontrack/intensity/data`` and are produced by
``scripts/build_catalogue.py`` (never edited by hand). ``Catalogue.load()`` reads
the two small JSON files eagerly and the 41k-row ZIP table only when a ZIP code is
first looked up, which keeps start-up well under the 50 ms budget.

Keys accepted by :meth:`Catalogue.get` (tried in this order):

1. ``provider:region`` - ``aws:eu-west-1``, ``gcp:europe-west1``, ``azure:westeurope``
   (``gce``/``google`` mean ``gcp``); also ``egrid:CAMX`` and ``zip:94103``;
2. a US ZIP code - ``94103`` or ``94103-1234`` (EPA Power Profiler, predominant utility);
3. a zone key - Electricity Maps style ``DE``, ``US-CAL-CISO``, ``AU-NSW``, ``CA-ON``,
   eGRID subregions as ``US-EGRID-CAMX``, US states as ``US-CA``;
4. an alias - ISO 3166 alpha-3 (``DEU``) or a bare eGRID acronym (``CAMX``).

Anything else raises :class:`UnknownZoneError` naming what was tried.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, UnknownZoneError
from ..core.types import Accounting, Averaging, Basis, IntensityFactor, Lifecycle

DATA_DIR = Path(__file__).resolve().parent / "data"

PROVIDER_ALIASES = {"aws": "aws", "gcp": "gcp", "gce": "gcp", "google": "gcp", "azure": "azure"}

TRIED = (
    "zone keys (Electricity Maps style: DE, US-CAL-CISO, AU-NSW), ISO alpha-2/alpha-3 "
    "country codes, eGRID subregions (CAMX or US-EGRID-CAMX), US ZIP codes and "
    "provider:region (aws:eu-west-1, gcp:europe-west1, azure:westeurope)"
)


@dataclass(frozen=True)
class Dataset:
    """Provenance shared by every factor taken from one source table."""

    id: str
    source: str
    licence: str
    basis: Basis
    notes: str


@dataclass(frozen=True)
class ZoneEntry:
    """One grid zone and all factors known for it, the primary (used) one first."""

    key: str
    name: str
    kind: str  # country | subnational | egrid
    factors: tuple[IntensityFactor, ...]
    datasets: tuple[str, ...]  # dataset id per factor, same order

    @property
    def factor(self) -> IntensityFactor:
        return self.factors[0]


@dataclass(frozen=True)
class CloudRegion:
    """A cloud region, the grid zone it draws from, and the provider's own figures."""

    provider: str
    region: str
    location: str
    zone: str  # catalogue zone whose factor is used (eGRID subregion for US regions)
    em_zone: str  # Electricity Maps zone, for live providers ("" when unknown)
    egrid_zip: str  # ZIP used to pick the eGRID subregion ("" outside the US)
    provider_factors: tuple[IntensityFactor, ...]  # Google per-region figures, CCF, ...
    pue: tuple[float, str] | None  # region-specific PUE and its source, when published

    @property
    def key(self) -> str:
        return f"{self.provider}:{self.region}"


@dataclass(frozen=True)
class Lookup:
    """What :meth:`Catalogue.lookup` found: the factor and how the key was read."""

    query: str
    zone: ZoneEntry
    via: str  # zone | alias | zip | cloud
    cloud: CloudRegion | None = None

    @property
    def factor(self) -> IntensityFactor:
        return self.zone.factor


def _basis(raw: Sequence[str]) -> Basis:
    return Basis(Averaging(raw[0]), Lifecycle(raw[1]), Accounting(raw[2]))


class ZipTable:
    """EPA's ZIP -> eGRID subregion table, searched in place.

    The build writes fixed-width sorted records (``"94103,CAMX\n"``), so a lookup is
    a binary search over the decompressed text: no 41k-entry dict to build.
    """

    def __init__(self, text: str) -> None:
        header, _, body = text.partition("\n")
        if header != "zip,subregion" or not body:
            raise ConfigError("ZIP table is damaged (bad header); rebuild the catalogue")
        self._width = body.index("\n") + 1
        if len(body) % self._width:
            raise ConfigError("ZIP table is damaged (ragged records); rebuild the catalogue")
        self._body = body
        self._count = len(body) // self._width

    def __len__(self) -> int:
        return self._count

    def get(self, zip_code: str) -> str | None:
        lo, hi, w, body = 0, self._count, self._width, self._body
        while lo < hi:
            mid = (lo + hi) // 2
            key = body[mid * w:mid * w + 5]
            if key < zip_code:
                lo = mid + 1
            elif key > zip_code:
                hi = mid
            else:
                return body[mid * w + 6:(mid + 1) * w - 1]
        return None


def _read_zip_table(path: Path) -> ZipTable:
    return ZipTable(gzip.decompress(path.read_bytes()).decode("ascii"))


class Catalogue:
    """Static catalogue; also an ``IntensityLookup`` (same factor for every interval)."""

    def __init__(
        self,
        data: Mapping[str, Any],
        electricitymaps: Mapping[str, Any],
        zip_table: Callable[[], ZipTable],
    ) -> None:
        self.version: str = data["version"]
        self._datasets = {
            ds_id: Dataset(ds_id, d["source"], d["licence"], _basis(d["basis"]), d["notes"])
            for ds_id, d in data["datasets"].items()
        }
        self._priority = {ds: i for i, ds in enumerate(data["dataset_priority"])}
        self._raw_zones: Mapping[str, Any] = data["zones"]
        self._em_id: str = electricitymaps["dataset_id"]
        self._em_zones: Mapping[str, Any] = electricitymaps["zones"]
        self._aliases: Mapping[str, str] = data["aliases"]
        self._raw_cloud: Mapping[str, Any] = data["cloud_regions"]
        self._pue_sources: Mapping[str, str] = data["pue_sources"]
        self._provider_pue: Mapping[str, Sequence[Any]] = data["provider_pue"]
        self.rejected: Sequence[Mapping[str, str]] = data["rejected"]
        self._zip_loader = zip_table
        self._zips: ZipTable | None = None
        self._zone_cache: dict[str, ZoneEntry] = {}
        self._cloud_cache: dict[str, CloudRegion] = {}

    @classmethod
    def load(cls, data_dir: Path | None = None) -> Catalogue:
        """Load the packaged catalogue (or one built into ``data_dir`` by the build script)."""
        root = DATA_DIR if data_dir is None else data_dir
        try:
            data = json.loads((root / "catalogue.json").read_bytes())
            em = json.loads((root / "electricitymaps.json").read_bytes())
        except FileNotFoundError as err:
            raise ConfigError(
                f"catalogue data missing ({err.filename}); rebuild it with "
                "`python scripts/build_catalogue.py` or reinstall carbontrack"
            ) from None
        zip_path = root / "zip_egrid_2023.csv.gz"
        return cls(data, em, lambda: _read_zip_table(zip_path))

    # --- factors -----------------------------------------------------------------

    def _factor(self, zone: str, ds_id: str, value: float, year: int | None) -> IntensityFactor:
        ds = self._datasets[ds_id]
        return IntensityFactor(
            zone=zone, g_per_kwh=float(value), source=f"{ds_id}: {ds.source}", year=year,
            licence=ds.licence, basis=ds.basis,
        )

    def _zone(self, key: str) -> ZoneEntry | None:
        cached = self._zone_cache.get(key)
        if cached is not None:
            return cached
        raw = self._raw_zones.get(key)
        em = self._em_zones.get(key)
        if raw is None and em is None:
            return None
        rows: list[tuple[str, float, int | None]] = []
        if raw is not None:
            rows += [(ds, value, year) for ds, value, year in raw["factors"]]
        if em is not None:
            year_s = max(em["years"])
            rows.append((self._em_id, em["years"][year_s], int(year_s)))
        rows.sort(key=lambda r: self._priority.get(r[0], len(self._priority)))
        if raw is not None:
            name, kind = raw["name"], raw["kind"]
        else:
            assert em is not None  # one of the two exists (checked above)
            name, kind = em["name"], ("subnational" if "-" in key else "country")
        entry = ZoneEntry(
            key=key, name=name, kind=kind,
            factors=tuple(self._factor(key, ds, v, y) for ds, v, y in rows),
            datasets=tuple(r[0] for r in rows),
        )
        self._zone_cache[key] = entry
        return entry

    def _cloud(self, key: str) -> CloudRegion | None:
        cached = self._cloud_cache.get(key)
        if cached is not None:
            return cached
        raw = self._raw_cloud.get(key)
        if raw is None:
            return None
        provider, region = key.split(":", 1)
        pue = raw.get("pue")
        entry = CloudRegion(
            provider=provider, region=region, location=raw["location"], zone=raw["zone"],
            em_zone=raw["em_zone"], egrid_zip=raw.get("egrid_zip", ""),
            provider_factors=tuple(self._factor(key, ds, v, y) for ds, v, y in raw["factors"]),
            pue=(float(pue[0]), self._pue_sources[pue[1]]) if pue else None,
        )
        self._cloud_cache[key] = entry
        return entry

    def _zip_subregion(self, zip_code: str) -> str | None:
        if self._zips is None:
            self._zips = self._zip_loader()
        return self._zips.get(zip_code)

    # --- lookups -----------------------------------------------------------------

    def lookup(self, key: str) -> Lookup:
        """Resolve ``key`` (see module docstring); raises :class:`UnknownZoneError`."""
        query = key.strip()
        if not query:
            raise UnknownZoneError(f"empty grid zone key; expected one of: {TRIED}")
        prefix, sep, rest = query.partition(":")
        if sep:
            return self._lookup_prefixed(query, prefix.strip().lower(), rest.strip())
        digits = query.split("-", 1)[0]
        if len(digits) == 5 and digits.isdigit():
            return self._lookup_zip(query, digits)
        upper = query.upper()
        zone = self._zone(upper)
        if zone is not None:
            return Lookup(query, zone, "zone")
        alias = self._aliases.get(upper)
        if alias is not None:
            target = self._zone(alias)
            if target is not None:
                return Lookup(query, target, "alias")
        raise self._unknown(query)

    def _lookup_prefixed(self, query: str, prefix: str, rest: str) -> Lookup:
        if prefix == "zip":
            return self._lookup_zip(query, rest.split("-", 1)[0])
        if prefix == "egrid":
            zone = self._zone(f"US-EGRID-{rest.upper()}")
            if zone is None:
                raise self._unknown(query)
            return Lookup(query, zone, "alias")
        provider = PROVIDER_ALIASES.get(prefix)
        if provider is None:
            raise UnknownZoneError(
                f"unknown cloud provider {prefix!r} in {query!r}; known: aws, gcp, azure "
                "(run `carbontrack zones --search aws:` to list regions)"
            )
        region = rest.lower().replace(" ", "")
        cloud = self._cloud(f"{provider}:{region}")
        if cloud is None:
            import difflib  # only on the error path: keeps import time down

            near = difflib.get_close_matches(
                f"{provider}:{region}", list(self._raw_cloud), n=3, cutoff=0.75
            )
            hint = f" Did you mean {', '.join(near)}?" if near else ""
            raise UnknownZoneError(
                f"unknown {provider} region {region!r} (tried {provider}:{region} in "
                f"{len(self._raw_cloud)} catalogued cloud regions).{hint} Run "
                f"`carbontrack zones --search {provider}:` to list them, or set the grid zone "
                "explicitly"
            )
        zone = self._zone(cloud.zone)
        if zone is None:  # the build refuses this, so only a corrupted data dir gets here
            raise UnknownZoneError(f"{query!r} maps to zone {cloud.zone!r}, which has no factor")
        return Lookup(query, zone, "cloud", cloud)

    def _lookup_zip(self, query: str, zip_code: str) -> Lookup:
        if not (len(zip_code) == 5 and zip_code.isdigit()):
            raise UnknownZoneError(f"{query!r} is not a 5-digit US ZIP code")
        subregion = self._zip_subregion(zip_code)
        zone = self._zone(f"US-EGRID-{subregion}") if subregion else None
        if zone is None:
            raise UnknownZoneError(
                f"US ZIP code {zip_code} is not in EPA's eGRID2023 ZIP table; use the eGRID "
                "subregion (e.g. CAMX) or run `carbontrack zones --search egrid`"
            )
        return Lookup(query, zone, "zip")

    def _unknown(self, query: str) -> UnknownZoneError:
        import difflib

        candidates = [*self._raw_zones, *self._em_zones, *self._aliases]
        near = difflib.get_close_matches(query.upper(), candidates, n=3, cutoff=0.75)
        hint = f" Did you mean {', '.join(near)}?" if near else ""
        return UnknownZoneError(
            f"unknown grid zone {query!r}: tried {TRIED}.{hint} "
            f"Run `carbontrack zones --search {query}` to find the key"
        )

    def get(self, key: str) -> IntensityFactor:
        """The primary location-based factor for ``key``."""
        return self.lookup(key).factor

    def factors(self, key: str) -> tuple[IntensityFactor, ...]:
        """All factors for ``key``: the primary first, then alternatives and, for a
        cloud region, the provider's own figures (Google per-region, CFE-adjusted, CCF)."""
        found = self.lookup(key)
        extra = found.cloud.provider_factors if found.cloud else ()
        return (*found.zone.factors, *extra)

    def intensity(self, zone: str, start: datetime, end: datetime) -> IntensityFactor:
        """``IntensityLookup``: a static catalogue gives the same factor for any interval."""
        if end < start:
            raise ConfigError(f"interval end {end.isoformat()} is before start {start.isoformat()}")
        return self.get(zone)

    # --- listings ----------------------------------------------------------------

    def zones(self) -> list[ZoneEntry]:
        """Every zone with at least one factor, sorted by key."""
        keys = sorted({*self._raw_zones, *self._em_zones})
        return [z for z in (self._zone(k) for k in keys) if z is not None]

    def aliases_of(self, key: str) -> list[str]:
        return sorted(a for a, target in self._aliases.items() if target == key)

    def cloud_regions(self) -> list[CloudRegion]:
        return [c for c in (self._cloud(k) for k in sorted(self._raw_cloud)) if c is not None]

    def cloud_region(self, provider: str, region: str) -> CloudRegion:
        found = self.lookup(f"{provider}:{region}")
        assert found.cloud is not None  # a provider:region key always yields a cloud region
        return found.cloud

    def datasets(self) -> list[Dataset]:
        return [self._datasets[k] for k in sorted(self._datasets)]

    def provider_pue(self, provider: str, region: str | None = None) -> tuple[float, str]:
        """PUE for a provider's region: the region's published figure when there is one,
        else the provider default. ``provider`` may also be ``on-premise`` or ``unknown``."""
        name = PROVIDER_ALIASES.get(provider.strip().lower(), provider.strip().lower())
        if name not in self._provider_pue:
            raise ConfigError(
                f"no PUE default for provider {provider!r}; known: "
                f"{', '.join(sorted(self._provider_pue))} (or pass an explicit PUE)"
            )
        if region:
            cloud = self._cloud(f"{name}:{region.strip().lower().replace(' ', '')}")
            if cloud is not None and cloud.pue is not None:
                return cloud.pue
        value, src = self._provider_pue[name]
        return float(value), f"{self._pue_sources[src]} ({name} default)"

    def notice(self) -> str:
        """Attribution text shipped with the data (NOTICE.md)."""
        return (DATA_DIR / "NOTICE.md").read_text(encoding="utf-8")
