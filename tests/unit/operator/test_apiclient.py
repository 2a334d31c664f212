"""The operator's API transport against real servers: every answer status becomes the exception
its callers act on, credentials are read per request, bodies are what kube-apiserver takes
(Events, server-side apply, list paging), and a TLS kubeconfig with client certificates serves
both the transport and kopf's login."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yaml
from carbontrack.operator.apiclient import ApiError, ApiTransport, resource_path, translate
from carbontrack.operator.kube import Conflict, Gone, KubeApi, event_body
from carbontrack.operator.kubeconfig import connection_info, load_endpoint
from carbontrack.operator.kueue_admission import KueueApi
from carbontrack.operator.kueue_checks import FIELD_MANAGER
from carbontrack.operator.workload_api import WorkloadApi

from carbontrack.core.apiconfig import ApiEndpoint, TokenFile, no_credentials
from carbontrack.core.errors import ConfigError, TemporaryError
from carbontrack.devcluster.kubeconfig import build_kubeconfig
from carbontrack.devcluster.pki import Pki, create_pki
from carbontrack.sim.fakeapiserver import FakeApiServer

TOKEN = "SECRET-TOKEN-4d1c88a0"


class _Scripted(ThreadingHTTPServer):
    """Answers each request with the next (status, body) of ``script`` (then 200 {}), and
    keeps what it got."""

    daemon_threads = True

    def __init__(self, script: list[tuple[int, Any]] | None = None, delay_s: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.script = list(script or [])
        self.delay_s = delay_s
        self.got: list[dict[str, Any]] = []
        self.lock = threading.Lock()


class _ScriptedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Scripted

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        sent = json.loads(self.rfile.read(length)) if length else None
        url = urlsplit(self.path)
        with self.server.lock:
            self.server.got.append({"method": self.command, "path": url.path, "query": parse_qs(url.query),
                                    "headers": {k.lower(): v for k, v in self.headers.items()}, "body": sent})
            status, body = self.server.script.pop(0) if self.server.script else (200, {})
        time.sleep(self.server.delay_s)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):  # a client that timed out left
            pass

    do_GET = do_PATCH = do_POST = _answer

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[_Scripted] = []

    def start(script: list[tuple[int, Any]] | None = None, delay_s: float = 0.0) -> _Scripted:
        server = _Scripted(script, delay_s)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _transport(server: _Scripted, credentials: Any = no_credentials, timeout_s: float = 10) -> ApiTransport:
    return ApiTransport(ApiEndpoint("http", "127.0.0.1", server.server_address[1], "", None, credentials),
                        timeout_s=timeout_s, pool_size=4)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": message}


UID_PRECONDITION = ('Precondition failed: UID in precondition: uid-old, UID in object meta: uid-new')


@pytest.mark.parametrize(("status", "body", "expected", "text"), [
    (404, _status(404, "NotFound", 'jobs.batch "a" not found'), Gone, "Job ns/a not found"),
    (409, _status(409, "Conflict", UID_PRECONDITION), Gone, "replaced by a new object"),
    (409, _status(409, "Conflict", "the object has been modified"), Conflict, "changed concurrently"),
    (429, _status(429, "TooManyRequests", "slow down"), TemporaryError, "API server error on Job ns/a: 429"),
    (500, _status(500, "InternalError", "etcd"), TemporaryError, "500"),
    (502, b"<html>bad gateway</html>", TemporaryError, "502"),
    (503, _status(503, "ServiceUnavailable", "x"), TemporaryError, "503"),
    (504, _status(504, "Timeout", "x"), TemporaryError, "504"),
    (403, _status(403, "Forbidden", 'jobs.batch "a" is forbidden: User cannot patch'), ApiError,
     'Job ns/a: the API server answered 403 Forbidden: jobs.batch "a" is forbidden'),
    (422, _status(422, "Invalid", "metadata.finalizers: Invalid value"), ApiError,
     "answered 422 Unprocessable Entity: metadata.finalizers: Invalid value"),
])
def test_each_status_becomes_the_exception_callers_act_on(serve: Any, status: int, body: Any,
                                                          expected: type[Exception], text: str) -> None:
    server = serve([(status, body)])
    transport = _transport(server)

    async def call() -> None:
        try:
            await KubeApi(transport).patch_workload("Job", "ns", "a", "uid-a", {"metadata": {}}, answer=False)
        finally:
            await transport.aclose()

    with pytest.raises(expected) as info:
        asyncio.run(call())
    assert text in str(info.value)
    assert type(info.value) is expected  # Gone is not a Conflict, an ApiError not a TemporaryError
    if expected is ApiError:
        assert isinstance(info.value, ApiError) and info.value.status == status


def test_translate_is_a_pure_table() -> None:
    assert isinstance(translate(409, "Conflict", UID_PRECONDITION, "w"), Gone)
    assert isinstance(translate(409, "Conflict", "{}", "w"), Conflict)
    assert isinstance(translate(400, "Bad Request", "not json", "w"), ApiError)
    assert str(translate(400, "Bad Request", "not json", "w")) == "w: the API server answered 400 Bad Request: not json"


def test_connection_refused_and_timeouts_are_temporary(serve: Any) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = ApiTransport(ApiEndpoint("http", "127.0.0.1", port, "", None, no_credentials), timeout_s=5)
    slow = _transport(serve([(200, {})], delay_s=2.0), timeout_s=0.2)

    async def calls() -> list[BaseException | None]:
        out: list[BaseException | None] = []
        for t, path in ((refused, "/api/v1/pods"), (slow, "/api/v1/pods")):
            try:
                await t.get(path, "pods")
                out.append(None)
            except Exception as err:
                out.append(err)
            finally:
                await t.aclose()
        return out

    refused_err, slow_err = asyncio.run(calls())
    assert isinstance(refused_err, TemporaryError) and "API server unreachable on pods" in str(refused_err)
    assert isinstance(slow_err, TemporaryError) and "API server unreachable on pods" in str(slow_err)


def test_calls_queued_for_a_connection_do_not_time_out_in_the_queue(serve: Any) -> None:
    # 8 calls through one connection, 0.2 s each: the last waits ~1.4 s for its turn, longer
    # than the 1 s request timeout, which counts from when a call is sent
    server = serve(delay_s=0.2)
    transport = ApiTransport(ApiEndpoint("http", "127.0.0.1", server.server_address[1], "", None, no_credentials),
                             timeout_s=1.0, pool_size=1)

    async def burst() -> list[Any]:
        try:
            return await asyncio.gather(*(transport.get(f"/api/v1/namespaces/ns/pods/p{i}", "pod")
                                          for i in range(8)))
        finally:
            await transport.aclose()

    assert asyncio.run(burst()) == [{}] * 8
    assert len(server.got) == 8


def test_a_token_file_is_read_for_every_request_and_never_quoted(serve: Any, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("token-1\n")
    echo = _status(401, "Unauthorized", f"bad token {TOKEN}")  # a server quoting the credential
    server = serve([(200, {}), (200, {}), (401, echo)])
    transport = _transport(server, TokenFile(token))

    async def calls() -> ApiError:
        try:
            await transport.get("/api", "discovery")
            token.write_text("token-2\n")  # the kubelet rotated the bound token
            await transport.get("/api", "discovery")
            token.write_text(TOKEN)
            with pytest.raises(ApiError) as info:
                await transport.get("/api", "discovery")
            return info.value
        finally:
            await transport.aclose()

    err = asyncio.run(calls())
    assert [g["headers"]["authorization"] for g in server.got] == ["Bearer token-1", "Bearer token-2",
                                                                   f"Bearer {TOKEN}"]
    assert err.status == 401 and TOKEN not in str(err) and "[redacted]" in str(err)


def test_events_records_and_pages_are_the_bodies_the_api_server_takes(serve: Any) -> None:
    server = serve([(200, {}), (201, {"metadata": {"name": "r"}}),
                    (200, {"items": [{"n": 1}], "metadata": {"continue": "t1"}}),
                    (200, {"items": [{"n": 2}], "metadata": {}})])
    transport = _transport(server)
    kube = KubeApi(transport)
    now = datetime(2026, 12, 7, 4, 30, 5, 123456, tzinfo=timezone.utc)
    involved = {"kind": "Job", "name": "j", "namespace": "ns", "uid": "u", "apiVersion": "batch/v1"}

    async def calls() -> tuple[dict[str, Any], list[Any], list[Any]]:
        try:
            await kube.post_event(involved, "Accounted", "m" * 2000, False, now)
            created = await kube.create_record({"metadata": {"name": "r", "namespace": "ns"}, "spec": {}})
            first, token = await kube.list_records("ns", "a=b", 1, None)
            second, end = await kube.list_records("ns", "a=b", 1, token)
            assert (token, end) == ("t1", None)
            return created, first, second
        finally:
            await transport.aclose()

    created, first, second = asyncio.run(calls())
    event = server.got[0]
    assert (event["method"], event["path"]) == ("POST", "/api/v1/namespaces/ns/events")
    assert event["body"] == event_body(involved, "Accounted", "m" * 2000, False, now)
    assert event["body"]["involvedObject"] == involved and len(event["body"]["message"]) == 1024
    assert event["body"]["firstTimestamp"] == "2026-12-07T04:30:05Z"
    assert event["body"]["type"] == "Normal" and event["body"]["source"] == {"component": "carbontrack-operator"}
    assert created == {"metadata": {"name": "r"}}
    assert server.got[1]["path"] == "/apis/carbontrack.io/v1alpha1/namespaces/ns/carbonrecords"
    assert server.got[2]["query"] == {"labelSelector": ["a=b"], "limit": ["1"]}
    assert server.got[3]["query"] == {"labelSelector": ["a=b"], "limit": ["1"], "continue": ["t1"]}
    assert (first, second) == ([{"n": 1}], [{"n": 2}])


def test_kueue_status_writes_are_forced_server_side_applies(serve: Any) -> None:
    server = serve()
    transport = _transport(server)
    body = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
            "metadata": {"name": "w", "namespace": "ns"}, "status": {"admissionChecks": []}}

    async def call() -> None:
        try:
            await KueueApi(transport).apply_workload_status(body)
        finally:
            await transport.aclose()

    asyncio.run(call())
    got = server.got[0]
    assert (got["method"], got["path"]) == ("PATCH", "/apis/kueue.x-k8s.io/v1beta2/namespaces/ns/workloads/w/status")
    assert got["query"] == {"fieldManager": [FIELD_MANAGER], "force": ["true"]}
    assert got["headers"]["content-type"] == "application/apply-patch+yaml" and got["body"] == body


def test_workload_api_pages_and_treats_refusals_as_temporary(serve: Any) -> None:
    server = serve([(200, {"resources": [{"name": "deployments"}]}), (404, _status(404, "NotFound", "x")),
                    (200, {"items": [{"a": 1}], "metadata": {"continue": "c"}}), (200, {"items": [{"a": 2}]}),
                    (403, _status(403, "Forbidden", "cannot list"))])
    transport = _transport(server)
    api = WorkloadApi(transport)

    async def calls() -> tuple[bool, bool, list[dict[str, Any]]]:
        try:
            served = await api.served("apps", "v1", "deployments")
            absent = await api.served("leaderworkerset.x-k8s.io", "v1", "leaderworkersets")
            pods = await api.list("", "v1", "pods", None)
            with pytest.raises(TemporaryError, match="cannot list"):
                await api.list("apps", "v1", "deployments", "ns")
            return served, absent, pods
        finally:
            await transport.aclose()

    assert asyncio.run(calls()) == (True, False, [{"a": 1}, {"a": 2}])
    assert [g["path"] for g in server.got] == ["/apis/apps/v1", "/apis/leaderworkerset.x-k8s.io/v1",
                                               "/api/v1/pods", "/api/v1/pods",
                                               "/apis/apps/v1/namespaces/ns/deployments"]
    assert server.got[3]["query"] == {"limit": ["500"], "continue": ["c"]}


def test_resource_paths() -> None:
    assert resource_path("", "v1", "events", "ns") == "/api/v1/namespaces/ns/events"
    assert resource_path("kueue.x-k8s.io", "v1beta1", "admissionchecks", None, "c", "status") == \
        "/apis/kueue.x-k8s.io/v1beta1/admissionchecks/c/status"


# ------------------------------------------------------------------ TLS, client certificates
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return create_pki(tmp_path_factory.mktemp("pki"))


def test_a_client_certificate_kubeconfig_serves_the_transport_and_kopfs_login(tmp_path: Path, pki: Pki) -> None:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki.apiserver_cert, pki.apiserver_key)
    tls.load_verify_locations(pki.ca_cert)
    tls.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no answer
    with FakeApiServer(tls=tls) as server:
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump(build_kubeconfig(server.url, pki)))
        endpoint = load_endpoint(str(path), env={})
        login = connection_info(endpoint)
        transport = ApiTransport(endpoint, timeout_s=10)

        async def both() -> tuple[Any, Any]:
            try:
                ours = await transport.get("/api/v1/pods", "pods", {"fieldSelector": "spec.nodeName=n"})
            finally:
                await transport.aclose()
            # kopf builds its session from the login exactly so (kopf/_cogs/clients/auth.py)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=login.as_ssl_context()),
                                             headers=login.as_http_headers()) as session, \
                    session.get(f"{login.server}/api/v1/pods", params={"fieldSelector": "spec.nodeName=n"}) as r:
                return ours, await r.json()

        ours, kopfs = asyncio.run(both())
    assert ours["kind"] == kopfs["kind"] == "PodList"
    assert login.server == server.url and login.insecure is False and login.token is None
    assert login.certificate_data == pki.admin_cert.read_bytes()
    assert login.private_key_data == pki.admin_key.read_bytes()
    assert "PRIVATE KEY" not in repr(endpoint)


def test_kopfs_login_in_a_pod_is_the_service_account(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "ca.crt").write_bytes(pki.ca_cert.read_bytes())
    (tmp_path / "token").write_text("sa-token\n")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    login = connection_info(load_endpoint(None, env=env, sa_dir=tmp_path))
    assert (login.server, login.ca_path, login.scheme, login.token) == (
        "https://10.96.0.1:443", str(tmp_path / "ca.crt"), "Bearer", "sa-token")
    assert login.certificate_data is None and not login.insecure


def test_outside_a_pod_the_kubeconfig_comes_from_the_environment(tmp_path: Path) -> None:
    kc = tmp_path / "kc.json"
    kc.write_text(json.dumps({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "http://127.0.0.1:8001"}}],
        "users": [{"name": "u", "user": {"token": TOKEN}}]}))
    # a pod's environment without a mounted token is not a pod here: the kubeconfig is read
    env = {"KUBECONFIG": f"{tmp_path / 'missing'}:{kc}", "KUBERNETES_SERVICE_HOST": "10.96.0.1"}
    endpoint = load_endpoint(None, env=env, sa_dir=tmp_path)
    assert endpoint.url == "http://127.0.0.1:8001"
    assert connection_info(endpoint).token == TOKEN
    with pytest.raises(ConfigError, match=r"no file of \$KUBECONFIG exists .*: pass --kubeconfig FILE"):
        load_endpoint(None, env={"KUBECONFIG": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match=r"cannot read --kubeconfig .*nope.*: pass --kubeconfig FILE"):
        load_endpoint(str(tmp_path / "nope"), env={})
