"""KubeApi against a real HTTP server: concurrent calls reuse pooled connections."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from carbontrack.operator.kube import KubeApi
from kubernetes import client


class _JobServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _JobHandler)
        self.connections: set[tuple[str, int]] = set()
        self.requests = 0
        self.lock = threading.Lock()


class _JobHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: what lets the client reuse a connection
    server: _JobServer

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.connections.add(self.client_address)
            self.server.requests += 1
        time.sleep(0.2)  # keep the calls of one round in flight together
        name = self.path.rsplit("/", 1)[-1]
        body = json.dumps({"apiVersion": "batch/v1", "kind": "Job",
                           "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def job_server() -> Iterator[_JobServer]:
    server = _JobServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_concurrent_calls_reuse_one_pooled_connection_per_worker(job_server: _JobServer) -> None:
    # Regression: the pool size was set after the ApiClient was built, so urllib3 kept its
    # default of 10 connections: with 20 calls in flight, 10 connections were discarded after
    # each round and the next round opened (and TLS-handshook) new ones.
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{job_server.server_address[1]}"
    kube = KubeApi(cfg, workers=24)
    assert kube.pool_size == 24
    assert cfg.connection_pool_maxsize != 24  # the caller's configuration is not changed

    async def round_of(n: int) -> list[dict[str, object]]:
        return await asyncio.gather(*(kube.get_job("ns", f"job-{i}") for i in range(n)))

    for _ in range(3):
        jobs = asyncio.run(round_of(20))
        assert [j["metadata"]["uid"] for j in jobs] == [f"uid-job-{i}" for i in range(20)]  # type: ignore[index]
    assert job_server.requests == 60
    assert len(job_server.connections) == 20  # opened in the first round, reused in the next two
