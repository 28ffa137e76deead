"""Peer TLS: the TLS settings of the peer listeners and of connections to other members.

What etcd 3.4 does (``embed.configurePeerListeners``, ``pkg/transport.TLSInfo``), with its
messages:

- ``--peer-auto-tls`` without ``--peer-cert-file``/``--peer-key-file`` makes a self-signed
  certificate under ``<data-dir>/fixtures/peer`` (etcdpy.tls.self_cert); members using it
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
- TLS 1.2 or later; ``--cipher-suites`` applies here as on the client side.

The contexts and checks are etcd's ``TLSInfo`` of ``etcdpy.tls``, shared with the client side.
etcdpy reads the peer certificate files once at start (etcd re-reads them on every handshake;
the client side here does too, ``etcdpy.tls.reload``) and checks the CRL against the peer's own
certificate only (etcd checks the whole chain).
"""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import structlog
from cryptography import x509

from etcdpy.config import TLS_SCHEMES, UNIX_SCHEMES, URL, ServerConfig
from etcdpy.tls.checks import (
    CrlCache,
    check_client_san,
    check_identity,
    peer_certificate,
)
from etcdpy.tls.info import TLSInfo, TLSSetupError, client_context, server_context
from etcdpy.tls.self_cert import self_cert

__all__ = ["PeerTLS", "load_peer_tls", "peer_tls_info"]

log = structlog.get_logger(__name__)


def peer_tls_info(cfg: ServerConfig) -> TLSInfo:
    """The ``--peer-*`` settings (etcd's ``PeerTLSInfo``) and ``--cipher-suites``."""
    return TLSInfo(
        cert_file=cfg.peer_cert_file,
        key_file=cfg.peer_key_file,
        trusted_ca_file=cfg.peer_trusted_ca_file,
        client_cert_auth=cfg.peer_client_cert_auth,
        crl_file=cfg.peer_crl_file,
        allowed_cn=cfg.peer_cert_allowed_cn,
        allowed_hostname=cfg.peer_cert_allowed_hostname,
        skip_client_san_verify=cfg.experimental_peer_skip_client_san_verification,
        cipher_suites=cfg.cipher_suites,
    )


# -- the peer side's TLS ---------------------------------------------------------------------


class PeerTLS:
    """The contexts and checks the peer transport uses for https peer URLs."""

    def __init__(
        self,
        info: TLSInfo | None = None,
        server: ssl.SSLContext | None = None,
        client: ssl.SSLContext | None = None,
    ) -> None:
        self.info = info or TLSInfo()
        self.server = server  # None: no https listen URL
        self._client = client
        self._crl = CrlCache(self.info.crl_file) if self.info.crl_file else None

    @property
    def client(self) -> ssl.SSLContext:
        """Made on first use when we have no certificate (the system's CAs verify peers)."""
        if self._client is None:
            self._client = client_context(self.info)
        return self._client

    @property
    def verifies_peers(self) -> bool:
        return not self.info.self_cert

    async def check_accepted(self, ssl_object: ssl.SSLObject | None, remote_host: str) -> None:
        """After the handshake on the listener; raises CertRejected."""
        if not self.info.requires_client_cert:
            return
        cert: x509.Certificate | None = peer_certificate(ssl_object)
        check_identity(self.info, cert)
        if cert is None:
            return
        if not self.info.skip_client_san_verify:
            await check_client_san(cert, remote_host)
        if self._crl is not None:
            self._crl.check(cert)

    def check_dialed(self, ssl_object: ssl.SSLObject | None) -> None:
        """After the handshake with a peer we dialled; raises CertRejected."""
        check_identity(self.info, peer_certificate(ssl_object))


def _bound_address(url: URL) -> str:
    if url.scheme in UNIX_SCHEMES:
        return url.netloc  # the socket's path
    host = "127.0.0.1" if url.host == "localhost" else url.host
    return f"[{host}]:{url.port}" if ":" in host else f"{host}:{url.port}"


def load_peer_tls(cfg: ServerConfig, quiet: bool = False) -> PeerTLS:
    """The peer TLS of a member, as etcd sets it up before it listens on the peer URLs.

    Raises TLSSetupError with etcd's message when it cannot work; ``quiet`` leaves the
    warnings unlogged (a check before the real start).
    """
    info = peer_tls_info(cfg)
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
                raise TLSSetupError(f"failed to get peer self-signed certs: {err}") from None
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
            raise TLSSetupError(
                f"cannot listen on TLS for {_bound_address(url)}: KeyFile and CertFile are "
                "not presented"
            )
        if server is None:
            server = server_context(info)
    client = None if info.empty else client_context(info)
    return PeerTLS(info, server, client)
