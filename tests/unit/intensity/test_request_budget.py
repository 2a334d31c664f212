"""Requests one node sends a provider per day (the budget in docs/methodology.md section 5):
a simulated day of 5 s intervals (the exporter's default; unaligned with the providers'
periods, the worse case) through ``selection.select`` against a real local HTTP server
whose answers follow the query, every interval answered live."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fakeapi_intensity import FakeApi, Reply

from carbontrack.intensity.catalogue import Catalogue
from carbontrack.intensity.selection import IntensityConfig, select
from carbontrack.intensity.series import parse_time

DAY0 = datetime(2025, 6, 1, tzinfo=timezone.utc)
INTERVAL_S = 5.0
OFFSET_S = 2.5  # intervals straddle every provider period boundary


class SimClock:
    def __init__(self) -> None:
        self.t = 0.0

    def mono(self) -> float:
        return self.t

    def now(self) -> datetime:
        return DAY0 + timedelta(seconds=self.t)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def serve(api: FakeApi, provider: str, clock: SimClock) -> None:
    if provider == "electricitymaps":
        def history(path: str, query: dict[str, str]) -> dict[str, Any]:
            top = clock.now().replace(minute=0, second=0, microsecond=0)
            hours = [top - timedelta(hours=h) for h in range(24)]
            return {"zone": "DE", "history": [
                {"zone": "DE", "carbonIntensity": 100.0 + h.hour, "datetime": iso(h),
                 "emissionFactorType": "lifecycle"} for h in hours]}
        api.add("/carbon-intensity/history", Reply(body=history))
    elif provider == "watttime":
        def historical(path: str, query: dict[str, str]) -> dict[str, Any]:
            t, end = parse_time(query["start"]), parse_time(query["end"])
            data = []
            while t < end:
                data.append({"point_time": iso(t), "value": 500.0})
                t += timedelta(minutes=5)
            return {"data": data, "meta": {"units": "lbs_co2_per_mwh", "signal_type": "co2_moer",
                                           "data_point_period_seconds": 300}}
        api.add("/login", Reply(body={"token": "jwt"}))
        api.add("/v3/historical", Reply(body=historical))
    else:
        def national(path: str, query: dict[str, str]) -> dict[str, Any]:
            frm, to = (parse_time(p) for p in path.split("/")[2:4])
            data = []
            while frm < to:
                nxt = frm + timedelta(minutes=30)
                data.append({"from": iso(frm)[:-4] + "Z", "to": iso(nxt)[:-4] + "Z",
                             "intensity": {"forecast": 150, "actual": 140, "index": "low"}})
                frm = nxt
            return {"data": data}
        api.add("/intensity/*", Reply(body=national))


@pytest.mark.parametrize(("provider", "zone", "budget"), [
    # one history call per 600 s cache TTL
    ("electricitymaps", "DE", 144),
    # two /v3/historical queries per 5 min (inside one period, straddling the next) and a
    # login per 25 min token (58)
    ("watttime", "US-CAL-CISO", 576 + 58),
    # per half hour: its own query twice (900 s TTL) and the one straddling the next
    ("gb", "GB", 144),
])
def test_requests_per_node_per_day(catalogue: Catalogue, fake_api: FakeApi, provider: str,
                                   zone: str, budget: int) -> None:
    clock = SimClock()
    serve(fake_api, provider, clock)
    env = {"ELECTRICITYMAPS_API_TOKEN": "t", "WATTTIME_USERNAME": "u", "WATTTIME_PASSWORD": "p"}
    config = IntensityConfig(provider=provider, base_url=fake_api.url,
                             watttime_regions=(("US-CAL-CISO", "CAISO_NORTH"),))
    sel = select(config, env, catalogue=catalogue, clock=clock.mono, now=clock.now)
    start = OFFSET_S
    fallbacks = 0
    while start + INTERVAL_S <= 86400.0 + OFFSET_S:
        clock.t = start + INTERVAL_S
        factor = sel.lookup.intensity(zone, DAY0 + timedelta(seconds=start), clock.now())
        fallbacks += factor.fallback_reason is not None
        start += INTERVAL_S
    assert fallbacks == 0
    assert len(fake_api.seen) == budget
