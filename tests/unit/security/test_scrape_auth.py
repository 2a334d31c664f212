"""Authenticated/TLS scraping (core/scrapeauth.py) on the exporter's and the operator's real
HTTP servers: HTTPS with the cluster-style CA, a bearer token from a file (rotated in place),
client certificates (mutual TLS), and the start-up errors of a wrong configuration."""

from __future__ import annotations

import argparse
import asyncio
import http.client
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from carbontrack.exporter.server import ExpositionCache, MetricsServer
from prometheus_client import CollectorRegistry, Counter

from carbontrack.core import scrapeauth
from carbontrack.core.errors import ConfigError
from carbontrack.core.scrapeauth import ScrapeSecurity, TokenFile
from carbontrack.devcluster.pki import Pki, create_pki

TOKEN = "s3cr3t-scrape-token"


@dataclass
class Certs:
    pki: Pki
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # signed by another CA
    stranger_key: Path
    token: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("tls")
    pki = create_pki(d / "ca")
    other = create_pki(d / "other-ca")
    # the harness's PKI: a serving certificate for 127.0.0.1 and a client certificate of
    # the same CA; another PKI's client certificate is a stranger's
    c = Certs(pki, pki.apiserver_cert, pki.apiserver_key, pki.admin_cert, pki.admin_key,
              other.admin_cert, other.admin_key, d / "token")
    c.token.write_text(TOKEN + "\n")  # a trailing newline, as `kubectl create secret --from-file` keeps
    return c


