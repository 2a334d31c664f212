"""TLS and authentication for the metrics endpoints (the exporter's and the operator's).

Their ``/metrics`` publish every tenant's namespaces, pod and Job names and energy.
NetworkPolicies limit who can connect; this limits who may read, with the settings a
Prometheus scrape config has for it (``scheme: https``, ``tls_config``, ``authorization``):

- ``--tls-cert-file``/``--tls-key-file``: serve HTTPS (PEM files, e.g. a mounted
  ``kubernetes.io/tls`` Secret).
- ``--tls-client-ca-file``: ``/metrics`` also needs a client certificate signed by this CA
  (mutual TLS). The handshake asks for one and verifies any that is sent (CERT_OPTIONAL), and
  the request is refused when none was sent, so that the kubelet's HTTPS probes, which send
  none, can still reach ``/healthz``.
- ``--auth-token-file``: ``/metrics`` needs ``Authorization: Bearer <token>``, compared in
  constant time. The file is re-read when it changes (the kubelet updates a mounted Secret in
  place), so a token rotates without a restart; an unreadable or empty file refuses every
  scrape (fails closed) instead of serving.

``/healthz`` stays open: it says only "ok" and the version, and probes carry no credentials.
Certificates are read once at start: rotate them with a restart (a rollout).
"""

from __future__ import annotations

import argparse
import hmac
import logging
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger("carbontrack.scrapeauth")

REALM = 'Bearer realm="carbontrack metrics"'  # the WWW-Authenticate answer of a refusal


@dataclass(frozen=True)
class ScrapeSecurity:
    """What a metrics endpoint requires; all ``None``: plain HTTP, open (the default)."""

    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    client_ca_file: Path | None = None
    token_file: Path | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context (TLS 1.2 or later), or None for plain HTTP."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(
                f"--tls-cert-file {self.tls_cert_file} / --tls-key-file {self.tls_key_file}: "
                f"cannot load the certificate and key ({err}); give PEM files of one key pair"
            ) from err
        if self.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=str(self.client_ca_file))
            except (OSError, ssl.SSLError) as err:
                raise ConfigError(f"--tls-client-ca-file {self.client_ca_file}: cannot load "
                                  f"the CA certificates ({err}); give a PEM file") from err
            # verified when sent; /metrics refuses a request without one (ScrapeGuard)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def guard(self) -> ScrapeGuard:
        token = TokenFile(self.token_file) if self.token_file is not None else None
        return ScrapeGuard(token, client_cert_required=self.client_ca_file is not None)


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("metrics endpoint security (docs/helm.md, 'Authenticated scraping')")
    g.add_argument("--tls-cert-file", type=Path, default=None,
                   help="serve HTTPS with this PEM certificate (chain); needs --tls-key-file")
    g.add_argument("--tls-key-file", type=Path, default=None, help="PEM private key of --tls-cert-file")
    g.add_argument("--tls-client-ca-file", type=Path, default=None,
                   help="/metrics needs a client certificate signed by a CA in this PEM file")
    g.add_argument("--auth-token-file", type=Path, default=None,
                   help="/metrics needs 'Authorization: Bearer <the file's content>'")


def from_args(a: argparse.Namespace) -> ScrapeSecurity:
    """Settings from :func:`add_arguments`' flags; a wrong combination or a missing file is
    a ConfigError naming the flag (start-up stops rather than serving unprotected)."""
    if (a.tls_cert_file is None) != (a.tls_key_file is None):
        raise ConfigError("--tls-cert-file and --tls-key-file go together: pass both, or neither "
                          "for plain HTTP")
    if a.tls_client_ca_file is not None and a.tls_cert_file is None:
        raise ConfigError("--tls-client-ca-file needs TLS: pass --tls-cert-file and --tls-key-file")
    for flag, path in (("--tls-cert-file", a.tls_cert_file), ("--tls-key-file", a.tls_key_file),
                       ("--tls-client-ca-file", a.tls_client_ca_file),
                       ("--auth-token-file", a.auth_token_file)):
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(f"{flag} {path}: not a readable file (is the Secret mounted?)")
    security = ScrapeSecurity(a.tls_cert_file, a.tls_key_file, a.tls_client_ca_file,
                              a.auth_token_file)
    security.ssl_context()  # a bad certificate stops start-up with its ConfigError
    if a.auth_token_file is not None and not TokenFile(a.auth_token_file).current():
        raise ConfigError(f"--auth-token-file {a.auth_token_file}: the token is empty")
    return security


class TokenFile:
    """The bearer token in a file, re-read when the file changes (inode, size or mtime)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._token = b""

    def current(self) -> bytes:
        """The token (surrounding whitespace removed); empty when the file cannot be read."""
        with self._lock:
            try:
                st = os.stat(self.path)
                stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
                if stamp != self._stamp:
                    self._token = self.path.read_bytes().strip()
                    self._stamp = stamp
            except OSError as err:
                if self._stamp is not None or self._token:
                    log.error("auth token file %s unreadable (%s): refusing scrapes",
                              self.path, err.strerror)
                self._stamp, self._token = None, b""
            return self._token


class ScrapeGuard:
    """Decides whether one request to ``/metrics`` may be answered."""

    def __init__(self, token: TokenFile | None, *, client_cert_required: bool) -> None:
        self.token = token
        self.client_cert_required = client_cert_required

    @property
    def open(self) -> bool:
        return self.token is None and not self.client_cert_required

    def allows(self, authorization: str | None, peer_cert: object) -> bool:
        """``authorization``: the request's header (None if absent); ``peer_cert``: the TLS
        connection's verified client certificate (``getpeercert()``; empty/None if none)."""
        if self.client_cert_required and not peer_cert:
            return False
        if self.token is None:
            return True
        expected = self.token.current()
        if not expected or authorization is None:
            return False
        scheme, _, given = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode("latin-1", "replace"), expected)
