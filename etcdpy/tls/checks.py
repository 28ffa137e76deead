"""What etcd checks of a certificate after the TLS handshake, with its messages: the allowed CN
or host name (``TLSInfo.AllowedCN``/``AllowedHostname``), a peer client certificate's SANs
against the dialling address (``checkCertSAN``), the revocation list (``checkCRL``); and the
CN of a verified client certificate (etcd's ``AuthInfoFromTLS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import ssl
import warnings
from typing import Final

from cryptography import x509
from cryptography.x509.oid import NameOID

from etcdpy.config import go_quote
from etcdpy.tls.info import TLSInfo

__all__ = [
    "CLIENT_CERT_AUTH_FAILED",
    "CertRejected",
    "CrlCache",
    "check_client_san",
    "check_identity",
    "common_name",
    "matches_host",
    "peer_certificate",
    "verified_common_name",
]

DNS_LOOKUP_TIMEOUT: Final = 5.0
CLIENT_CERT_AUTH_FAILED: Final = "client certificate authentication failed"


class CertRejected(ConnectionError):
    """A certificate passed the TLS handshake but fails one of etcd's own checks."""


_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _alt_names(cert: x509.Certificate) -> tuple[list[_IP], list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    ips = [ip for ip in san.get_values_for_type(x509.IPAddress) if isinstance(ip, _IP)]
    return ips, san.get_values_for_type(x509.DNSName)


def common_name(cert: x509.Certificate) -> str:
    # cryptography warns (a UserWarning on stderr) about attributes longer than X.509 allows,
    # such as C=USA in etcd's own test certificates; Go reads them without a word.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Attribute's length must be", UserWarning)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[-1].value) if names else ""  # Go keeps the last one


def verified_common_name(ssl_object: ssl.SSLObject | None) -> str | None:
    """The CN of the client certificate the handshake verified; None without one.

    ``getpeercert()`` gives the parsed form only for a verified certificate, as etcd reads
    the CN from ``VerifiedChains`` only."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    names = [
        str(attribute[1])
        for rdn in cert.get("subject", ())
        for attribute in rdn
        if attribute[0] == "commonName"
    ]
    return names[-1] if names else ""  # Go keeps the last one


def matches_host(cert: x509.Certificate, host: str) -> bool:
    """Go's ``Certificate.VerifyHostname`` (SANs only): IPs match IP SANs, names DNS SANs."""
    ips, dns_names = _alt_names(cert)
    try:
        return ipaddress.ip_address(host.strip("[]")) in ips
    except ValueError:
        pass
    wanted = host.lower().rstrip(".")
    for pattern in (name.lower().rstrip(".") for name in dns_names):
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == pattern[2:]:
            return True
    return False


def peer_certificate(ssl_object: ssl.SSLObject | None) -> x509.Certificate | None:
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return x509.load_der_x509_certificate(der) if der else None


def check_identity(info: TLSInfo, cert: x509.Certificate | None) -> None:
    """etcd's ``VerifyPeerCertificate`` for ``AllowedCN``/``AllowedHostname``."""
    if not info.allowed_cn and not info.allowed_hostname:
        return
    if cert is None:
        raise CertRejected(CLIENT_CERT_AUTH_FAILED)
    if info.allowed_cn and common_name(cert) != info.allowed_cn:
        raise CertRejected(CLIENT_CERT_AUTH_FAILED)
    if info.allowed_hostname and not matches_host(cert, info.allowed_hostname):
        raise CertRejected(CLIENT_CERT_AUTH_FAILED)


async def _host_in_dns(host: str, dns_names: list[str]) -> bool:
    """Whether ``host`` (an IP) is one of ``dns_names``: reverse lookup, then forward."""
    loop = asyncio.get_running_loop()
    wildcards = [name[1:] for name in dns_names if name.startswith("*.")]
    plain = [name for name in dns_names if not name.startswith("*.")]
    with contextlib.suppress(OSError):
        reverse, _ = await loop.getnameinfo((host, 0), socket.NI_NAMEREQD)
        reverse = reverse.rstrip(".")
        if reverse in plain or any(reverse.endswith(w) for w in wildcards):
            return True
    for name in plain:
        try:
            infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except OSError:
            continue
        if any(info[4][0] == host for info in infos):
            return True
    return False


async def check_client_san(cert: x509.Certificate, host: str) -> None:
    """etcd's ``checkCertSAN``: a client certificate with SANs must name the dialling host."""
    ips, dns_names = _alt_names(cert)
    if not ips and not dns_names:
        return
    if not host:  # a unix socket's dialler has no address: Go's net.SplitHostPort("") fails
        raise CertRejected("missing port in address")
    if ips:
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host) in ips:
                return
        if not dns_names:
            valid = ", ".join(str(ip) for ip in ips)
            raise CertRejected(f"x509: certificate is valid for {valid}, not {host}")
    try:
        found = await asyncio.wait_for(_host_in_dns(host, dns_names), DNS_LOOKUP_TIMEOUT)
    except TimeoutError:
        found = False
    if not found:
        names = " ".join(go_quote(name) for name in dns_names)
        raise CertRejected(f"tls: {go_quote(host)} does not match any of DNSNames [{names}]")


class CrlCache:
    """etcd's ``checkCRL`` (the certificate's serial must not be revoked), with the file
    parsed again only when it changes (etcd reads and parses it on every connection)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._crl: x509.CertificateRevocationList | None = None

    def _load(self) -> x509.CertificateRevocationList:
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if stamp != self._stamp or self._crl is None:
                with open(self.path, "rb") as f:
                    data = f.read()
                self._crl = (
                    x509.load_pem_x509_crl(data)
                    if b"-----BEGIN" in data
                    else x509.load_der_x509_crl(data)
                )
                self._stamp = stamp
        except (OSError, ValueError) as err:
            self._stamp = None
            raise CertRejected(f"cannot read CRL {self.path}: {err}") from None
        return self._crl

    def check(self, cert: x509.Certificate) -> None:
        if self._load().get_revoked_certificate_by_serial_number(cert.serial_number) is None:
            return
        serial = cert.serial_number
        hex_serial = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big").hex()
        raise CertRejected(f"transport: certificate serial {hex_serial} revoked")
