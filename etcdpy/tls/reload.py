"""A server context that follows its files: each new connection gets the certificate, key and
CA that are on disk now, without a restart (cert-manager renews certificates in place).

etcd 3.4 re-reads the certificate and key on every handshake (``GetCertificate``). Here the
listener's context has an SNI callback, which OpenSSL runs for every ClientHello (with or
without a server name); it stats the files (a few microseconds) and, when one changed, builds a
new context and hands it to the connection (``SSLObject.context``). Files that no longer load
(a renewal half written) leave the last good context in use, with a warning, where etcd fails
the handshake. The CA file is followed too (etcd reads it once).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable

import structlog

from etcdpy.tls.info import TLSInfo, TLSSetupError, server_context

__all__ = ["ReloadingServerContext"]

log = structlog.get_logger(__name__)

_Stamp = tuple[tuple[int, int, int] | None, ...]


def _stamp(paths: tuple[str, ...]) -> _Stamp:
    stamps: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stamps.append(None)
        else:
            stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


class ReloadingServerContext:
    """``listening`` is the context to listen with; its connections get ``current()``."""

    def __init__(
        self,
        info: TLSInfo,
        alpn: bool = True,
        build: Callable[[TLSInfo, bool], ssl.SSLContext] = server_context,
    ) -> None:
        self.info = info
        self._alpn = alpn
        self._build = build
        self._paths = tuple(p for p in (info.cert_file, info.key_file, info.trusted_ca_file) if p)
        self._stamp = _stamp(self._paths)
        self.listening = build(info, alpn)  # raises TLSSetupError: the member does not start
        self.listening.sni_callback = self._on_client_hello
        self._current = self.listening
        self.reloads = 0

    def current(self) -> ssl.SSLContext:
        """The context for a new connection, rebuilt first if a file changed."""
        stamp = _stamp(self._paths)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._current = self._build(self.info, self._alpn)
            except TLSSetupError as err:
                log.warning(
                    "failed to reload certificates; serving with the previous ones",
                    cert_file=self.info.cert_file,
                    key_file=self.info.key_file,
                    error=str(err),
                )
            else:
                self.reloads += 1
                log.info("reloaded certificates", cert_file=self.info.cert_file)
        return self._current

    def _on_client_hello(
        self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        current = self.current()
        if current is not context:
            ssl_object.context = current
