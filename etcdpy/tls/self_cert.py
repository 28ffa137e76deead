"""A self-signed certificate for ``--auto-tls`` and ``--peer-auto-tls``, made once and kept in
the data directory.

The facts are etcd 3.4's (``pkg/transport.SelfCert``): ``cert.pem`` and ``key.pem`` in the
given directory (``<data-dir>/fixtures/client`` or ``<data-dir>/fixtures/peer``), reused when
both exist; otherwise a fresh ECDSA P-521 key, a random 128-bit serial, subject O=etcd, valid
for 365 days from now, key usages digital signature and key encipherment, extended usage server
auth, not a CA, and one subject alternative name per listen host (an IP address or a DNS name).
The key file is private (0600).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["VALIDITY", "self_cert"]

log = structlog.get_logger(__name__)

VALIDITY: Final = datetime.timedelta(days=365)
CERT_NAME: Final = "cert.pem"
KEY_NAME: Final = "key.pem"


def _alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def self_cert(directory: Path, hosts: Sequence[str]) -> tuple[Path, Path]:
    """(cert path, key path) in ``directory``; makes them unless both are already there.

    ``hosts`` are host names or IPs without ports (IPv6 without brackets).
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP521R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etcd")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(secrets.randbits(128) or 1)
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    alt_names = _alt_names(hosts)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert = builder.sign(key, hashes.SHA512())
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("created cert file", path=str(cert_path))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # "EC PRIVATE KEY", as etcd writes it
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    log.info("created key file", path=str(key_path))
    return cert_path, key_path
