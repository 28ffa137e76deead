"""The gRPC server: method handlers by path, etcd's limits, the connections it adopted."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import grpc

from etcdpy.h2grpc import frames as f
from etcdpy.h2grpc.connection import Http2Connection


@dataclass(frozen=True)
class KeepalivePolicy:
    """etcd's --grpc-keepalive-* flags, as grpc-go applies them (0 turns one off).

    ``interval``: the server pings a connection this often and closes it when an answer takes
    longer than ``timeout``. ``min_time``: a client that pings more often than this, more than
    twice between two responses of the server, gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
    """

    interval: float = 0.0
    timeout: float = 0.0
    min_time: float = 0.0


class GrpcServer:
    def __init__(
        self,
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]],
        max_receive_bytes: int,
        max_concurrent_streams: int = 2**31 - 1,
        keepalive: KeepalivePolicy | None = None,
    ) -> None:
        self.methods = {path.encode(): handler for path, handler in handlers.items()}
        self.services = {path[1:].split("/", 1)[0] for path in handlers}
        self.max_receive_bytes = max_receive_bytes
        self.max_concurrent_streams = min(max_concurrent_streams, 2**31 - 1)
        # A stream's window holds a whole request, so a unary call never waits for a grant.
        self.stream_window = min(max(f.DEFAULT_WINDOW, 2 * (max_receive_bytes + 5)), f.MAX_WINDOW)
        self.max_frame_size = f.DEFAULT_MAX_FRAME
        self.keepalive = keepalive or KeepalivePolicy()
        self.connections: set[Http2Connection] = set()
        self.stopping = False

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
