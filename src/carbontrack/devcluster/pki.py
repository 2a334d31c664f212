"""The local cluster's PKI: a CA, the apiserver's serving certificate, an admin client
certificate in ``system:masters`` and the service-account signing key pair.

Keys are EC P-256: generating them takes milliseconds (RSA-2048 takes ~100 ms each
on a slow core and buys nothing for a throw-away cluster). Everything is written
with mode 0600 into one directory per cluster.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Certificates outlive any test run or demo; a fixed lifetime keeps them reproducible.
VALIDITY = dt.timedelta(days=365)
SERVICE_CLUSTER_IP = "10.96.0.1"  # first address of --service-cluster-ip-range


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files (all in one directory)."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.dir / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.dir / "admin.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, now: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + VALIDITY)
    )


def create_pki(
    directory: Path, now: dt.datetime | None = None, *, extra_ips: tuple[str, ...] = ()
) -> Pki:
    """Write a fresh PKI into ``directory`` and return its paths. ``extra_ips``: more
    addresses the apiserver is reached at (a real node's pods reach it on the host's
    address, see realnode.py)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)

    ca_key = _key()
    ca_name = _name("carbontrack-devcluster-ca")
    ca = (
        _builder(ca_name, ca_name, ca_key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(pki.ca_key, _key_pem(ca_key))
    _write(pki.ca_cert, ca.public_bytes(serialization.Encoding.PEM))

    def leaf(
        cn: str, org: str | None, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]
    ) -> tuple[bytes, bytes]:
        key = _key()
        b = _builder(_name(cn, org), ca_name, key, now).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    # The apiserver is reached as 127.0.0.1/localhost here and as the in-cluster
    # "kubernetes" Service names by anything that resolves them.
    serving_san: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address(SERVICE_CLUSTER_IP)),
        *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in extra_ips),
    ]
    cert, key = leaf("kube-apiserver", None, ExtendedKeyUsageOID.SERVER_AUTH, serving_san)
    _write(pki.apiserver_cert, cert)
    _write(pki.apiserver_key, key)
    # system:masters is bound to cluster-admin by the bootstrap RBAC policy.
    cert, key = leaf("carbontrack-admin", "system:masters", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    _write(pki.admin_cert, cert)
    _write(pki.admin_key, key)

    sa = _key()
    _write(pki.sa_key, _key_pem(sa))
    _write(
        pki.sa_pub,
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return pki


def issue_client_cert(
    pki: Pki, cn: str, org: str | None, cert_path: Path, key_path: Path,
    now: dt.datetime | None = None,
) -> None:
    """A client certificate signed by the cluster CA (a kubelet's ``system:node:<name>`` in
    ``system:nodes``, so the Node authorizer scopes what it may touch)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    cert = (
        _builder(_name(cn, org), ca.subject, key, now)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _write(key_path, _key_pem(key))


def issue_serving_cert(
    pki: Pki, cn: str, ips: tuple[str, ...], cert_path: Path, key_path: Path,
    now: dt.datetime | None = None,
) -> None:
    """A server certificate for ``ips`` signed by the cluster CA: a webhook the API server
    calls by URL on the host (Kueue's) is then trusted with the CA's PEM as caBundle."""
    now = now or dt.datetime.now(dt.timezone.utc)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    cert = (
        _builder(_name(cn), ca.subject, key, now)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _write(key_path, _key_pem(key))
