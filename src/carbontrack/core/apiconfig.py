"""Where the Kubernetes API server is and how to authenticate: in-cluster or a kubeconfig.

The exporter's pod watch and the operator's API client need one server URL, a TLS context and
an ``Authorization`` header. This module builds them without the ``kubernetes`` client (whose
import alone costs ~46 MiB of the exporter's memory, ~28 MiB of the operator's;
docs/performance/exporter-memory.md, docs/performance/operator-memory.md):

- in a pod: ``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT``, the service account's
  ``ca.crt`` and ``token``. The token file is read again for every request, because the
  kubelet rotates bound service-account tokens in place (a cached one expires).
- ``--kubeconfig FILE``: the current context's cluster (``server``,
  ``certificate-authority[-data]``, ``insecure-skip-tls-verify``) and user
  (``client-certificate[-data]``/``client-key[-data]``, ``token``, ``tokenFile``). Relative
  paths are relative to the file's directory, as kubectl reads them. ``exec`` and
  ``auth-provider`` plugins are refused with a ConfigError (they would run programs).

``ApiEndpoint.tls`` keeps what the TLS context was built from (CA, client certificate and key,
insecure flag) for a client that builds its own context: kopf's login (operator/kubeconfig.py).

Errors are ``ConfigError``: one sentence naming the file or variable and the fix.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from carbontrack.core.errors import ConfigError
from carbontrack.core.redact import yaml_problem

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# headers for one request (the Authorization header, or none); called per request
Credentials = Callable[[], dict[str, str]]


@dataclass(frozen=True)
class TlsSource:
    """What an endpoint's TLS context was built from (PEM bytes or a CA file), for a client
    that builds its own context from them (kopf's login). Keys never show in a repr."""

    ca_path: Path | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    certificate: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ApiEndpoint:
    """One API server: ``scheme://host:port`` + ``path_prefix``, TLS context, credentials."""

    scheme: str  # "https", or "http" (tests' local servers)
    host: str
    port: int
    path_prefix: str
    ssl_context: ssl.SSLContext | None
    credentials: Credentials
    tls: TlsSource | None = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path_prefix}"


def no_credentials() -> dict[str, str]:
    return {}


