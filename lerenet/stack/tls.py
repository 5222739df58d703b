"""A private certificate authority for the local stack's internal ports (mutual TLS).

SeaweedFS's S3 gateway checks credentials, but its master, volume and filer servers listen on
their own ports and, left as they are, serve and accept bucket contents from anyone who can
reach 127.0.0.1. Their gRPC ports and the master's HTTP port accept only clients holding a
certificate from this CA (JWT signing covers the filer and volume HTTP ports); the CA and its
one leaf certificate live in the stack's state directory, readable by its owner only.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

VALID_DAYS = 365


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def stack_tls(directory: Path) -> TlsFiles:
    """The CA and a leaf certificate (server and client use) under ``directory``; made on first
    use and again when a file is missing or the certificate expires within a day."""
    from cryptography import x509

    files = TlsFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    now = datetime.datetime.now(datetime.UTC)
    if all(p.exists() for p in (files.ca, files.cert, files.key)):
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        if cert.not_valid_after_utc > now + datetime.timedelta(days=1):
            return files
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_pem, cert_pem, key_pem = _issue(now)
    _write_private(files.ca, ca_pem)
    _write_private(files.cert, cert_pem)
    _write_private(files.key, key_pem)
    return files


def _issue(now: datetime.datetime) -> tuple[bytes, bytes, bytes]:
    """PEM bytes of a fresh CA, a leaf signed by it (localhost, 127.0.0.1) and the leaf's key.

    The CA's key is not kept: nothing else is ever signed with it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def builder(subject: str, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("lerenet-stack-ca", name("lerenet-stack-ca"), ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    hosts = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    leaf = (
        builder("lerenet-stack", ca.subject, key.public_key())
        .add_extension(x509.SubjectAlternativeName(hosts), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca.public_bytes(pem), leaf.public_bytes(pem), key_pem
