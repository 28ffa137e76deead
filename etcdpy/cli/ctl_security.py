"""etcdpyctl's transport security: which endpoints speak TLS and with what, as etcdctl 3.4 and
clientv3 decide it (ctlv3/command/global.go ``newClientCfg``, clientv3 ``processCreds``).

- ``http://host:port``: plain text, always (even with TLS flags).
- ``https://host:port``: TLS; trusted CAs from ``--cacert``, else the system's.
- ``host:port``: TLS when any of ``--cacert --cert --key`` is given or
  ``--insecure-transport=false``, plain text otherwise.

``--insecure-skip-tls-verify`` skips the check of the server's certificate. grpcio cannot switch
verification off, so the server's certificate is fetched first and pinned as the only trusted
one: any certificate is accepted, but the connection is to the server that showed it. Better
than etcdctl 3.4 here: etcdctl ignores the flag for an https endpoint unless another TLS flag
or ``--insecure-transport=false`` is also given.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from etcdpy.cli.ctl_errors import EXIT_BAD_ARGS, CtlError

__all__ = ["Endpoint", "TlsSettings", "parse_endpoint"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint as clientv3 parses it: the gRPC target and the scheme it was given with."""

    target: str  # host:port
    scheme: str  # "http", "https" or "" (none given)

    @property
    def host(self) -> str:
        return urlsplit(f"//{self.target}").hostname or self.target

    @property
    def port(self) -> int:
        return urlsplit(f"//{self.target}").port or 2379


def parse_endpoint(text: str) -> Endpoint:
    for scheme in ("http", "https"):
        if text.startswith(f"{scheme}://"):
            return Endpoint(text.removeprefix(f"{scheme}://").rstrip("/"), scheme)
    return Endpoint(text, "")


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        reason = (err.strerror or str(err)).lower()
        raise CtlError(f"open {path}: {reason}", EXIT_BAD_ARGS) from None


def _check_key_pair(cert_pem: bytes, key_pem: bytes) -> None:
    """Go's tls.X509KeyPair checks, so a bad file is named now, not as a dial timeout."""
    from cryptography import x509  # here: 30 ms that commands without TLS need not pay
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError:
        raise CtlError("tls: failed to find any PEM data in certificate input",
                       EXIT_BAD_ARGS) from None  # fmt: skip
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise CtlError("tls: failed to find any PEM data in key input", EXIT_BAD_ARGS) from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if cert.public_key().public_bytes(encoding, public) != key.public_key().public_bytes(
        encoding, public
    ):
        raise CtlError("tls: private key does not match public key", EXIT_BAD_ARGS)


def _check_ca(path: str, pem: bytes) -> None:
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        # Better than etcdctl, which trusts nothing and then times out at the handshake.
        raise CtlError(f"{path}: no PEM certificate found", EXIT_BAD_ARGS) from None


def _system_roots() -> bytes | None:
    """The system's CA bundle (what Go reads; SSL_CERT_FILE is honoured), else grpc's own."""
    cafile = ssl.get_default_verify_paths().cafile
    if cafile and Path(cafile).is_file():
        return Path(cafile).read_bytes()
    return None


@dataclass(frozen=True)
class TlsSettings:
    """The TLS flags; ``credentials`` gives what to dial one endpoint with (None: plain)."""

    cert: str = ""
    key: str = ""
    cacert: str = ""
    insecure_transport: bool = True
    insecure_skip_verify: bool = False

    @property
    def any_file(self) -> bool:
        return bool(self.cert or self.key or self.cacert)

    def check(self) -> None:
        """etcdctl's errors for files that cannot be used (exit 128), before any dial."""
        if self.cert or self.key:
            if not (self.cert and self.key):
                raise CtlError(f"KeyFile and CertFile must both be present[key: {self.key}, "
                               f"cert: {self.cert}]", EXIT_BAD_ARGS)  # fmt: skip
            _check_key_pair(_read(self.cert), _read(self.key))
        if self.cacert:
            _check_ca(self.cacert, _read(self.cacert))

    def uses_tls(self, endpoint: Endpoint) -> bool:
        if endpoint.scheme == "http":
            return False
        if endpoint.scheme == "https":
            return True
        return self.any_file or not self.insecure_transport

    def credentials(
        self, endpoint: Endpoint, timeout: float
    ) -> tuple[grpc.ChannelCredentials, list[tuple[str, str]]] | None:
        """Channel credentials and options for ``endpoint``, or None for plain text."""
        if not self.uses_tls(endpoint):
            return None
        chain = _read(self.cert) if self.cert else None
        key = _read(self.key) if self.key else None
        options: list[tuple[str, str]] = []
        if self.insecure_skip_verify:
            roots, name = _pinned_certificate(endpoint, self.cert, self.key, timeout)
            if name is not None:
                options.append(("grpc.ssl_target_name_override", name))
        else:
            roots = _read(self.cacert) if self.cacert else _system_roots()
        return grpc.ssl_channel_credentials(roots, key, chain), options


def _pinned_certificate(
    endpoint: Endpoint, cert: str, key: str, timeout: float
) -> tuple[bytes | None, str | None]:
    """The server's own certificate (PEM) as the only root, and a name it is valid for when
    the endpoint's host is not one. (None, None) when the server cannot be reached now: the
    dial then fails as any unreachable endpoint does."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # on purpose: the user asked to skip verification
    context.set_alpn_protocols(["h2"])
    if cert and key:
        context.load_cert_chain(cert, key)
    try:
        with (
            socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=endpoint.host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None, None
    if der is None:
        return None, None
    return ssl.DER_cert_to_PEM_cert(der).encode("ascii"), _name_for(der, endpoint.host)


def _name_for(der: bytes, host: str) -> str | None:
    """A name the certificate is valid for: None when ``host`` is one of them."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    dns = [str(n) for n in sans.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    try:
        if str(ipaddress.ip_address(host)) in ips:
            return None
    except ValueError:
        if host in dns:
            return None
    if dns:
        return dns[0]
    if ips:
        return ips[0]
    common = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(common[0].value) if common else None
