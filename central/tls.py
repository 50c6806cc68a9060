"""Central's own certificate authority for the tunnel, created in data_dir on first start.

Local proxies fetch the CA certificate through the API and pin it; the tunnel's server
certificate is issued by this CA for the tunnel's listen address. The CA key never leaves
data_dir (mode 0600). The server certificate is re-issued when the listen host changes or it
nears expiry; the CA stays, so pinned clients keep working.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 397
RENEW_BEFORE = dt.timedelta(days=30)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _san(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        ip = ipaddress.ip_address(host)
        if str(ip) != "127.0.0.1":
            names.append(x509.IPAddress(ip))
    except ValueError:
        names.append(x509.DNSName(host))
    names.append(x509.DNSName("localhost"))
    return names


class TunnelTLS:
    def __init__(self, directory: Path, ca_pem: bytes) -> None:
        self.directory = directory
        self.ca_pem = ca_pem

    @property
    def ca_sha256(self) -> str:
        cert = x509.load_pem_x509_certificate(self.ca_pem)
        return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    @classmethod
    def load_or_create(cls, data_dir: Path, host: str) -> TunnelTLS:
        directory = data_dir / "tls"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        ca_cert_path, ca_key_path = directory / "ca.pem", directory / "ca.key"
        if not ca_cert_path.exists():
            _create_ca(ca_cert_path, ca_key_path)
        tls = cls(directory, ca_cert_path.read_bytes())
        tls._ensure_server_cert(host, ca_key_path)
        return tls

    def _ensure_server_cert(self, host: str, ca_key_path: Path) -> None:
        cert_path = self.directory / "server.pem"
        wanted = _san(host)
        if cert_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            fresh = cert.not_valid_after_utc - RENEW_BEFORE > dt.datetime.now(dt.UTC)
            if fresh and set(sans) == set(wanted):
                return
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca = x509.load_pem_x509_certificate(self.ca_pem)
        key, cert = issue_server_cert(ca_key, ca, host, days=SERVER_DAYS)
        _write_private(self.directory / "server.key", key_pem(key))
        cert_path.write_bytes(pem(cert))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.directory / "server.pem", self.directory / "server.key")
        return ctx


def make_ca(
    common_name: str, *, days: int = CA_DAYS
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh CA key and self-signed certificate that may sign server certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, host: str, *, days: int
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server certificate for `host` (and 127.0.0.1, localhost) signed by the CA.

    It carries the key identifiers that strict verifiers (Python 3.13's default context sets
    VERIFY_X509_STRICT) insist on, so pinned clients keep working on newer Pythons.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_san(host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, key_agreement=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _key_usage(
    *, digital_signature: bool = False, key_agreement: bool = False, key_cert_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=key_cert_sign,
        crl_sign=key_cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _create_ca(cert_path: Path, key_path: Path) -> None:
    key, cert = make_ca("Watchgate tunnel CA")
    _write_private(key_path, key_pem(key))
    cert_path.write_bytes(pem(cert))
