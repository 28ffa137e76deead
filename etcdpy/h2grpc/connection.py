"""One client connection: HTTP/2 frames in, gRPC calls started, responses framed out.

Frames written during one event-loop turn leave in one ``write`` (many responses per syscall).
Flow control both ways: what the client may send is granted as this side takes it (a stream's
window as its handler reads, the connection's as frames arrive); what this side sends waits for
the client's windows, and a stream handler's ``write`` waits while its stream is blocked or the
socket is full, so a client that stops reading holds its own stream, never the server.
"""

from __future__ import annotations

import asyncio
import collections
import re
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import hpack
import structlog

from etcdpy.h2grpc import frames as f
from etcdpy.h2grpc.calls import Stream, run_call
from etcdpy.outbox import Outbox

if TYPE_CHECKING:
    from etcdpy.h2grpc.server import GrpcServer

log = structlog.get_logger(__name__)

_unpack_header = f.FRAME_HEADER.unpack_from
_unpack_u32 = struct.Struct(">I").unpack_from
_TIMEOUT = re.compile(rb"^(\d{1,8})([HMSmun])$")
_TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
# grpc-go's server tolerates this many pings too soon between two of its responses.
MAX_PING_STRIKES = 2
_KEEPALIVE_PING = b"etcdpyka"
# The connection window granted on top of the default, and when to top it up again.
CONNECTION_WINDOW = 64 << 20
_HEADER_CACHE_SIZE = 64
MAX_HEADER_LIST_SIZE = 1 << 16


