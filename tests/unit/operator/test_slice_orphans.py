"""operator/slice_orphans.py's pieces that the slice loop tests (test_long_running.py) do not
reach: the cluster-wide lookup of the namespaces holding records (over real HTTP), which
entries count as a workload's final slice, and the stop query's text."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from aiohttp import web
from carbontrack.operator.apiclient import ApiTransport
from carbontrack.operator.slice_orphans import is_final, stop_query
from carbontrack.operator.workload_api import WorkloadApi

from carbontrack.core.apiconfig import ApiEndpoint, no_credentials


def test_the_namespaces_holding_records_are_read_cluster_wide_in_small_pages() -> None:
    got: list[tuple[str, dict[str, str]]] = []
    pages = {"": {"items": [{"metadata": {"namespace": "a"}}, {"metadata": {"namespace": "b"}}],
                  "metadata": {"continue": "next"}},
             "next": {"items": [{"metadata": {"namespace": "a"}}, {"metadata": {}}]}}

    async def route(request: web.Request) -> web.Response:
        got.append((request.path, dict(request.query)))
        return web.json_response(pages[request.query.get("continue", "")])

    async def go() -> set[str]:
        app = web.Application()
        app.router.add_get("/apis/carbontrack.io/v1alpha1/carbonrecords", route)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        transport = ApiTransport(ApiEndpoint("http", "127.0.0.1", port, "", None, no_credentials))
        try:
            return await WorkloadApi(transport).namespaces_with(
                "carbontrack.io", "v1alpha1", "carbonrecords", "carbontrack.io/record=jobs")
        finally:
            await transport.aclose()
            await runner.cleanup()

    assert asyncio.run(go()) == {"a", "b"}
    assert got == [("/apis/carbontrack.io/v1alpha1/carbonrecords",
                    {"labelSelector": "carbontrack.io/record=jobs", "limit": "20"}),
                   ("/apis/carbontrack.io/v1alpha1/carbonrecords",
                    {"labelSelector": "carbontrack.io/record=jobs", "limit": "20", "continue": "next"})]


def test_an_entry_is_final_by_its_flag_and_an_older_deleted_slice_counts_as_final() -> None:
    assert is_final({"slice": {"final": True}, "job": {"outcome": "Deleted"}})
    assert not is_final({"slice": {"final": False}, "job": {"outcome": "Deleted"}})
    assert not is_final({"slice": {"final": "yes"}})  # only the operator's own boolean
    assert is_final({"slice": {}, "job": {"outcome": "Deleted"}})  # written before the flag
    assert not is_final({"slice": {}, "job": {"outcome": "Running"}})


def test_the_stop_query_pins_each_series_final_value_at_the_evaluation_time() -> None:
    at = datetime(2026, 12, 7, 10, 9, tzinfo=timezone.utc)
    q = stop_query("m", 'namespace="ns"', 362.5, 0.5, at)
    assert q == ('max(min_over_time((timestamp(m{namespace="ns"}) and m{namespace="ns"} >= '
                 'max_over_time(m{namespace="ns"}[363s] @ 1796638140.000))[363s:500ms]))')
