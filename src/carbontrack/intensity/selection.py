"""The one place that turns settings into a grid-intensity lookup and a zone.

The exporter (``carbontrack exporter``), the tracker (``carbontrack run``, ``track()``)
and anything else that needs a factor per interval call :func:`select`; the flags are
added by :func:`add_arguments` so every command spells them the same way.

What is selected, each from a flag, else its environment variable, else the default:

=====================  ===================================  ==================================
setting                flag / environment                    default
=====================  ===================================  ==================================
provider               ``--intensity-provider`` /            ``static`` (the packaged
                       ``CARBONTRACK_INTENSITY_PROVIDER``    catalogue)
base URL               ``--intensity-base-url`` /            the provider's public API
                       ``CARBONTRACK_INTENSITY_BASE_URL``
WattTime regions       ``--watttime-region ZONE=REGION`` /   none (WattTime needs one per zone,
                       ``WATTTIME_REGIONS`` (comma-separated) or a location below)
WattTime locations     ``--watttime-location ZONE=LAT,LON``  none (region asked once from
                       / ``WATTTIME_LOCATIONS`` (;-separated) ``/v3/region-from-loc``)
GB region              ``--gb-region postcode:RG10`` or      national
                       ``regionid:N`` / ``CARBONTRACK_GB_REGION``
overrides              ``--intensity-overrides FILE`` /      none
                       ``CARBONTRACK_INTENSITY_OVERRIDES``
market-based factors   ``--market-factors FILE`` /           none
                       ``CARBONTRACK_MARKET_FACTORS``
cache TTL, backoff     ``--intensity-cache-ttl S``,          per provider (CACHE_TTL_S), 30 s
                       ``--intensity-backoff S``
=====================  ===================================  ==================================

Credentials come from the environment only (a flag would show in ``ps`` and in the pod
spec): ``ELECTRICITYMAPS_API_TOKEN``; ``WATTTIME_USERNAME`` and ``WATTTIME_PASSWORD``.
The GB API needs none.

The lookup is layered: user overrides first (``OverrideLookup``), then the live provider
behind :class:`~.live.GuardedProvider` (backoff, Retry-After, static fallback), then the
static catalogue. Zones are resolved by ``resolve.resolve_zone`` over the catalogue
(explicit > node label > cloud region > cluster default > error); the *key* that
resolved is what the lookup is asked with, so a live provider sees ``aws:us-east-1``
and can map it to its own zone.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..core.errors import ConfigError
from ..core.types import IntensityLookup
from .catalogue import Catalogue
from .forecast import ForecastSource, ForecastUnusable
from .live import Backoff, GuardedProvider
from .market import MarketFactors
from .overrides import OverrideLookup
from .providers.base import LiveProvider, utc_now
from .providers.http import HttpSettings, JsonHttpClient
from .resolve import Resolution, resolve_zone

PROVIDERS = ("static", "electricitymaps", "watttime", "gb")

ENV_PROVIDER = "CARBONTRACK_INTENSITY_PROVIDER"
ENV_BASE_URL = "CARBONTRACK_INTENSITY_BASE_URL"
ENV_OVERRIDES = "CARBONTRACK_INTENSITY_OVERRIDES"
ENV_MARKET = "CARBONTRACK_MARKET_FACTORS"
ENV_EM_TOKEN = "ELECTRICITYMAPS_API_TOKEN"
ENV_WT_USERNAME = "WATTTIME_USERNAME"
ENV_WT_PASSWORD = "WATTTIME_PASSWORD"
ENV_WT_REGIONS = "WATTTIME_REGIONS"
ENV_WT_LOCATIONS = "WATTTIME_LOCATIONS"
ENV_GB_REGION = "CARBONTRACK_GB_REGION"

# How long one answer is reused, per provider, from how often each publishes:
# Electricity Maps hourly points (10 min: a new hour's point is seen within 10 min of
# publication); WattTime 5-minute MOER points (data_point_period_seconds 300); GB
# half-hour periods (15 min: the current half hour's "actual" replaces its forecast).
CACHE_TTL_S = {"electricitymaps": 600.0, "watttime": 300.0, "gb": 900.0}
# One attempt per interval, bounded, never sleeping inside a collection cycle: retries
# are the backoff's job across intervals (live.py).
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class IntensityConfig:
    """What the user asked for (no credentials: those are read from the environment)."""

    provider: str = "static"
    base_url: str | None = None  # None: the provider's public API
    watttime_regions: tuple[tuple[str, str], ...] = ()  # (zone key, WattTime region)
    watttime_locations: tuple[tuple[str, tuple[float, float]], ...] = ()  # (zone, (lat, lon))
    gb_region: str | None = None  # "postcode:RG10" / "regionid:3"; None: national
    overrides_file: Path | None = None
    market_file: Path | None = None
    cache_ttl_s: float | None = None  # None: CACHE_TTL_S[provider]
    backoff_s: float = 30.0  # first wait after a failure; doubles up to 30 min

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ConfigError(f"unknown intensity provider {self.provider!r}; use one of "
                              f"{', '.join(PROVIDERS)}")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"intensity base URL {self.base_url!r} must start with http:// "
                              "or https://")
        if self.cache_ttl_s is not None and not self.cache_ttl_s >= 0:
            raise ConfigError(f"intensity cache TTL {self.cache_ttl_s!r}: give seconds >= 0")
        if not self.backoff_s > 0:
            raise ConfigError(f"intensity backoff {self.backoff_s!r}: give seconds > 0")
        if self.gb_region is not None:
            from .providers.gb import parse_region
            parse_region(self.gb_region)  # a bad region is an error now, before any work

    @property
    def live(self) -> bool:
        return self.provider != "static"


def parse_regions(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``ZONE=REGION`` items (flags, or the comma-separated WATTTIME_REGIONS)."""
    out = []
    for item in items:
        zone, sep, region = item.partition("=")
        if not sep or not zone.strip() or not region.strip():
            raise ConfigError(f"WattTime region {item!r}: expected ZONE=REGION, e.g. "
                              "US-CAL-CISO=CAISO_NORTH")
        out.append((zone.strip(), region.strip()))
    return tuple(out)


