"""etcd's ``transport.TLSInfo``: the settings of one side (client or peer) and the ``ssl``
contexts made from them (``ServerConfig``/``ClientConfig``), with etcd's messages.

TLS 1.2 or later; ``--cipher-suites`` (Go's names) limits the TLS 1.2 suites. A server asks for
and verifies client certificates when ``client_cert_auth`` is on or a trusted CA file is given
(against that file, or the system's CAs without one), as etcd's ``RequireAndVerifyClientCert``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from etcdpy.config import ConfigError, go_quote
from etcdpy.tls.ciphers import TLS13_ONLY, openssl_ciphers

__all__ = ["ALPN_PROTOCOLS", "TLSInfo", "TLSSetupError", "client_context", "server_context"]

# OpenSSL picks the first of ours the client offers. gRPC clients offer h2 alone (grpc-go,
# grpc-js) or with grpc-exp (grpc-core) and get h2; clients that offer both (curl, browsers)
# get http/1.1, because etcdpy's HTTP/2 serves gRPC only and its HTTP/1.1 serves /health,
# /metrics and the gateway. (etcd serves those over HTTP/2 as well.)
ALPN_PROTOCOLS = ("http/1.1", "h2")


class TLSSetupError(ConfigError):
    """The TLS settings cannot work; etcd refuses to start with this message."""


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """One side's TLS settings after auto TLS (etcd's ``TLSInfo``)."""

    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    crl_file: str = ""
    allowed_cn: str = ""
    allowed_hostname: str = ""
    skip_client_san_verify: bool = False
    cipher_suites: tuple[str, ...] = ()  # Go's names, as given to --cipher-suites
    self_cert: bool = False  # made by --auto-tls/--peer-auto-tls: the other side is not verified

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


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        reason = (err.strerror or str(err)).lower()
        raise TLSSetupError(f"open {path}: {reason}") from None


def _load_key_pair(ctx: ssl.SSLContext, info: TLSInfo) -> None:
    if not info.key_file or not info.cert_file:
        raise TLSSetupError(
            f"KeyFile and CertFile must both be present[key: {info.key_file}, "
            f"cert: {info.cert_file}]"
        )
    if b"-----BEGIN" not in _read(info.cert_file):
        raise TLSSetupError("tls: failed to find any PEM data in certificate input")
    if b"-----BEGIN" not in _read(info.key_file):
        raise TLSSetupError("tls: failed to find any PEM data in key input")
    try:
        ctx.load_cert_chain(info.cert_file, info.key_file)
    except ssl.SSLError as err:
        if err.reason == "KEY_VALUES_MISMATCH":
            raise TLSSetupError("tls: private key does not match public key") from None
        raise TLSSetupError(f"tls: {err.reason or err}") from None
    if info.allowed_cn and info.allowed_hostname:
        raise TLSSetupError(
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
        raise TLSSetupError(f"x509: cannot parse {path}: {err.reason or err}") from None


def _new_context(purpose: int, info: TLSInfo) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ciphers = openssl_ciphers(info.cipher_suites)
    if ciphers == TLS13_ONLY:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3  # no TLS 1.2 suite left, as in Go
    elif ciphers is not None:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError:
            names = " ".join(info.cipher_suites)
            raise TLSSetupError(
                f"none of the cipher suites [{names}] is available in this OpenSSL"
            ) from None
    return ctx


def server_context(info: TLSInfo, alpn: bool = False) -> ssl.SSLContext:
    """A listener's context (etcd's ``TLSInfo.ServerConfig``); ``alpn``: offer h2, http/1.1."""
    ctx = _new_context(ssl.PROTOCOL_TLS_SERVER, info)
    _load_key_pair(ctx, info)
    if info.requires_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if info.trusted_ca_file:
            _load_trusted_ca(ctx, info.trusted_ca_file)
        else:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    if alpn:
        ctx.set_alpn_protocols(list(ALPN_PROTOCOLS))
    return ctx


def client_context(info: TLSInfo) -> ssl.SSLContext:
    """The context for dialling (etcd's ``TLSInfo.ClientConfig``)."""
    ctx = _new_context(ssl.PROTOCOL_TLS_CLIENT, info)
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