class ConnectionError_(Exception):
    """A connection error (RFC 9113 5.4.1): GOAWAY with the code, then close."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class RequestHead(NamedTuple):
    """What a call needs from its header block (cached with the block: equal bytes, equal head)."""

    path: bytes
    method: bytes
    content_type: bytes
    timeout: float | None
    encoding: bytes
    headers: list[tuple[bytes, bytes]]


def _parse_head(headers: list[tuple[bytes, bytes]]) -> RequestHead:
    path = method = content_type = encoding = b""
    timeout = None
    for name, value in headers:
        if name == b":path":
            path = value
        elif name == b":method":
            method = value
        elif name == b"content-type":
            content_type = value
        elif name == b"grpc-timeout":
            match = _TIMEOUT.match(value)
            if match:
                timeout = int(match.group(1)) * _TIMEOUT_UNITS[match.group(2)]
        elif name == b"grpc-encoding":
            encoding = value
    return RequestHead(path, method, content_type, timeout, encoding, headers)


class Http2Connection(asyncio.Protocol):
    def __init__(self, server: GrpcServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Stream] = {}
        self.peer = ""
        self._buffer = b""
        self._preface_seen = False
        self._decoder = hpack.Decoder(max_header_list_size=MAX_HEADER_LIST_SIZE)
        self._head_cache: dict[bytes, RequestHead] = {}
        self._continuation: tuple[int, int, bytearray] | None = None  # stream, flags, block
        self._last_stream_id = 0
        self._outbox = Outbox(self.loop)
        self.write: Callable[[bytes], None] = self._outbox.add  # frames out, one write per turn
        self._received_unacked = 0  # connection window bytes taken but not granted back
        self.send_window = f.DEFAULT_WINDOW
        self.peer_initial_window = f.DEFAULT_WINDOW
        self.peer_max_frame = f.DEFAULT_MAX_FRAME
        self._blocked: collections.OrderedDict[int, Stream] = collections.OrderedDict()
        self.write_paused = False
        self._writable: list[asyncio.Future[None]] = []
        self.going_away = False  # no new streams: this side sent GOAWAY, or the client did
        self._goaway_sent = False
        self.closed = False
        self.idle = asyncio.Event()
        self.idle.set()
        self.ping_strikes = 0
        self.reset_ping_strikes = False  # set by every HEADERS or DATA frame sent (grpc-go's rule)
        self._last_ping = -1e18
        self._keepalive: asyncio.TimerHandle | None = None
        self._keepalive_answered = True

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._outbox.transport = self.transport
        self.peer = _peer_name(self.transport.get_extra_info("peername"))
        self.server.connections.add(self)
        server = self.server
        self.write(
            f.settings_frame(
                {
                    f.SETTINGS_MAX_CONCURRENT_STREAMS: server.max_concurrent_streams,
                    f.SETTINGS_INITIAL_WINDOW_SIZE: server.stream_window,
                    f.SETTINGS_MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
                }
            )
            + f.window_update(0, CONNECTION_WINDOW)
        )
        if server.keepalive.interval > 0 and server.keepalive.timeout > 0:
            self._keepalive = self.loop.call_later(server.keepalive.interval, self._ping_client)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._outbox.transport = None
        self.server.connections.discard(self)
        if self._keepalive is not None:
            self._keepalive.cancel()
        for stream in list(self.streams.values()):
            stream.abandon()
        self.streams.clear()
        self._blocked.clear()
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
        buf = self._buffer + data if self._buffer else data
        try:
            pos = self._frames(buf)
        except ConnectionError_ as exc:
            self.close_with(exc.code, str(exc))
            return
        except Exception:  # a bug here must cost one connection, never the process
            log.exception("HTTP/2 connection failed", peer=self.peer)
            self.close_with(f.INTERNAL_ERROR, "internal error")
            return
        self._buffer = buf[pos:] if pos < len(buf) else b""
        if self._received_unacked >= CONNECTION_WINDOW // 2:
            self.write(f.window_update(0, self._received_unacked))
            self._received_unacked = 0

    # Frames in

    def _frames(self, buf: bytes) -> int:
        pos = 0
        if not self._preface_seen:
            if len(buf) < len(f.PREFACE):
                if not f.PREFACE.startswith(buf):
                    raise ConnectionError_(f.PROTOCOL_ERROR, "bad client preface")
                return 0
            if not buf.startswith(f.PREFACE):
                raise ConnectionError_(f.PROTOCOL_ERROR, "bad client preface")
            self._preface_seen = True
            pos = len(f.PREFACE)
        end_of_data = len(buf)
        max_frame = self.server.max_frame_size
        while end_of_data - pos >= f.FRAME_HEADER_SIZE:
            high, low, frame_type, flags, stream_id = _unpack_header(buf, pos)
            length = (high << 16) | low
            if length > max_frame:
                raise ConnectionError_(f.FRAME_SIZE_ERROR, "frame too large")
            end = pos + f.FRAME_HEADER_SIZE + length
            if end > end_of_data:
                break
            payload = buf[pos + f.FRAME_HEADER_SIZE : end]
            pos = end
            stream_id &= 0x7FFFFFFF
            if self._continuation is not None and frame_type != f.CONTINUATION:
                raise ConnectionError_(f.PROTOCOL_ERROR, "expected CONTINUATION")
            if frame_type == f.DATA:
                self._on_data(stream_id, flags, payload, length)
            elif frame_type == f.HEADERS:
                self._on_headers(stream_id, flags, payload)
            elif frame_type == f.CONTINUATION:
                self._on_continuation(stream_id, flags, payload)
            elif frame_type == f.WINDOW_UPDATE:
                self._on_window_update(stream_id, payload)
            elif frame_type == f.SETTINGS:
                self._on_settings(stream_id, flags, payload)
            elif frame_type == f.PING:
                if stream_id != 0 or length != 8:
                    raise ConnectionError_(f.PROTOCOL_ERROR, "bad PING")
                if flags & f.ACK:
                    if payload == _KEEPALIVE_PING:
                        self._keepalive_answered = True
                else:
                    self._on_ping(payload)
            elif frame_type == f.RST_STREAM:
                if stream_id == 0 or length != 4:
                    raise ConnectionError_(f.PROTOCOL_ERROR, "bad RST_STREAM")
                stream = self.streams.get(stream_id)
                if stream is not None:
                    stream.reset_by_peer()
            elif frame_type == f.GOAWAY:
                self.going_away = True  # the client opens no more streams here
            elif frame_type == f.PUSH_PROMISE:
                raise ConnectionError_(f.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
            # PRIORITY and unknown frame types are ignored, as RFC 9113 asks.
        return pos

    def _on_ping(self, payload: bytes) -> None:
        min_time = self.server.keepalive.min_time
        now = self.loop.time()
        if self.reset_ping_strikes:
            self.reset_ping_strikes = False
            self.ping_strikes = 0
        elif min_time > 0 and now - self._last_ping < min_time:
            self.ping_strikes += 1
            if self.ping_strikes > MAX_PING_STRIKES:
                raise ConnectionError_(f.ENHANCE_YOUR_CALM, "too_many_pings")
        self._last_ping = now
        self.write(f.frame(f.PING, f.ACK, 0, payload))

    def _ping_client(self) -> None:
        """Server keepalive: the previous ping must have been answered within the timeout."""
        keepalive = self.server.keepalive
        if self.closed:
            return
        if not self._keepalive_answered:
            log.info("keepalive ping not answered in time: closing", peer=self.peer)
            self.close_with(f.NO_ERROR, "keepalive timeout")
            return
        self._keepalive_answered = False
        self.write(f.frame(f.PING, 0, 0, _KEEPALIVE_PING))
        self._keepalive = self.loop.call_later(keepalive.timeout, self._check_keepalive)

    def _check_keepalive(self) -> None:
        if self._keepalive_answered:
            interval = self.server.keepalive.interval - self.server.keepalive.timeout
            self._keepalive = self.loop.call_later(max(interval, 0.0), self._ping_client)
        else:
            self._ping_client()

    def _on_data(self, stream_id: int, flags: int, payload: bytes, length: int) -> None:
        if stream_id == 0:
            raise ConnectionError_(f.PROTOCOL_ERROR, "DATA on stream 0")
        self._received_unacked += length
        if flags & f.PADDED:
            payload = _unpad(payload)
        stream = self.streams.get(stream_id)
        if stream is None:
            if stream_id > self._last_stream_id:
                raise ConnectionError_(f.PROTOCOL_ERROR, "DATA on an idle stream")
            return  # a stream this side already closed: the client may not know yet
        if stream.remote_closed:
            self.write(f.rst_stream(stream_id, f.STREAM_CLOSED))
            return
        stream.receive(payload, bool(flags & f.END_STREAM))

    def _on_headers(self, stream_id: int, flags: int, payload: bytes) -> None:
        if stream_id == 0:
            raise ConnectionError_(f.PROTOCOL_ERROR, "HEADERS on stream 0")
        if flags & f.PADDED:
            payload = _unpad(payload)
        if flags & f.PRIORITY_FLAG:
            payload = payload[5:]
        if flags & f.END_HEADERS:
            self._on_header_block(stream_id, flags, payload)
        else:
            self._continuation = (stream_id, flags, bytearray(payload))

    def _on_continuation(self, stream_id: int, flags: int, payload: bytes) -> None:
        pending = self._continuation
        if pending is None or pending[0] != stream_id:
            raise ConnectionError_(f.PROTOCOL_ERROR, "unexpected CONTINUATION")
        pending[2].extend(payload)
        if len(pending[2]) > MAX_HEADER_LIST_SIZE * 2:
            raise ConnectionError_(f.PROTOCOL_ERROR, "header block too large")
        if flags & f.END_HEADERS:
            self._continuation = None
            self._on_header_block(stream_id, pending[1], bytes(pending[2]))

    def _on_header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        head = self._decode(block)  # always: the decoder's table must see every block
        stream = self.streams.get(stream_id)
        if stream is not None:  # the client's trailers
            if not flags & f.END_STREAM:
                raise ConnectionError_(f.PROTOCOL_ERROR, "trailers without END_STREAM")
            stream.receive(b"", True)
            return
        if stream_id % 2 == 0 or stream_id <= self._last_stream_id:
            raise ConnectionError_(f.PROTOCOL_ERROR, "bad stream id")
        self._last_stream_id = stream_id
        if self.going_away or len(self.streams) >= self.server.max_concurrent_streams:
            self.write(f.rst_stream(stream_id, f.REFUSED_STREAM))
            return
        deadline = None if head.timeout is None else time.monotonic() + head.timeout
        stream = Stream(self, stream_id, head, deadline)
        self.streams[stream_id] = stream
        self.idle.clear()
        run_call(stream, flags & f.END_STREAM != 0)

    def _decode(self, block: bytes) -> RequestHead:
        head = self._head_cache.get(block)
        if head is not None:
            return head
        entries = self._decoder.header_table.dynamic_entries
        size, first = len(entries), (entries[0] if entries else None)
        try:
            headers = self._decoder.decode(block, raw=True)
        except hpack.HPACKError as exc:
            raise ConnectionError_(f.COMPRESSION_ERROR, f"bad header block: {exc}") from exc
        head = _parse_head(cast(list[tuple[bytes, bytes]], headers))
        if len(entries) == size and (entries[0] if entries else None) is first:
            # The block left the table as it was: the same bytes decode the same way until a
            # block changes the table (clients send identical blocks for repeated calls).
            if len(self._head_cache) >= _HEADER_CACHE_SIZE:
                self._head_cache.clear()
            self._head_cache[block] = head
        else:
            self._head_cache.clear()
        return head

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError_(f.FRAME_SIZE_ERROR, "bad WINDOW_UPDATE")
        (increment,) = _unpack_u32(payload)
        increment &= 0x7FFFFFFF
        if stream_id == 0:
            if increment == 0:
                raise ConnectionError_(f.PROTOCOL_ERROR, "zero WINDOW_UPDATE")
            self.send_window += increment
            if self.send_window > f.MAX_WINDOW:
                raise ConnectionError_(f.FLOW_CONTROL_ERROR, "connection window overflow")
            self._unblock()
            return
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.send_window += increment
            if stream_id in self._blocked:
                self._unblock()

    def _on_settings(self, stream_id: int, flags: int, payload: bytes) -> None:
        if stream_id != 0:
            raise ConnectionError_(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            return
        if len(payload) % 6:
            raise ConnectionError_(f.FRAME_SIZE_ERROR, "bad SETTINGS")
        for offset in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HI", payload, offset)
            if key == f.SETTINGS_INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise ConnectionError_(f.FLOW_CONTROL_ERROR, "bad initial window")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == f.SETTINGS_MAX_FRAME_SIZE:
                if not f.DEFAULT_MAX_FRAME <= value <= f.MAX_FRAME_LIMIT:
                    raise ConnectionError_(f.PROTOCOL_ERROR, "bad max frame size")
                self.peer_max_frame = value
        self.write(f.frame(f.SETTINGS, f.ACK, 0))
        self._unblock()

    # Frames out

    def send_data(self, stream: Stream, payload: bytes | memoryview) -> bytes | memoryview:
        """Sends what the windows allow; returns what must wait for a WINDOW_UPDATE."""
        max_frame = self.peer_max_frame
        sid = stream.stream_id
        while payload:
            allowed = min(stream.send_window, self.send_window, max_frame, len(payload))
            if allowed <= 0:
                self._blocked[sid] = stream
                return payload
            chunk = payload[:allowed]
            payload = payload[allowed:]
            self.write(f.frame(f.DATA, 0, sid, bytes(chunk)))
            stream.send_window -= allowed
            self.send_window -= allowed
            # grpc-go forgives pings while it sends data: a client's BDP pings come during
            # long responses.
            self.reset_ping_strikes = True
        return b""

    def _unblock(self) -> None:
        # One pass: a stream still short of its own window goes back to the end of the queue.
        for sid, stream in list(self._blocked.items()):
            if self.send_window <= 0:
                break
            del self._blocked[sid]
            if stream.send_window > 0:
                stream.resume_sending()
            else:
                self._blocked[sid] = stream
        self._wake_writers()

    def is_blocked(self, stream: Stream) -> bool:
        return self.write_paused or stream.stream_id in self._blocked

    async def wait_writable(self) -> None:
        waiter = self.loop.create_future()
        self._writable.append(waiter)
        await waiter

    def _wake_writers(self) -> None:
        writers, self._writable = self._writable, []
        for waiter in writers:
            if not waiter.done():
                waiter.set_result(None)

    def stream_closed(self, stream: Stream) -> None:
        self.streams.pop(stream.stream_id, None)
        self._blocked.pop(stream.stream_id, None)
        if not self.streams:
            self.idle.set()
            if self._goaway_sent:
                self.close_with(f.NO_ERROR, "")

    # Shutdown

    def go_away(self) -> None:
        """Graceful: no new streams; the open ones run to their end."""
        if not self._goaway_sent:
            self._goaway_sent = self.going_away = True
            self.write(f.goaway(self._last_stream_id, f.NO_ERROR))
        if not self.streams:
            self.close_with(f.NO_ERROR, "")

    def close_with(self, code: int, reason: str) -> None:
        if self.closed:
            return
        if code != f.NO_ERROR:
            log.info("closing HTTP/2 connection", peer=self.peer, reason=reason, code=code)
        if not (self._goaway_sent and code == f.NO_ERROR):
            self.write(f.goaway(self._last_stream_id, code, reason.encode()[:256]))
        self._outbox.flush()
        self._outbox.transport = None
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _unpad(payload: bytes) -> bytes:
    if not payload:
        raise ConnectionError_(f.PROTOCOL_ERROR, "bad padding")
    pad = payload[0]
    if pad >= len(payload):
        raise ConnectionError_(f.PROTOCOL_ERROR, "bad padding")
    return payload[1 : len(payload) - pad]


def _peer_name(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"ipv6:[{host}]:{address[1]}" if ":" in host else f"ipv4:{host}:{address[1]}"
    return f"unix:{address}" if address else "unix:"
