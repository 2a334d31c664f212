"""The /metrics HTTP server: keep-alive, methods, paths, bounded connections, idle close."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from carbontrack.exporter.engine import Engine
from carbontrack.exporter.server import ExpositionCache, MetricsServer


@pytest.fixture
def served(make_node: Any) -> Iterator[tuple[MetricsServer, Engine]]:
    node = make_node()
    node.add_pod("0a0a0a0a-1111-2222-3333-444444444444", "burstable", {"c": (1.0, 0)})
    eng = node.engine()
    eng.collect()
    srv = MetricsServer("127.0.0.1", 0, ExpositionCache(lambda: eng.snapshot),
                        max_connections=4, request_timeout_s=0.3, idle_timeout_s=0.3)
    srv.start()
    yield srv, eng
    srv.shutdown()


def test_keep_alive_scrapes_head_and_errors(served: tuple[MetricsServer, Engine]) -> None:
    srv, _eng = served
    conn = http.client.HTTPConnection(*srv.server_address, timeout=10)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200 and r.getheader("Content-Type", "").startswith("text/plain")
    assert b"carbontrack_source_up" in body
    conn.request("GET", "/metrics")  # same connection
    assert conn.getresponse().read() == body  # nothing new collected: the same bytes
    conn.request("HEAD", "/metrics")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b""
    assert int(r.getheader("Content-Length", "0")) == len(body)
    conn.request("GET", "/nope")
    r = conn.getresponse()
    assert (r.status, r.read()) == (404, b"only /metrics and /healthz\n")
    conn.request("POST", "/metrics")
    r = conn.getresponse()
    assert (r.status, r.read()) == (405, b"only GET and HEAD\n")
    conn.close()


def test_connections_beyond_the_cap_are_refused_and_idle_ones_closed(
        served: tuple[MetricsServer, Engine]) -> None:
    srv, _ = served
    idle = [socket.create_connection(srv.server_address, timeout=10) for _ in range(4)]
    extra = socket.create_connection(srv.server_address, timeout=10)
    assert extra.recv(1) == b""  # over max_connections: closed without a response
    for s in idle:  # silent clients are dropped after request_timeout_s
        assert s.recv(1) == b""
        s.close()
    extra.close()
    conn = http.client.HTTPConnection(*srv.server_address, timeout=10)
    conn.request("GET", "/metrics")
    assert conn.getresponse().status == 200  # slots are free again
    conn.close()