class TokenFile:
    """A bearer token read from its file for every request (rotated tokens are picked up)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> dict[str, str]:
        try:
            token = self.path.read_text(encoding="utf-8").strip()
        except OSError as err:
            # not a ConfigError here: the file may be mid-rotation; the watch retries
            raise OSError(f"cannot read the API token {self.path}: {err.strerror}") from err
        return {"Authorization": f"Bearer {token}"} if token else {}


def static_token(token: str) -> Credentials:
    headers = {"Authorization": f"Bearer {token}"}
    return lambda: dict(headers)


def in_cluster(env: Mapping[str, str] = os.environ,
               sa_dir: Path = SERVICE_ACCOUNT_DIR) -> ApiEndpoint:
    host = env.get("KUBERNETES_SERVICE_HOST", "")
    port = env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port.isdigit():
        raise ConfigError("not in a pod (KUBERNETES_SERVICE_HOST/PORT unset): pass --kubeconfig "
                          "FILE, or --no-kube to run without the API")
    ca, token = sa_dir / "ca.crt", sa_dir / "token"
    if not token.is_file():
        raise ConfigError(f"no service account token at {token}: set "
                          "automountServiceAccountToken: true, or pass --no-kube")
    try:
        ctx = ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"cannot load the cluster CA {ca}: {err}") from err
    return ApiEndpoint("https", host.strip("[]"), int(port), "", ctx, TokenFile(token),
                       TlsSource(ca_path=ca))


def from_kubeconfig(path: Path) -> ApiEndpoint:
    cfg = _load(path)
    base = path.resolve().parent
    ctx_name = cfg.get("current-context") or ""
    context = _named(cfg, "contexts", ctx_name, path).get("context") or {}
    cluster = _named(cfg, "clusters", context.get("cluster", ""), path).get("cluster") or {}
    user_name = context.get("user", "")
    user = (_named(cfg, "users", user_name, path).get("user") or {}) if user_name else {}
    for plugin in ("exec", "auth-provider"):
        if user.get(plugin):
            raise ConfigError(f"{path}: user {user_name!r} authenticates with an {plugin} plugin, "
                              "which CarbonTrack does not run; use a token or client certificate")
    server = urlsplit(str(cluster.get("server", "")))
    if server.scheme not in ("https", "http") or not server.hostname:
        raise ConfigError(f"{path}: cluster server {cluster.get('server')!r} is not an "
                          "http(s) URL")
    port = server.port or (443 if server.scheme == "https" else 80)
    ctx, tls = _tls_context(cluster, user, base, path) if server.scheme == "https" else (None, None)
    creds: Credentials = no_credentials
    if user.get("token"):
        creds = static_token(str(user["token"]))
    elif user.get("tokenFile"):
        creds = TokenFile(_path(base, user["tokenFile"]))
    return ApiEndpoint(server.scheme, server.hostname, port, server.path.rstrip("/"), ctx, creds, tls)


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read --kubeconfig {path}: {err.strerror}") from err
    try:
        data = json.loads(text)  # JSON is valid YAML: no YAML parser needed for it
    except ValueError:
        try:
            import yaml  # only for YAML kubeconfigs (the exporter image runs in-cluster)
        except ImportError as err:
            raise ConfigError(f"{path} is YAML and PyYAML is missing: pip install pyyaml, "
                              "or write the kubeconfig as JSON") from err
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            # PyYAML's message quotes the offending line, which may hold a token or key:
            # name the position only, and drop the cause (a traceback would print it)
            raise ConfigError(f"{path} is not a kubeconfig: {yaml_problem(err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a kubeconfig (not a mapping)")
    return data


def _named(cfg: Mapping[str, Any], key: str, name: str, path: Path) -> dict[str, Any]:
    for item in cfg.get(key) or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    raise ConfigError(f"{path}: no {key[:-1]} named {name!r} (check current-context)")


def _path(base: Path, value: object) -> Path:
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


def _tls_context(cluster: Mapping[str, Any], user: Mapping[str, Any], base: Path,
                 path: Path) -> tuple[ssl.SSLContext, TlsSource]:
    try:
        ca_path, ca_data = None, None
        if cluster.get("insecure-skip-tls-verify"):
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif cluster.get("certificate-authority-data"):
            ca_data = base64.b64decode(cluster["certificate-authority-data"])
            ctx = ssl.create_default_context(cadata=ca_data.decode())
        elif cluster.get("certificate-authority"):
            ca_path = _path(base, cluster["certificate-authority"])
            ctx = ssl.create_default_context(cafile=str(ca_path))
        else:
            ctx = ssl.create_default_context()  # the system's CAs (a public endpoint)
        cert = _pem(user, "client-certificate", base)
        key = _pem(user, "client-key", base)
        if cert is not None:
            key = key if key is not None else cert
            _load_cert_chain(ctx, cert, key)
    except (OSError, ssl.SSLError, ValueError) as err:
        raise ConfigError(f"{path}: cannot set up TLS: {err}") from err
    insecure = bool(cluster.get("insecure-skip-tls-verify"))
    return ctx, TlsSource(ca_path, ca_data, insecure, cert, key if cert is not None else None)


def _pem(user: Mapping[str, Any], field: str, base: Path) -> bytes | None:
    if user.get(f"{field}-data"):
        return base64.b64decode(user[f"{field}-data"])
    if user.get(field):
        return _path(base, user[field]).read_bytes()
    return None


def _load_cert_chain(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    # ssl loads a client certificate from files only: write both to a private temporary
    # directory, load, and remove them at once
    with tempfile.TemporaryDirectory(prefix="carbontrack-tls-") as d:
        cert_file, key_file = Path(d) / "cert.pem", Path(d) / "key.pem"
        for f, data in ((cert_file, cert), (key_file, key)):
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        ctx.load_cert_chain(str(cert_file), str(key_file))
