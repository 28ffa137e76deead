"""The client port: gRPC and HTTP/1.1 on one listener, as etcd serves them (etcd uses cmux).

The port belongs to this small asyncio listener. It looks at the first bytes of each connection:

- the HTTP/2 client preface (``PRI * HTTP/2.0``) means gRPC: the connection is handed, in this
  process, to the gRPC server (etcdpy.h2grpc), which takes over the transport;
- anything else is HTTP/1.1, answered in this process (/metrics, /health, /version, /v3/...),
  or, in a front-end process (``--frontend-processes``), relayed to the core process's own
  listener on a private unix socket by a byte relay that parses nothing (two transports, each
  one's data written to the other, with back-pressure both ways).

On a TLS listener (an https client or metrics URL) asyncio's TLS layer does the handshake
first (ALPN offers h2 and http/1.1) and the sniffer sees the decrypted bytes, so one TLS port
serves both protocols as the plain one does; etcd's checks after the handshake (CRL, allowed
host name) run before the first byte is read (etcdpy.clientport.tls). Plain text sent to a TLS
port fails the handshake and the connection is closed, as etcd does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, cast

import structlog

from etcdpy.clientport.http1 import Handler, Http1Protocol
from etcdpy.tls.checks import CertRejected

if TYPE_CHECKING:
    from etcdpy.clientport.tls import ClientTLS
    from etcdpy.h2grpc.server import GrpcServer

log = structlog.get_logger(__name__)

GRPC_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# The first bytes that decide; a connection that sends fewer and waits is not HTTP/1.1 either.
_SNIFF_BYTES = 4


class PrivateSocket:
    """A unix socket path in a fresh private directory, removed on cleanup."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="etcdpy-"))
        os.chmod(self._dir, 0o700)
        self.path = str(self._dir / "grpc.sock")

    def sibling(self, name: str) -> str:
        """Another socket path in the same private directory."""
        return str(self._dir / name)

    @property
    def grpc_address(self) -> str:
        return f"unix:{self.path}"

    def cleanup(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


class _Upstream(asyncio.Protocol):
    """The relay's side toward the gRPC server."""

    __slots__ = ("_client", "transport")

    def __init__(self, client: asyncio.Transport) -> None:
        self._client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self._client.write(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._client.close()

    def pause_writing(self) -> None:
        self._client.pause_reading()

    def resume_writing(self) -> None:
        self._client.resume_reading()


class _Relay(asyncio.Protocol):
    """The relay's side toward the client, once the connection is known to be gRPC."""

    __slots__ = ("_upstream",)

    def __init__(self, upstream: asyncio.Transport) -> None:
        self._upstream = upstream

    def data_received(self, data: bytes) -> None:
        self._upstream.write(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._upstream.close()

    def pause_writing(self) -> None:
        self._upstream.pause_reading()

    def resume_writing(self) -> None:
        self._upstream.resume_reading()


class _Sniff(asyncio.Protocol):
    """Reads until the protocol is known, then hands the connection over."""

    def __init__(self, front: ClientFront, tls: ClientTLS | None = None) -> None:
        self._front = front
        self._tls = tls
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._decided = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        accepted = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        if self._tls is not None:  # the handshake is done: etcd's checks after it
            try:
                self._tls.check_accepted(accepted.get_extra_info("ssl_object"))
            except CertRejected as err:
                log.info(
                    "rejected connection",
                    remote_addr=str(accepted.get_extra_info("peername")),
                    error=str(err),
                )
                accepted.abort()  # no TLS shutdown to wait for: etcd closes the socket
                return
        self._transport = accepted
        self._front.connections.add(accepted)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._front.connections.discard(self._transport)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        self._buffer += data
        if self._decided:
            return  # bytes that arrive while the upstream connects; written once it is up
        buf = self._buffer
        if len(buf) < _SNIFF_BYTES and GRPC_PREFACE.startswith(buf):
            return
        self._decided = True
        front = self._front
        if buf.startswith(GRPC_PREFACE[:_SNIFF_BYTES]) and front.grpc is not None:
            front.connections.discard(transport)  # the gRPC server tracks and stops its own
            self._buffer = b""
            self._transport = None
            front.grpc.adopt(transport, buf)
        elif front.http_upstream_path is not None:
            self._join_later(transport, front.http_upstream_path)
        else:
            self._to_http(transport)

    def eof_received(self) -> bool:
        return False

    def _join_later(self, transport: asyncio.Transport, path: str) -> None:
        transport.pause_reading()
        asyncio.get_running_loop().create_task(self._join(transport, path))

    def _to_http(self, transport: asyncio.Transport) -> None:
        assert self._front.http_handler is not None
        http = Http1Protocol(self._front.http_handler, self._front.max_body_bytes)
        transport.set_protocol(http)
        http.connection_made(transport)
        self._front.connections.discard(transport)
        buf, self._buffer = self._buffer, b""
        http.data_received(buf)

    async def _join(self, transport: asyncio.Transport, path: str) -> None:
        """Relays the connection, byte for byte, to the server listening on ``path``."""
        loop = asyncio.get_running_loop()
        try:
            upstream_transport, _ = await loop.create_unix_connection(
                lambda: _Upstream(transport), path
            )
        except OSError as exc:
            log.warning("cannot reach the upstream server", path=path, error=repr(exc))
            transport.close()
            return
        if transport.is_closing():
            upstream_transport.close()
            return
        transport.set_protocol(_Relay(upstream_transport))
        self._front.connections.discard(transport)
        buf, self._buffer = self._buffer, b""
        upstream_transport.write(buf)
        transport.resume_reading()


class ClientFront:
    """Listens on the client URLs (and metrics URLs, without gRPC) and sorts connections."""

    def __init__(
        self,
        http_handler: Handler | None,
        grpc: GrpcServer | None,
        max_body_bytes: int = 4 << 20,
        http_upstream_path: str | None = None,
    ) -> None:
        assert (http_handler is None) != (http_upstream_path is None)
        self.http_handler = http_handler
        self.grpc = grpc
        self.max_body_bytes = max_body_bytes
        self.http_upstream_path = http_upstream_path
        self.connections: set[asyncio.Transport] = set()
        self._servers: list[asyncio.Server] = []

    async def listen(self, host: str, port: int, tls: ClientTLS | None = None) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Sniff(self, tls),
            host or None,
            port,
            reuse_address=True,
            backlog=1024,
            ssl=tls.listening if tls is not None else None,
        )
        self._servers.append(server)
        return server

    async def listen_unix(self, path: str) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(lambda: _Sniff(self), path, backlog=1024)
        self._servers.append(server)
        return server

    async def listen_socket(
        self, sock: socket.socket, start_serving: bool = True, tls: ClientTLS | None = None
    ) -> asyncio.Server:
        """Serves on a listening socket made elsewhere (a front-end's, from the core). With
        ``start_serving=False`` connections wait in the socket's backlog until
        ``start_serving()`` (a member not yet published, as etcd's ReadyNotify). With ``tls``
        every connection is TLS."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Sniff(self, tls),
            sock=sock,
            backlog=1024,
            start_serving=start_serving,
            ssl=tls.listening if tls is not None else None,
        )
        self._servers.append(server)
        return server

    def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()

    async def close(self) -> None:
        self.stop_accepting()
        for transport in list(self.connections):
            transport.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
