"""/metrics and /healthz on one port (the chart probes /healthz and scrapes /metrics).

With TLS settings it serves HTTPS; a guard (carbontrack.core.scrapeauth) decides who may read
/metrics. /healthz stays open: it is the liveness probe's, and says only "ok" and the version.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from carbontrack.core.scrapeauth import REALM, ScrapeGuard

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guard_middleware(guard: ScrapeGuard) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/metrics":
            peer = request.transport.get_extra_info("peercert") if request.transport else None
            if not guard.allows(request.headers.get("Authorization"), peer):
                return web.Response(status=401, text="credentials required for /metrics\n",
                                    headers={"WWW-Authenticate": REALM})
        return await handler(request)

    return check


def build_app(registry: CollectorRegistry, healthy: Callable[[], tuple[bool, str]],
              guard: ScrapeGuard | None = None) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        # Answered on the operator's event loop: a blocked loop fails the probe by timing out.
        ok, message = healthy()
        return web.Response(status=200 if ok else 503, text=message + "\n")

    app = web.Application(middlewares=[guard_middleware(guard)] if guard and not guard.open else [])
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(app: web.Application, host: str, port: int,
                tls: ssl.SSLContext | None = None) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=tls).start()
    return runner
