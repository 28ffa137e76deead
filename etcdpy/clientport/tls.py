"""Client TLS: the TLS of the client and metrics URLs, as etcd 3.4 sets it up
(``embed.configureClientListeners``, ``serveClients``, ``serveMetrics``), with its messages.

- ``--auto-tls`` without ``--cert-file``/``--key-file`` makes a self-signed certificate under
  ``<data-dir>/fixtures/client``; with certificate files it is ignored with a warning.
- An https client URL needs ``--cert-file`` and ``--key-file``; an http one ignores them and
  ``--client-cert-auth`` (warnings). An https metrics URL without them cannot listen.
- ``--client-cert-auth`` or ``--trusted-ca-file``: every client must present a certificate
  the CA file signed (the system's CAs without one); ``--client-crl-file`` rejects revoked
  ones after the handshake and ``--client-cert-allowed-hostname`` ones that do not name that
  host (etcd checks both after verification too).
- ``--cipher-suites`` (Go's names) is checked first, even without TLS, as etcd does.

One TLS port serves gRPC (ALPN h2) and HTTP/1.1, sorted by the sniffer on the decrypted bytes.
The certificate, key and CA files are re-read when they change (``etcdpy.tls.reload``). The
front-end processes get these settings as JSON (``to_json``/``from_json``) and serve TLS on
their own sockets.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
from pathlib import Path

import structlog
from cryptography import x509

from etcdpy.config import TLS_SCHEMES, URL, ServerConfig
from etcdpy.tls.checks import CrlCache, check_identity, peer_certificate
from etcdpy.tls.ciphers import openssl_ciphers
from etcdpy.tls.info import TLSInfo, TLSSetupError
from etcdpy.tls.reload import ReloadingServerContext
from etcdpy.tls.self_cert import self_cert

__all__ = ["ClientTLS", "client_tls_info", "load_client_tls"]

log = structlog.get_logger(__name__)


def client_tls_info(cfg: ServerConfig) -> TLSInfo:
    """etcd's ``ClientTLSInfo`` from the flags (before auto TLS)."""
    return TLSInfo(
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        trusted_ca_file=cfg.trusted_ca_file,
        client_cert_auth=cfg.client_cert_auth,
        crl_file=cfg.client_crl_file,
        allowed_hostname=cfg.client_cert_allowed_hostname,
        cipher_suites=cfg.cipher_suites,
    )


class ClientTLS:
    """The server context of the TLS client and metrics URLs, and etcd's checks after the
    handshake."""

    def __init__(self, info: TLSInfo) -> None:
        self.info = info
        self.contexts = ReloadingServerContext(info)
        self._crl = CrlCache(info.crl_file) if info.crl_file else None

    @property
    def listening(self) -> ssl.SSLContext:
        return self.contexts.listening

    def check_accepted(self, ssl_object: ssl.SSLObject | None) -> None:
        """After the handshake; raises CertRejected (the connection is then closed)."""
        if not self.info.allowed_hostname and self._crl is None:
            return
        cert: x509.Certificate | None = peer_certificate(ssl_object)
        if self.info.requires_client_cert:
            check_identity(self.info, cert)
        if cert is not None and self._crl is not None:
            self._crl.check(cert)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self.info))

    @classmethod
    def from_json(cls, text: str) -> ClientTLS:
        fields = json.loads(text)
        fields["cipher_suites"] = tuple(fields["cipher_suites"])
        return cls(TLSInfo(**fields))


def _address(url: URL) -> str:
    host = "127.0.0.1" if url.host == "localhost" else url.host
    return f"[{host}]:{url.port}" if ":" in host else f"{host}:{url.port}"


def load_client_tls(cfg: ServerConfig, quiet: bool = False) -> ClientTLS | None:
    """The client TLS of a member (None: no https client or metrics URL).

    Raises TLSSetupError (or ConfigError for --cipher-suites) with etcd's message when it
    cannot work; ``quiet`` leaves the warnings unlogged (a check before the real start)."""
    openssl_ciphers(cfg.cipher_suites)  # etcd's updateCipherSuites comes first
    info = client_tls_info(cfg)
    if cfg.auto_tls:
        if not info.empty:
            if not quiet:
                log.warning("ignoring client auto TLS since certs given")
        else:
            hosts = [url.host for url in cfg.listen_client_urls]
            directory = Path(cfg.data_dir) / "fixtures" / "client"
            try:
                cert, key = self_cert(directory, hosts)
            except OSError as err:
                raise TLSSetupError(f"failed to get client self-signed certs: {err}") from None
            info = dataclasses.replace(info, cert_file=str(cert), key_file=str(key), self_cert=True)
    secure = False
    for url in cfg.listen_client_urls:
        if url.scheme not in TLS_SCHEMES:
            if not quiet and not info.empty:
                log.warning(
                    "scheme is HTTP while key and cert files are present; ignoring key and "
                    "cert files",
                    client_url=str(url),
                )
            if not quiet and info.client_cert_auth:
                log.warning(
                    "scheme is HTTP while --client-cert-auth is enabled; ignoring client cert "
                    "auth for this URL",
                    client_url=str(url),
                )
            continue
        if info.empty:
            raise TLSSetupError(
                "TLS key/cert (--cert-file, --key-file) must be provided for client url "
                f"{url} with HTTPS scheme"
            )
        secure = True
    for url in cfg.listen_metrics_urls:
        if url.scheme in TLS_SCHEMES:
            if info.empty:
                raise TLSSetupError(
                    f"cannot listen on TLS for {_address(url)}: KeyFile and CertFile are not "
                    "presented"
                )
            secure = True
    if not secure:
        return None
    tls = ClientTLS(info)  # loads the files now: a bad one stops the start
    if not quiet:
        log.info(
            "starting with client TLS",
            tls_info=info.describe(),
            cipher_suites=list(cfg.cipher_suites),
        )
    return tls