def parse_locations(items: Sequence[str]) -> tuple[tuple[str, tuple[float, float]], ...]:
    """``ZONE=LAT,LON`` items (flags, or the ;-separated WATTTIME_LOCATIONS)."""
    out = []
    for item in items:
        zone, sep, where = item.partition("=")
        lat, comma, lon = where.partition(",")
        try:
            point = (float(lat), float(lon))
        except ValueError:
            point = (math.nan, math.nan)
        if (not sep or not comma or not zone.strip() or not -90 <= point[0] <= 90
                or not -180 <= point[1] <= 180):
            raise ConfigError(f"WattTime location {item!r}: expected ZONE=LAT,LON, e.g. "
                              "US-CAL-CISO=37.77,-122.42")
        out.append((zone.strip(), point))
    return tuple(out)


def config_from(
    env: Mapping[str, str],
    *,
    provider: str | None = None,
    base_url: str | None = None,
    watttime_regions: Sequence[str] = (),
    watttime_locations: Sequence[str] = (),
    gb_region: str | None = None,
    overrides_file: Path | None = None,
    market_file: Path | None = None,
    cache_ttl_s: float | None = None,
    backoff_s: float | None = None,
) -> IntensityConfig:
    """Flags (the keyword arguments) win over the environment; empty means not given."""
    regions = list(watttime_regions) or [
        r for r in env.get(ENV_WT_REGIONS, "").split(",") if r.strip()]
    locations = list(watttime_locations) or [
        r for r in env.get(ENV_WT_LOCATIONS, "").split(";") if r.strip()]
    overrides = overrides_file or (Path(env[ENV_OVERRIDES]) if env.get(ENV_OVERRIDES) else None)
    market = market_file or (Path(env[ENV_MARKET]) if env.get(ENV_MARKET) else None)
    return IntensityConfig(
        provider=(provider or env.get(ENV_PROVIDER, "") or "static").strip().lower(),
        base_url=base_url or env.get(ENV_BASE_URL) or None,
        watttime_regions=parse_regions(regions),
        watttime_locations=parse_locations(locations),
        gb_region=gb_region or env.get(ENV_GB_REGION) or None,
        overrides_file=overrides, market_file=market, cache_ttl_s=cache_ttl_s,
        backoff_s=30.0 if backoff_s is None else backoff_s,
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The selection flags, identical on every command that takes them."""
    g = p.add_argument_group("grid intensity (docs/methodology.md section 5)")
    g.add_argument("--intensity-provider", choices=PROVIDERS, default=None,
                   help=f"static catalogue or a live API (default: ${ENV_PROVIDER}, else "
                        f"static); credentials from ${ENV_EM_TOKEN} or ${ENV_WT_USERNAME}/"
                        f"${ENV_WT_PASSWORD}")
    g.add_argument("--intensity-base-url", default=None, metavar="URL",
                   help=f"the provider's API base URL, for proxies and tests (default: "
                        f"${ENV_BASE_URL}, else the public API)")
    g.add_argument("--watttime-region", action="append", default=[], metavar="ZONE=REGION",
                   help=f"WattTime region for a zone key, repeatable (default: "
                        f"${ENV_WT_REGIONS}, comma-separated)")
    g.add_argument("--watttime-location", action="append", default=[], metavar="ZONE=LAT,LON",
                   help=f"WattTime region for a zone from a location (asked once from "
                        f"/v3/region-from-loc), repeatable (default: ${ENV_WT_LOCATIONS}, "
                        f";-separated)")
    g.add_argument("--gb-region", default=None, metavar="postcode:OUTWARD|regionid:N",
                   help=f"GB provider: regional intensity for an outward postcode (RG10) or a "
                        f"region id 1-17 instead of national (default: ${ENV_GB_REGION})")
    g.add_argument("--intensity-overrides", type=Path, default=None, metavar="FILE",
                   help=f"JSON list of user factors {{zone, g_per_kwh, source}} that replace "
                        f"the lookup's (default: ${ENV_OVERRIDES})")
    g.add_argument("--market-factors", type=Path, default=None, metavar="FILE",
                   help=f"JSON list of market-based instruments per zone (default: "
                        f"${ENV_MARKET})")
    g.add_argument("--intensity-cache-ttl", type=float, default=None, metavar="S",
                   help="seconds one provider answer is reused (default per provider: "
                        + ", ".join(f"{k} {v:g}" for k, v in CACHE_TTL_S.items()) + ")")
    g.add_argument("--intensity-backoff", type=float, default=None, metavar="S",
                   help="first wait after a provider failure, doubling to 30 min (default 30)")


def config_from_args(a: argparse.Namespace, env: Mapping[str, str]) -> IntensityConfig:
    return config_from(
        env, provider=a.intensity_provider, base_url=a.intensity_base_url,
        watttime_regions=a.watttime_region, watttime_locations=a.watttime_location,
        gb_region=a.gb_region, overrides_file=a.intensity_overrides,
        market_file=a.market_factors, cache_ttl_s=a.intensity_cache_ttl,
        backoff_s=a.intensity_backoff,
    )


def _required(env: Mapping[str, str], name: str, provider: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"intensity provider {provider} needs ${name} (from a Secret in "
                          "Kubernetes: exporter.credentials in the chart)")
    return value


@dataclass
class Selection:
    """The lookup every interval asks, the catalogue zones resolve against, the live
    provider's guard (None for ``static``) and the market-based instruments (if any)."""

    config: IntensityConfig
    catalogue: Catalogue
    lookup: IntensityLookup
    live: GuardedProvider | None = None
    market: MarketFactors | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def provider(self) -> str:
        return self.config.provider

    def forecaster(self) -> ForecastSource:
        """The live provider as a forecast source; ForecastUnusable (the visible reason)
        when the selection has none (the static catalogue publishes no forecast)."""
        if self.live is None:
            raise ForecastUnusable("no forecast: the intensity provider is static (select "
                                   "electricitymaps, watttime or gb with --intensity-provider)")
        return self.live.provider

    def resolve(
        self,
        *,
        explicit: str | None = None,
        node_labels: Mapping[str, str] | None = None,
        provider_id: str | None = None,
        cluster_default: str | None = None,
        subject: str = "this machine",
    ) -> Resolution:
        """``resolve.resolve_zone`` over this selection's catalogue (the only rules)."""
        return resolve_zone(self.catalogue, explicit=explicit, node_labels=node_labels,
                            provider_id=provider_id, cluster_default=cluster_default,
                            subject=subject)


def _provider(config: IntensityConfig, catalogue: Catalogue, env: Mapping[str, str],
              clock: Callable[[], float], now: Callable[[], datetime]) -> LiveProvider:
    from .providers import electricitymaps, gb, watttime

    def client(default_url: str) -> JsonHttpClient:
        # the cache ages on the same clock as the backoff
        return JsonHttpClient(config.base_url or default_url, _http(config), clock=clock)

    if config.provider == "electricitymaps":
        token = _required(env, ENV_EM_TOKEN, config.provider)
        return electricitymaps.ElectricityMapsProvider(
            catalogue, token, client=client(electricitymaps.DEFAULT_BASE_URL), now=now)
    if config.provider == "watttime":
        user = _required(env, ENV_WT_USERNAME, config.provider)
        password = _required(env, ENV_WT_PASSWORD, config.provider)
        if not config.watttime_regions and not config.watttime_locations:
            raise ConfigError("intensity provider watttime needs a WattTime region per zone: "
                              f"--watttime-region ZONE=REGION or ${ENV_WT_REGIONS} (e.g. "
                              "US-CAL-CISO=CAISO_NORTH), or --watttime-location ZONE=LAT,LON")
        return watttime.WattTimeProvider(catalogue, user, password, dict(config.watttime_regions),
                                         locations=dict(config.watttime_locations),
                                         client=client(watttime.DEFAULT_BASE_URL), now=now)
    return gb.GbCarbonIntensityProvider(catalogue, client=client(gb.DEFAULT_BASE_URL), now=now,
                                        region=config.gb_region)


def _http(config: IntensityConfig) -> HttpSettings:
    ttl = CACHE_TTL_S[config.provider] if config.cache_ttl_s is None else config.cache_ttl_s
    # retries 0 and retry_after_max_s 0: a failed or rate-limited request returns at once
    # and GuardedProvider decides when to ask again (Retry-After included)
    return HttpSettings(timeout_s=TIMEOUT_S, retries=0, retry_after_max_s=0.0, cache_ttl_s=ttl)


def market_factors(config: IntensityConfig) -> MarketFactors | None:
    """The market-based instruments the config names (``--market-factors``), if any: for the
    tracker (through :func:`select`) and for ``carbontrack report``."""
    return MarketFactors.from_file(config.market_file) if config.market_file else None


def select(
    config: IntensityConfig,
    env: Mapping[str, str] | None = None,
    *,
    catalogue: Catalogue | None = None,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = utc_now,
    draw: Callable[[], float] = random.random,
) -> Selection:
    """Build the lookup for ``config``. Missing credentials, files or regions are a
    ConfigError now, before any work. ``clock`` (monotonic: cache and backoff), ``now``
    (wall time: which provider endpoint covers an interval) and ``draw`` (jitter) are
    injected by tests."""
    env = os.environ if env is None else env
    cat = catalogue or Catalogue.load()
    lookup: IntensityLookup = cat
    guard = None
    if config.live:
        provider = _provider(config, cat, env, clock, now)
        guard = GuardedProvider(provider, backoff=Backoff(first_s=config.backoff_s),
                                clock=clock, draw=draw)
        lookup = guard
    if config.overrides_file is not None:
        lookup = OverrideLookup.from_file(lookup, config.overrides_file, cat)
    return Selection(config, cat, lookup, guard, market_factors(config))
