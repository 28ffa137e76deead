"""The gRPC server: method handlers by path, etcd's limits, the connections it adopted."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc

from etcdpy.h2grpc import frames as f
from etcdpy.h2grpc.connection import Http2Connection
from etcdpy.h2grpc.limits import KeepalivePolicy, Limits

__all__ = ["GrpcServer", "KeepalivePolicy", "Limits"]


class GrpcServer:
    def __init__(
        self,
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]],
        max_receive_bytes: int,
        max_concurrent_streams: int = f.MAX_WINDOW,
        keepalive: KeepalivePolicy | None = None,
    ) -> None:
        self.methods = {path.encode(): handler for path, handler in handlers.items()}
        self.services = {path[1:].split("/", 1)[0] for path in handlers}
        self.limits = Limits(
            max_receive_bytes, max_concurrent_streams, keepalive or KeepalivePolicy()
        )
        self.connections: set[Http2Connection] = set()
        self.stopping = False

    # The limits by name, for the front-end supervisor that passes them to its processes.

    @property
    def max_receive_bytes(self) -> int:
        return self.limits.max_receive_bytes

    @property
    def max_concurrent_streams(self) -> int:
        return self.limits.max_concurrent_streams

    @property
    def keepalive(self) -> KeepalivePolicy:
        return self.limits.keepalive

    def adopt(self, transport: asyncio.Transport, received: bytes) -> None:
        """Serves a connection accepted elsewhere whose first bytes were already read."""
        connection = Http2Connection(self)
        transport.set_protocol(connection)
        connection.connection_made(transport)
        if received:
            connection.data_received(received)

    def unknown_method_message(self, path: bytes) -> str:
        """grpc-go's words for a method the server does not have."""
        text = path.decode(errors="replace")
        if not text.startswith("/") or "/" not in text[1:]:
            return f"malformed method name: {text!r}"
        service, method = text[1:].split("/", 1)
        if service in self.services:
            return f"unknown method {method} for service {service}"
        return f"unknown service {service}"

    async def stop(self, grace: float) -> None:
        """GOAWAY to every connection, then up to ``grace`` seconds for the calls to end."""
        self.stopping = True
        for connection in list(self.connections):
            connection.go_away()
        waits = [c.idle.wait() for c in self.connections if not c.idle.is_set()]
        if waits and grace > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), grace)
        for connection in list(self.connections):
            connection.close_with(f.NO_ERROR, "")
        await asyncio.sleep(0)
