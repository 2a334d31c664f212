"""KubeApi over the operator's aiohttp transport against a real HTTP server: concurrent calls
reuse pooled connections, writes carry the UID precondition, statuses become the exceptions the
callers act on."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from carbontrack.operator.apiclient import ApiTransport
from carbontrack.operator.kube import Conflict, Gone, KubeApi

from carbontrack.core.apiconfig import ApiEndpoint, no_credentials


class _JobServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _JobHandler)
        self.connections: set[tuple[str, int]] = set()
        self.requests = 0
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
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

    def do_PATCH(self) -> None:
        """A merge patch: 409 for a Job named "stale" (resourceVersion precondition) or
        "recreated" (UID precondition: the name belongs to a new Job), else the patched Job;
        the patch sent is kept for the test."""
        sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.connections.add(self.client_address)
            self.server.requests += 1
            self.server.patches.append((self.path, self.headers["Content-Type"], sent))
        name = self.path.rsplit("/", 1)[-1]
        status = 409 if name in ("stale", "recreated") else 200
        message = ("Precondition failed: UID in precondition: uid-r, UID in object meta: uid-r2"
                   if name == "recreated" else "the object has been modified")
        body = json.dumps({"kind": "Status", "reason": "Conflict", "message": message}
                          if status == 409 else {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
                              "name": name, "uid": sent["metadata"]["uid"], "resourceVersion": "8",
                              "creationTimestamp": "2026-12-07T01:58:48Z", **sent["metadata"]}}).encode()
        self.send_response(status)
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


def _kube(server: _JobServer, pool_size: int = 4) -> tuple[KubeApi, ApiTransport]:
    endpoint = ApiEndpoint("http", "127.0.0.1", server.server_address[1], "", None, no_credentials)
    transport = ApiTransport(endpoint, timeout_s=10, pool_size=pool_size)
    return KubeApi(transport), transport


def test_concurrent_calls_reuse_one_pooled_connection_each(job_server: _JobServer) -> None:
    # 20 calls in flight at once open 20 connections; the next two rounds reuse them (the
    # kubernetes client's pool once kept 10 and paid a new TLS handshake for each call beyond)
    kube, transport = _kube(job_server, pool_size=24)
    assert kube.pool_size == 24

    async def rounds() -> list[list[dict[str, Any]]]:
        try:
            return [await asyncio.gather(*(kube.get_job("ns", f"job-{i}") for i in range(20)))
                    for _ in range(3)]
        finally:
            await transport.aclose()

    for jobs in asyncio.run(rounds()):
        assert [j["metadata"]["uid"] for j in jobs] == [f"uid-job-{i}" for i in range(20)]
    assert job_server.requests == 60
    assert len(job_server.connections) == 20  # opened in the first round, reused in the next two


def test_the_pool_bounds_the_calls_in_flight(job_server: _JobServer) -> None:
    kube, transport = _kube(job_server, pool_size=4)

    async def burst() -> None:
        try:
            await asyncio.gather(*(kube.get_job("ns", f"job-{i}") for i in range(12)))
        finally:
            await transport.aclose()

    asyncio.run(burst())
    assert job_server.requests == 12 and len(job_server.connections) == 4


def test_job_patches_are_raw_json_and_unread_answers_reuse_the_connection(job_server: _JobServer) -> None:
    # a write whose answer nobody reads is not parsed, and its connection still goes back to the pool
    kube, transport = _kube(job_server)

    async def calls() -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            answered = await kube.patch_workload("Job", "ns", "a", "uid-a", {"metadata": {"annotations": {"k": "v"}}})
            unread = await kube.patch_workload("Job", "ns", "b", "uid-b", {"metadata": {"labels": {"k": "v"}}},
                                               answer=False)
            await kube.set_workload_finalizers("Job", "ns", "c", "uid-c", ["f"], "7")
            with pytest.raises(Conflict):
                await kube.set_workload_finalizers("Job", "ns", "stale", "uid-s", ["f"], "6")
            with pytest.raises(Gone, match="replaced by a new object"):
                await kube.patch_job("ns", "recreated", "uid-r", {"metadata": {"annotations": {"k": "v"}}})
            return answered, unread
        finally:
            await transport.aclose()

    answered, unread = asyncio.run(calls())
    assert answered["metadata"]["annotations"] == {"k": "v"} and answered["metadata"]["uid"] == "uid-a"
    assert answered["metadata"]["creationTimestamp"] == "2026-12-07T01:58:48Z"  # the server's text, as sent
    assert unread == {}
    assert [(path, kind) for path, kind, _ in job_server.patches] == [
        (f"/apis/batch/v1/namespaces/ns/jobs/{n}", "application/merge-patch+json")
        for n in ("a", "b", "c", "stale", "recreated")]
    assert job_server.patches[2][2] == {"metadata": {"finalizers": ["f"], "resourceVersion": "7", "uid": "uid-c"}}
    assert job_server.patches[4][2]["metadata"]["uid"] == "uid-r"  # every write carries the UID precondition
    assert len(job_server.connections) == 1  # sequential calls, every answer released: one connection
