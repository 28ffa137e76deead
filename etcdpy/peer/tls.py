"""Peer TLS: the TLS settings of the peer listeners and of connections to other members.

What etcd 3.4 does (``embed.configurePeerListeners``, ``pkg/transport.TLSInfo``), with its
messages:

- ``--peer-auto-tls`` without ``--peer-cert-file``/``--peer-key-file`` makes a self-signed
  certificate under ``<data-dir>/fixtures/peer`` (etcdpy.peer.self_cert); members using it
  do not verify the certificates of the peers they dial (etcd's InsecureSkipVerify). With
  certificate files given, auto TLS is ignored with a warning.
- An https (or unixs) listen URL needs a certificate and key; an http one ignores them (a
  warning).
- The listener asks for and verifies client certificates when ``--peer-client-cert-auth`` is
  on or a ``--peer-trusted-ca-file`` is given; a verified client certificate must then carry
  the dialling address in its SANs (unless ``--experimental-peer-skip-client-san-verification``),
  must not be listed in ``--peer-crl-file``, and must carry ``--peer-cert-allowed-cn`` or
  ``--peer-cert-allowed-hostname`` when one is set.
- Dialling an https peer verifies its certificate against ``--peer-trusted-ca-file`` (the
  system's CAs without one) and the URL's host, presents our certificate when we have one,
  and checks the allowed CN or host name as well (etcd checks both directions).
- TLS 1.2 or later.

etcdpy reads the certificate files once at start (etcd re-reads them on every handshake) and
checks the CRL against the peer's own certificate only (etcd checks the whole chain).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import socket
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog
from cryptography import x509
from cryptography.x509.oid import NameOID

from etcdpy.config import TLS_SCHEMES, UNIX_SCHEMES, URL, ConfigError, ServerConfig, go_quote
from etcdpy.peer.self_cert import self_cert

__all__ = [
    "PeerCertRejected",
    "PeerTLS",
    "PeerTLSError",
    "PeerTLSInfo",
    "load_peer_tls",
]

log = structlog.get_logger(__name__)

DNS_LOOKUP_TIMEOUT: Final = 5.0
CLIENT_CERT_AUTH_FAILED: Final = "client certificate authentication failed"


class PeerTLSError(ConfigError):
    """The peer TLS settings cannot work; etcd refuses to start with this message."""


class PeerCertRejected(ConnectionError):
    """A peer's certificate passed the TLS handshake but fails one of etcd's own checks."""


@dataclass(frozen=True, slots=True)
class PeerTLSInfo:
    """The peer TLS settings after auto TLS (etcd's ``TLSInfo``)."""

    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    crl_file: str = ""
    allowed_cn: str = ""
    allowed_hostname: str = ""
    skip_client_san_verify: bool = False
    self_cert: bool = False  # made by --peer-auto-tls: peers are not verified

    @property
    def empty(self) -> bool:
        return not self.cert_file and not self.key_file

    @property
    def requires_client_cert(self) -> bool:
        return bool(self.trusted_ca_file) or self.client_cert_auth

    def describe(self) -> str:
        return (
            f"cert = {self.cert_file}, key = {self.key_file}, trusted-ca = "
            f"{self.trusted_ca_file}, client-cert-auth = {str(self.client_cert_auth).lower()}, "
            f"crl-file = {self.crl_file}"
        )

    @classmethod
    def from_config(cls, cfg: ServerConfig) -> PeerTLSInfo:
        return cls(
            cert_file=cfg.peer_cert_file,
            key_file=cfg.peer_key_file,
            trusted_ca_file=cfg.peer_trusted_ca_file,
            client_cert_auth=cfg.peer_client_cert_auth,
            crl_file=cfg.peer_crl_file,
            allowed_cn=cfg.peer_cert_allowed_cn,
            allowed_hostname=cfg.peer_cert_allowed_hostname,
            skip_client_san_verify=cfg.experimental_peer_skip_client_san_verification,
        )


# -- building the contexts ---------------------------------------------------------------------


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        reason = (err.strerror or str(err)).lower()
        raise PeerTLSError(f"open {path}: {reason}") from None


def _load_key_pair(ctx: ssl.SSLContext, info: PeerTLSInfo) -> None:
    if not info.key_file or not info.cert_file:
        raise PeerTLSError(
            f"KeyFile and CertFile must both be present[key: {info.key_file}, "
            f"cert: {info.cert_file}]"
        )
    if b"-----BEGIN" not in _read(info.cert_file):
        raise PeerTLSError("tls: failed to find any PEM data in certificate input")
    if b"-----BEGIN" not in _read(info.key_file):
        raise PeerTLSError("tls: failed to find any PEM data in key input")
    try:
        ctx.load_cert_chain(info.cert_file, info.key_file)
    except ssl.SSLError as err:
        if err.reason == "KEY_VALUES_MISMATCH":
            raise PeerTLSError("tls: private key does not match public key") from None
        raise PeerTLSError(f"tls: {err.reason or err}") from None
    if info.allowed_cn and info.allowed_hostname:
        raise PeerTLSError(
            f"AllowedCN and AllowedHostname are mutually exclusive (cn={go_quote(info.allowed_cn)}"
            f", hostname={go_quote(info.allowed_hostname)})"
        )


def _load_trusted_ca(ctx: ssl.SSLContext, path: str) -> None:
    data = _read(path)
    if b"-----BEGIN" not in data:
        return  # etcd too accepts a file without certificates (and then trusts nobody)
    try:
        ctx.load_verify_locations(cadata=data.decode("ascii", errors="replace"))
    except ssl.SSLError as err:
        raise PeerTLSError(f"x509: cannot parse {path}: {err.reason or err}") from None


def _new_context(purpose: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def server_context(info: PeerTLSInfo) -> ssl.SSLContext:
    """The peer listener's context (etcd's ``TLSInfo.ServerConfig``)."""
    ctx = _new_context(ssl.PROTOCOL_TLS_SERVER)
    _load_key_pair(ctx, info)
    if info.requires_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if info.trusted_ca_file:
            _load_trusted_ca(ctx, info.trusted_ca_file)
        else:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    return ctx


def client_context(info: PeerTLSInfo) -> ssl.SSLContext:
    """The context for dialling https peers (etcd's ``TLSInfo.ClientConfig``)."""
    ctx = _new_context(ssl.PROTOCOL_TLS_CLIENT)
    if not info.empty:
        _load_key_pair(ctx, info)
    if info.self_cert:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif info.trusted_ca_file:
        _load_trusted_ca(ctx, info.trusted_ca_file)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return ctx


# -- checks after the handshake ------------------------------------------------------------------


_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _alt_names(cert: x509.Certificate) -> tuple[list[_IP], list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    ips = [ip for ip in san.get_values_for_type(x509.IPAddress) if isinstance(ip, _IP)]
    return ips, san.get_values_for_type(x509.DNSName)


def _common_name(cert: x509.Certificate) -> str:
    # cryptography warns (a UserWarning on stderr) about attributes longer than X.509 allows,
    # such as C=USA in etcd's own test certificates; Go reads them without a word.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Attribute's length must be", UserWarning)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[-1].value) if names else ""  # Go keeps the last one


def _matches_host(cert: x509.Certificate, host: str) -> bool:
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


def _peer_certificate(ssl_object: ssl.SSLObject | None) -> x509.Certificate | None:
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return x509.load_der_x509_certificate(der) if der else None


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
        raise PeerCertRejected("missing port in address")
    if ips:
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host) in ips:
                return
        if not dns_names:
            valid = ", ".join(str(ip) for ip in ips)
            raise PeerCertRejected(f"x509: certificate is valid for {valid}, not {host}")
    try:
        found = await asyncio.wait_for(_host_in_dns(host, dns_names), DNS_LOOKUP_TIMEOUT)
    except TimeoutError:
        found = False
    if not found:
        names = " ".join(go_quote(name) for name in dns_names)
        raise PeerCertRejected(f"tls: {go_quote(host)} does not match any of DNSNames [{names}]")


def check_crl(crl_file: str, cert: x509.Certificate) -> None:
    """etcd's ``checkCRL``: the certificate's serial must not be in the revocation list."""
    try:
        with open(crl_file, "rb") as f:
            data = f.read()
        crl = (
            x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
        )
    except (OSError, ValueError) as err:
        raise PeerCertRejected(f"cannot read CRL {crl_file}: {err}") from None
    if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
        serial = cert.serial_number
        hex_serial = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big").hex()
        raise PeerCertRejected(f"transport: certificate serial {hex_serial} revoked")


# -- the peer side's TLS ---------------------------------------------------------------------


class PeerTLS:
    """The contexts and checks the peer transport uses for https peer URLs."""

    def __init__(
        self,
        info: PeerTLSInfo | None = None,
        server: ssl.SSLContext | None = None,
        client: ssl.SSLContext | None = None,
    ) -> None:
        self.info = info or PeerTLSInfo()
        self.server = server  # None: no https listen URL
        self._client = client

    @property
    def client(self) -> ssl.SSLContext:
        """Made on first use when we have no certificate (the system's CAs verify peers)."""
        if self._client is None:
            self._client = client_context(self.info)
        return self._client

    @property
    def verifies_peers(self) -> bool:
        return not self.info.self_cert

    def _check_identity(self, cert: x509.Certificate | None) -> None:
        info = self.info
        if not info.allowed_cn and not info.allowed_hostname:
            return
        if cert is None:
            raise PeerCertRejected(CLIENT_CERT_AUTH_FAILED)
        if info.allowed_cn and _common_name(cert) != info.allowed_cn:
            raise PeerCertRejected(CLIENT_CERT_AUTH_FAILED)
        if info.allowed_hostname and not _matches_host(cert, info.allowed_hostname):
            raise PeerCertRejected(CLIENT_CERT_AUTH_FAILED)

    async def check_accepted(self, ssl_object: ssl.SSLObject | None, remote_host: str) -> None:
        """After the handshake on the listener; raises PeerCertRejected."""
        if not self.info.requires_client_cert:
            return
        cert = _peer_certificate(ssl_object)
        self._check_identity(cert)
        if cert is None:
            return
        if not self.info.skip_client_san_verify:
            await check_client_san(cert, remote_host)
        if self.info.crl_file:
            check_crl(self.info.crl_file, cert)

    def check_dialed(self, ssl_object: ssl.SSLObject | None) -> None:
        """After the handshake with a peer we dialled; raises PeerCertRejected."""
        self._check_identity(_peer_certificate(ssl_object))


def _bound_address(url: URL) -> str:
    if url.scheme in UNIX_SCHEMES:
        return url.netloc  # the socket's path
    host = "127.0.0.1" if url.host == "localhost" else url.host
    return f"[{host}]:{url.port}" if ":" in host else f"{host}:{url.port}"


def load_peer_tls(cfg: ServerConfig, quiet: bool = False) -> PeerTLS:
    """The peer TLS of a member, as etcd sets it up before it listens on the peer URLs.

    Raises PeerTLSError with etcd's message when it cannot work; ``quiet`` leaves the
    warnings unlogged (a check before the real start).
    """
    info = PeerTLSInfo.from_config(cfg)
    if cfg.peer_auto_tls:
        if not info.empty:
            if not quiet:
                log.warning("ignoring peer auto TLS since certs given")
        else:
            hosts = [url.host for url in cfg.listen_peer_urls]
            directory = Path(cfg.data_dir) / "fixtures" / "peer"
            try:
                cert, key = self_cert(directory, hosts)
            except OSError as err:
                raise PeerTLSError(f"failed to get peer self-signed certs: {err}") from None
            info = dataclasses.replace(info, cert_file=str(cert), key_file=str(key), self_cert=True)
    if not info.empty and not quiet:
        log.info("starting with peer TLS", tls_info=info.describe())
    server: ssl.SSLContext | None = None
    for url in cfg.listen_peer_urls:
        if url.scheme not in TLS_SCHEMES:
            if not quiet and not info.empty:
                log.warning(
                    "scheme is HTTP while key and cert files are present; ignoring key and "
                    "cert files",
                    peer_url=str(url),
                )
            if not quiet and info.client_cert_auth:
                log.warning(
                    "scheme is HTTP while --peer-client-cert-auth is enabled; ignoring client "
                    "cert auth for this URL",
                    peer_url=str(url),
                )
            continue
        if info.empty:
            raise PeerTLSError(
                f"cannot listen on TLS for {_bound_address(url)}: KeyFile and CertFile are "
                "not presented"
            )
        if server is None:
            server = server_context(info)
    client = None if info.empty else client_context(info)
    return PeerTLS(info, server, client)
