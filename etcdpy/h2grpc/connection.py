"""One client connection in asyncio: the bytes read go to the HTTP/2 core (``protocol``), its
events start and feed calls (``calls``), and what the core queued leaves in one ``write`` per
event-loop turn (many responses per syscall).

The transport owns what the core cannot: the socket, the event loop's timers (server keepalive,
deadlines), the calls' tasks, and back-pressure: a stream handler's ``write`` waits while its
stream is blocked by the client's window or the socket is full, so a client that stops reading
holds its own stream, never the server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

import structlog

from etcdpy.h2grpc import frames as f
from etcdpy.h2grpc.calls import Router, Stream, run_call
from etcdpy.h2grpc.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from etcdpy.h2grpc.limits import Limits
from etcdpy.h2grpc.protocol import ServerConnection
from etcdpy.tls.checks import verified_common_name

log = structlog.get_logger(__name__)
_STATUS_415 = b"\x08\x03415"  # :status 415, a literal with the static table's name


class Served(Router, Protocol):
    """What a connection needs from its server (``server.GrpcServer``)."""

    limits: Limits
    connections: set[Http2Connection]


class Http2Connection(asyncio.Protocol):
    def __init__(self, server: Served) -> None:
        self.server = server
        self.limits = server.limits
        self.loop = asyncio.get_running_loop()
        self.core = ServerConnection(server.limits, self.loop.time)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Stream] = {}  # the calls still running, by stream id
        self.peer = ""
        self.cert_cn: str | None = None  # the verified client certificate's CN (TLS only)
        self._flush_scheduled = False
        self.write_paused = False
        self._writable: list[asyncio.Future[None]] = []
        self.closed = False
        self.idle = asyncio.Event()
        self.idle.set()
        self._keepalive: asyncio.TimerHandle | None = None
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            DataReceived: self._on_data,
            RequestReceived: self._on_request,
            StreamEnded: self._on_stream_ended,
            StreamReset: self._on_stream_reset,
            WindowUpdated: self._on_window_updated,
            ConnectionTerminated: self._on_terminated,
        }

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.peer = _peer_name(self.transport.get_extra_info("peername"))
        self.cert_cn = verified_common_name(self.transport.get_extra_info("ssl_object"))
        self.server.connections.add(self)
        self.core.initiate_connection()
        self._flush_soon()
        keepalive = self.limits.keepalive
        if keepalive.interval > 0 and keepalive.timeout > 0:
            self._keepalive = self.loop.call_later(keepalive.interval, self._ping_client)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if self._keepalive is not None:
            self._keepalive.cancel()
        for stream in list(self.streams.values()):
            stream.abandon()
        self.streams.clear()
        self._wake_writers()
        self.idle.set()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writers()

    def eof_received(self) -> bool:
        return False

    def data_received(self, data: bytes) -> None:
        try:
            handlers = self._handlers
            for event in self.core.receive_data(data):
                handlers[type(event)](event)
        except Exception:  # a bug here must cost one connection, never the process
            log.exception("HTTP/2 connection failed", peer=self.peer)
            self.close_with(f.INTERNAL_ERROR, "internal error")
            return
        if not self.closed:
            if self.core.wants_write:
                self._flush_soon()
            if not self.core.streams and not self.idle.is_set():
                self._all_streams_closed()

    def _on_data(self, event: DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.receive(event.data, event.end_stream)

    def _on_request(self, event: RequestReceived) -> None:
        head = event.head
        deadline = None if head.timeout is None else time.monotonic() + head.timeout
        stream = Stream(self, event.stream_id, head, deadline)
        self.streams[event.stream_id] = stream
        self.idle.clear()
        run_call(stream, self.server, event.end_stream)

    def _on_stream_ended(self, event: StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.receive(b"", True)

    def _on_stream_reset(self, event: StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.reset_by_peer()

    def _on_window_updated(self, event: WindowUpdated) -> None:
        self._wake_writers()

    def _on_terminated(self, event: ConnectionTerminated) -> None:
        self._terminate(event.error_code, event.reason)

    # What a call sends (calls.CallSink): into the core, out at the end of this turn

    def send_message(self, stream_id: int, message: bytes) -> None:
        self.core.send_message(stream_id, message)
        self._flush_soon()

    def send_status(self, stream_id: int, code: int, message: str) -> None:
        self.core.send_status(stream_id, code, message)
        self.stream_closed(stream_id)
        self._flush_soon()

    def refuse_content_type(self, stream_id: int) -> None:
        self.core.send_headers(stream_id, _STATUS_415, end_stream=True)
        self.stream_closed(stream_id)
        self._flush_soon()

    def acknowledge_received(self, stream_id: int, size: int) -> None:
        self.core.acknowledge_received(stream_id, size)
        if self.core.wants_write:
            self._flush_soon()

    def is_blocked(self, stream_id: int) -> bool:
        return self.write_paused or self.core.is_blocked(stream_id)

    async def wait_writable(self) -> None:
        waiter = self.loop.create_future()
        self._writable.append(waiter)
        await waiter

    def stream_closed(self, stream_id: int) -> None:
        """The call is over (its status may still wait for window in the core)."""
        self.streams.pop(stream_id, None)
        if not self.core.streams:
            self._all_streams_closed()

    def _all_streams_closed(self) -> None:
        self.idle.set()
        if self.core.goaway_sent:
            self.close_with(f.NO_ERROR, "")

    def _wake_writers(self) -> None:
        writers, self._writable = self._writable, []
        for waiter in writers:
            if not waiter.done():
                waiter.set_result(None)

    def _flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self.closed and self.transport is not None:
            data = self.core.data_to_send()
            if data:
                self.transport.write(data)

    # Keepalive

    def _ping_client(self) -> None:
        """Server keepalive: the previous ping must have been answered within the timeout."""
        if self.closed:
            return
        if not self.core.keepalive_answered:
            log.info("keepalive ping not answered in time: closing", peer=self.peer)
            self.close_with(f.NO_ERROR, "keepalive timeout")
            return
        self.core.send_keepalive_ping()
        self._flush_soon()
        self._keepalive = self.loop.call_later(self.limits.keepalive.timeout, self._check_keepalive)

    def _check_keepalive(self) -> None:
        if self.core.keepalive_answered:
            keepalive = self.limits.keepalive
            interval = keepalive.interval - keepalive.timeout
            self._keepalive = self.loop.call_later(max(interval, 0.0), self._ping_client)
        else:
            self._ping_client()

    # Shutdown

    def go_away(self) -> None:
        """Graceful: no new streams; the open ones run to their end."""
        self.core.go_away()
        self._flush_soon()
        if not self.core.streams:
            self.close_with(f.NO_ERROR, "")

    def close_with(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.core.close(code, reason)
        self._terminate(code, reason)

    def _terminate(self, code: int, reason: str) -> None:
        """What the core queued (its GOAWAY last) leaves now; then the socket closes."""
        if self.closed:
            return
        if code != f.NO_ERROR:
            log.info("closing HTTP/2 connection", peer=self.peer, reason=reason, code=code)
        self._flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _peer_name(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"ipv6:[{host}]:{address[1]}" if ":" in host else f"ipv4:{host}:{address[1]}"
    return f"unix:{address}" if address else "unix:"
