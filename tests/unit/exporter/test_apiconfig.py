"""In-cluster and kubeconfig configuration of the stdlib API client, over real TLS.

The certificates come from the e2e cluster's PKI builder (a CA, a serving certificate for
127.0.0.1, an admin client certificate); the server is ``sim.fakeapiserver`` over HTTPS.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from carbontrack.exporter.kubeapi import ApiClient, ApiError

from carbontrack.core.apiconfig import from_kubeconfig, in_cluster
from carbontrack.core.errors import ConfigError
from carbontrack.devcluster.kubeconfig import build_kubeconfig
from carbontrack.devcluster.pki import Pki, create_pki
from carbontrack.sim.fakeapiserver import FakeApiServer

NODE_PODS = ("/api/v1/pods", {"fieldSelector": "spec.nodeName=n"})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return create_pki(tmp_path_factory.mktemp("pki"))


def server_tls(pki: Pki, client_certs: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.apiserver_cert, pki.apiserver_key)
    if client_certs:
        ctx.load_verify_locations(pki.ca_cert)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@pytest.fixture
def mtls_server(pki: Pki) -> Iterator[FakeApiServer]:
    with FakeApiServer(tls=server_tls(pki, client_certs=True)) as s:
        yield s


def test_kubeconfig_as_the_e2e_cluster_writes_it_client_certificate(
        tmp_path: Path, pki: Pki, mtls_server: FakeApiServer) -> None:
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(yaml.safe_dump(build_kubeconfig(mtls_server.url, pki)))
    api = ApiClient(from_kubeconfig(cfg))
    assert api.get_json(*NODE_PODS)["kind"] == "PodList"


def test_kubeconfig_json_with_inline_data_and_relative_paths(
        tmp_path: Path, pki: Pki, mtls_server: FakeApiServer) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "admin.key").write_bytes(pki.admin_key.read_bytes())
    cfg = tmp_path / "kubeconfig.json"
    cfg.write_text(json.dumps({
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {
            "server": mtls_server.url,
            "certificate-authority-data": base64.b64encode(pki.ca_cert.read_bytes()).decode()}}],
        "users": [{"name": "u", "user": {
            "client-certificate-data": base64.b64encode(pki.admin_cert.read_bytes()).decode(),
            "client-key": "certs/admin.key"}}],  # relative to the kubeconfig's directory
    }))
    assert ApiClient(from_kubeconfig(cfg)).get_json(*NODE_PODS)["kind"] == "PodList"


def test_a_server_certificate_from_another_ca_is_refused(tmp_path: Path, pki: Pki,
                                                         mtls_server: FakeApiServer) -> None:
    other = create_pki(tmp_path / "other")
    cfg = build_kubeconfig(mtls_server.url, other)
    cfg["users"][0]["user"] = {"client-certificate": str(pki.admin_cert),
                               "client-key": str(pki.admin_key)}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ssl.SSLCertVerificationError):
        ApiClient(from_kubeconfig(path)).get_json(*NODE_PODS)


def test_in_cluster_rereads_a_rotated_token(tmp_path: Path, pki: Pki) -> None:
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "ca.crt").write_bytes(pki.ca_cert.read_bytes())
    (sa / "token").write_text("token-1\n")
    with FakeApiServer(tls=server_tls(pki, client_certs=False), token="token-1") as server:
        port = server.url.rsplit(":", 1)[1]
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}
        api = ApiClient(in_cluster(env, sa))
        assert api.get_json(*NODE_PODS)["kind"] == "PodList"
        server.token = "token-2"  # the kubelet rotated the bound token...
        with pytest.raises(ApiError) as err:
            api.get_json(*NODE_PODS)
        assert err.value.status == 401 and err.value.message == "Unauthorized"
        (sa / "token").write_text("token-2\n")  # ...and wrote the file
        assert api.get_json(*NODE_PODS)["kind"] == "PodList"


@pytest.mark.parametrize(("env", "files", "fragment"), [
    ({}, ("ca.crt", "token"), "KUBERNETES_SERVICE_HOST/PORT unset"),
    ({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}, ("ca.crt",),
     "automountServiceAccountToken"),
    ({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}, ("token",),
     "cannot load the cluster CA"),
])
def test_in_cluster_errors_say_what_is_missing(tmp_path: Path, pki: Pki, env: dict[str, str],
                                               files: tuple[str, ...], fragment: str) -> None:
    for f in files:
        (tmp_path / f).write_bytes(pki.ca_cert.read_bytes() if f == "ca.crt" else b"t")
    with pytest.raises(ConfigError, match=fragment.replace("/", ".")):
        in_cluster(env, tmp_path)


@pytest.mark.parametrize(("user", "fragment"), [
    ({"exec": {"command": "aws"}}, "exec plugin"),
    ({"auth-provider": {"name": "gcp"}}, "auth-provider plugin"),
])
def test_kubeconfig_plugins_are_refused(tmp_path: Path, user: dict[str, object],
                                        fragment: str) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": user}]}))
    with pytest.raises(ConfigError, match=fragment):
        from_kubeconfig(path)


def test_kubeconfig_context_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("current-context: missing\ncontexts: []\n")
    with pytest.raises(ConfigError, match="no context named 'missing'"):
        from_kubeconfig(path)


def test_kubeconfig_token_file_and_path_prefix(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("abc\n")
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "http://127.0.0.1:8080/proxy/"}}],
        "users": [{"name": "u", "user": {"tokenFile": "tok"}}]}))
    ep = from_kubeconfig(path)
    assert (ep.url, ep.ssl_context, ep.credentials()) == (
        "http://127.0.0.1:8080/proxy", None, {"Authorization": "Bearer abc"})


def test_stop_ends_a_watch_blocked_in_a_tls_read(tmp_path: Path, pki: Pki) -> None:
    """stop() shuts the socket under the watch thread's TLS read: the thread ends."""
    import time

    from carbontrack.exporter.pods import PodCache
    from carbontrack.exporter.podwatch import PodWatcher

    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "ca.crt").write_bytes(pki.ca_cert.read_bytes())
    (sa / "token").write_text("t\n")
    with FakeApiServer(tls=server_tls(pki, client_certs=False), token="t") as server:
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
               "KUBERNETES_SERVICE_PORT": server.url.rsplit(":", 1)[1]}
        w = PodWatcher(ApiClient(in_cluster(env, sa)), "n", PodCache())
        w.start()
        deadline = time.monotonic() + 20
        while w.watches == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert w.watches == 1 and w.healthy  # now blocked reading the open watch
        w.stop(timeout_s=20)
        assert w._thread is not None and not w._thread.is_alive()