def client_ctx(certs: Certs, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.pki.ca_cert))
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def get(addr: tuple[str, int], path: str, ctx: ssl.SSLContext | None,
        token: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    conn: http.client.HTTPConnection = (
        http.client.HTTPSConnection(*addr, context=ctx, timeout=10) if ctx
        else http.client.HTTPConnection(*addr, timeout=10))
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def security(certs: Certs, *, tls: bool = True, mtls: bool = False, token: bool = True) -> ScrapeSecurity:
    return ScrapeSecurity(certs.server_cert if tls else None, certs.server_key if tls else None,
                          certs.pki.ca_cert if mtls else None, certs.token if token else None)


class FixedExposition(ExpositionCache):
    """The exporter's server reads only ``render()``; the engine behind it is tested elsewhere."""

    def __init__(self) -> None:
        super().__init__(lambda: None)  # type: ignore[arg-type,return-value]

    def render(self) -> bytes:
        return b'carbontrack_source_up{source="rapl"} 1\n'


@pytest.fixture
def exporter_server() -> Iterator[Any]:
    started: list[MetricsServer] = []

    def start(sec: ScrapeSecurity) -> tuple[str, int]:
        srv = MetricsServer("127.0.0.1", 0, FixedExposition(),
                            request_timeout_s=2.0, tls=sec.ssl_context(), guard=sec.guard())
        srv.start()
        started.append(srv)
        return srv.server_address

    yield start
    for s in started:
        s.shutdown()


class OperatorServer:
    """The operator's aiohttp app (operator/webserver.py) on its own event loop thread."""

    def __init__(self, sec: ScrapeSecurity) -> None:
        from carbontrack.operator.webserver import build_app, serve

        reg = CollectorRegistry()
        Counter("carbontrack_operator_test", "a series to find", registry=reg).inc(3)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        app = build_app(reg, lambda: (True, "ok test"), sec.guard())
        self.runner = asyncio.run_coroutine_threadsafe(
            serve(app, "127.0.0.1", 0, tls=sec.ssl_context()), self.loop).result(10)
        sock = self.runner.addresses[0]
        self.address: tuple[str, int] = (sock[0], sock[1])

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def operator_server() -> Iterator[Any]:
    started: list[OperatorServer] = []

    def start(sec: ScrapeSecurity) -> tuple[str, int]:
        started.append(OperatorServer(sec))
        return started[-1].address

    yield start
    for s in started:
        s.close()


SERVERS = ["exporter_server", "operator_server"]
SERIES = {"exporter_server": b"carbontrack_source_up", "operator_server": b"carbontrack_operator_test_total 3.0"}


@pytest.mark.parametrize("server", SERVERS)
def test_https_with_a_token_serves_only_the_holder(server: str, certs: Certs,
                                                   request: pytest.FixtureRequest) -> None:
    addr = request.getfixturevalue(server)(security(certs))
    ctx = client_ctx(certs)
    status, body, _ = get(addr, "/metrics", ctx, TOKEN)
    assert status == 200 and SERIES[server] in body
    for token in (None, "wrong", TOKEN + "x", TOKEN[:-1], ""):
        status, body, headers = get(addr, "/metrics", ctx, token)
        assert status == 401, token
        assert headers["www-authenticate"] == scrapeauth.REALM
        assert b"carbontrack" not in body.replace(b"credentials required", b"")
    # the probe's endpoint answers without credentials and tells nothing about tenants
    status, body, _ = get(addr, "/healthz", ctx)
    assert status == 200 and b"namespace" not in body
    # plain HTTP to the TLS port gets no metrics
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        s, b, _ = get(addr, "/metrics", None, TOKEN)
        assert s != 200 and SERIES[server] not in b


@pytest.mark.parametrize("server", SERVERS)
def test_a_client_that_does_not_trust_the_server_ca_refuses_it(server: str, certs: Certs,
                                                              request: pytest.FixtureRequest) -> None:
    addr = request.getfixturevalue(server)(security(certs))
    with pytest.raises(ssl.SSLCertVerificationError):
        get(addr, "/metrics", ssl.create_default_context(), TOKEN)


@pytest.mark.parametrize("server", SERVERS)
def test_mutual_tls_needs_a_client_certificate_of_the_ca(server: str, certs: Certs,
                                                         request: pytest.FixtureRequest) -> None:
    addr = request.getfixturevalue(server)(security(certs, mtls=True, token=False))
    status, body, _ = get(addr, "/metrics", client_ctx(certs, certs.client_cert, certs.client_key))
    assert status == 200 and SERIES[server] in body
    status, _, _ = get(addr, "/metrics", client_ctx(certs))  # no client certificate
    assert status == 401
    assert get(addr, "/healthz", client_ctx(certs))[0] == 200  # probes send none
    with pytest.raises((ssl.SSLError, ConnectionError)):  # another CA's: the handshake fails
        get(addr, "/metrics", client_ctx(certs, certs.stranger_cert, certs.stranger_key))


def test_plain_http_with_a_token(exporter_server: Any, certs: Certs) -> None:
    addr = exporter_server(security(certs, tls=False))
    assert get(addr, "/metrics", None, TOKEN)[0] == 200
    assert get(addr, "/metrics", None, None)[0] == 401
    assert get(addr, "/metrics", None, "Basic " + TOKEN)[0] == 401


def test_a_rotated_token_takes_effect_and_a_missing_file_refuses(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("old\n")
    guard = ScrapeSecurity(token_file=path).guard()
    assert guard.allows("Bearer old", None)
    # the kubelet swaps a Secret volume's files by renaming a new directory into place
    new = tmp_path / "token.new"
    new.write_text("new")
    new.replace(path)
    assert not guard.allows("Bearer old", None)
    assert guard.allows("bearer new", None)
    path.unlink()
    assert not guard.allows("Bearer new", None)
    assert not guard.allows("Bearer ", None)
    path.write_text("")
    assert not guard.allows("Bearer ", None) and not guard.allows("Bearer", None)
    assert TokenFile(path).current() == b""


def _args(**kw: Any) -> argparse.Namespace:
    base = {"tls_cert_file": None, "tls_key_file": None, "tls_client_ca_file": None,
            "auth_token_file": None}
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize(("kw", "says"), [
    ({"tls_cert_file": "CERT"}, "--tls-cert-file and --tls-key-file go together"),
    ({"tls_client_ca_file": "CA"}, "--tls-client-ca-file needs TLS"),
    ({"auth_token_file": "/nonexistent/token"}, "not a readable file"),
    ({"tls_cert_file": "KEY", "tls_key_file": "CERT"}, "cannot load the certificate and key"),
    ({"auth_token_file": "EMPTY"}, "the token is empty"),
])
def test_wrong_configurations_stop_start_up(kw: dict[str, str], says: str, certs: Certs,
                                             tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    paths = {"CERT": certs.server_cert, "KEY": certs.server_key, "CA": certs.pki.ca_cert,
             "EMPTY": tmp_path / "empty"}
    args = _args(**{k: paths.get(v, Path(v)) for k, v in kw.items()})
    with pytest.raises(ConfigError, match=says):
        scrapeauth.from_args(args)


def test_the_cli_flags_reach_the_exporter_settings(certs: Certs) -> None:
    from carbontrack.exporter.settings import from_args

    s = from_args(["--node-name", "n", "--tls-cert-file", str(certs.server_cert), "--tls-key-file",
                   str(certs.server_key), "--auth-token-file", str(certs.token)])
    assert s.scrape_security == security(certs)
    assert s.scrape_security.scheme == "https"
    assert from_args(["--node-name", "n"]).scrape_security.guard().open
