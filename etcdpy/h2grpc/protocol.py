"""gRPC's HTTP/2, server side, sans-IO (h11's and h2's manner): bytes in, events out; the
frames to send wait in an outbox (``data_to_send``). No sockets, no event loop, no timers:
the caller owns those, and the clock is passed in.

Rules it keeps (RFC 9113):
- The client's streams are odd and increasing; a HEADERS frame opens one unless the
  connection is going away or ``max_concurrent_streams`` are open (RST_STREAM REFUSED_STREAM).
- What the client may send is granted as this side takes it: the connection's window as frames
  arrive, a stream's as its call reads (``acknowledge_received``).
- What this side sends waits for the client's windows: ``send_data`` sends what fits and keeps
  the rest, in order, with any trailers after it; a WINDOW_UPDATE or SETTINGS frame sends what
  waited (streams take turns) and reports ``WindowUpdated``.
- A stream is closed here when its trailers (or a Trailers-Only head) went out, or the client
  reset it; one the client has not finished gets RST_STREAM NO_ERROR, as grpc-go sends.
- A protocol error ends the connection: GOAWAY with its code, then ``ConnectionTerminated``.
- Pings: each is answered; with ``keepalive.min_time``, a client that pings too often (more than
  MAX_PING_STRIKES times between two HEADERS or DATA frames of this side) gets GOAWAY
  ENHANCE_YOUR_CALM "too_many_pings", as from grpc-go.
"""

from __future__ import annotations

import collections
import re
import struct
import time
from collections.abc import Callable
from typing import cast

import hpack

from etcdpy.h2grpc import frames as f
from etcdpy.h2grpc.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RequestHead,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from etcdpy.h2grpc.limits import Limits

_unpack_header = f.FRAME_HEADER.unpack_from
_unpack_u32 = struct.Struct(">I").unpack_from
_TIMEOUT = re.compile(rb"^(\d{1,8})([HMSmun])$")
_TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_TRAILERS_FLAGS = f.END_HEADERS | f.END_STREAM
# grpc-go's server tolerates this many pings too soon between two of its responses.
MAX_PING_STRIKES = 2
KEEPALIVE_PING = b"etcdpyka"
# The connection window granted on top of the default, and when to top it up again.
CONNECTION_WINDOW = 64 << 20
_HEADER_CACHE_SIZE = 64
MAX_STATUS_MESSAGE = 8192
MAX_HEADER_LIST_SIZE = 1 << 16


class ProtocolError(Exception):
    """A connection error (RFC 9113 5.4.1): GOAWAY with the code, then close."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def parse_head(headers: list[tuple[bytes, bytes]]) -> RequestHead:
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


class _StreamState:
    """One open stream as the core sees it: windows and what waits for them."""

    __slots__ = (
        "headers_sent", "pending", "remote_closed", "send_window", "stream_id", "trailers",
        "unacked",
    )  # fmt: skip

    def __init__(self, stream_id: int, send_window: int, remote_closed: bool) -> None:
        self.stream_id = stream_id
        self.send_window = send_window
        self.remote_closed = remote_closed
        self.headers_sent = False
        self.pending: bytes | memoryview = b""  # data waiting for the client's windows
        self.trailers: bytes | None = None  # the closing frame, sent after ``pending``
        self.unacked = 0  # request bytes taken by the call but not granted back


class ServerConnection:
    """One client connection's HTTP/2 state. ``receive_data`` returns events; every method
    that sends only queues frames; ``data_to_send`` takes them."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self.streams: dict[int, _StreamState] = {}
        self._out: list[bytes] = []
        self._buffer = b""
        self._preface_seen = False
        self._decoder = hpack.Decoder(max_header_list_size=MAX_HEADER_LIST_SIZE)
        self._head_cache: dict[bytes, RequestHead] = {}
        self._continuation: tuple[int, int, bytearray] | None = None  # stream, flags, block
        self.last_stream_id = 0
        self._received_unacked = 0  # connection window bytes taken but not granted back
        self.send_window = f.DEFAULT_WINDOW
        self.peer_initial_window = f.DEFAULT_WINDOW
        self.peer_max_frame = f.DEFAULT_MAX_FRAME
        self._blocked: collections.OrderedDict[int, _StreamState] = collections.OrderedDict()
        self.going_away = False  # no new streams: this side sent GOAWAY, or the client did
        self.goaway_sent = False
        self.closed = False  # no more input, nothing more queued (a connection error, close())
        self.ping_strikes = 0
        self.reset_ping_strikes = False  # set by every HEADERS or DATA frame sent (grpc-go's rule)
        self._last_ping = -1e18
        self.keepalive_answered = True

    # The outbox

    def initiate_connection(self) -> None:
        """The server's preface: its SETTINGS and the connection window it grants."""
        limits = self.limits
        self._out.append(
            f.settings_frame(
                {
                    f.SETTINGS_MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                    f.SETTINGS_INITIAL_WINDOW_SIZE: limits.stream_window,
                    f.SETTINGS_MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
                }
            )
            + f.window_update(0, CONNECTION_WINDOW)
        )

    @property
    def wants_write(self) -> bool:
        """True when frames wait in the outbox."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    # Bytes in

    def receive_data(self, data: bytes) -> list[Event]:
        """Feeds what the client sent; returns what happened, in order. A protocol error ends
        the list with ``ConnectionTerminated`` (GOAWAY queued)."""
        if self.closed:
            return []
        events: list[Event] = []
        buf = self._buffer + data if self._buffer else data
        try:
            pos = self._frames(buf, events)
        except ProtocolError as exc:
            self.close(exc.code, str(exc))
            events.append(ConnectionTerminated(exc.code, str(exc)))
            return events
        self._buffer = buf[pos:] if pos < len(buf) else b""
        if self._received_unacked >= CONNECTION_WINDOW // 2:
            self._out.append(f.window_update(0, self._received_unacked))
            self._received_unacked = 0
        return events

    def _frames(self, buf: bytes, events: list[Event]) -> int:
        pos = 0
        if not self._preface_seen:
            if len(buf) < len(f.PREFACE):
                if not f.PREFACE.startswith(buf):
                    raise ProtocolError(f.PROTOCOL_ERROR, "bad client preface")
                return 0
            if not buf.startswith(f.PREFACE):
                raise ProtocolError(f.PROTOCOL_ERROR, "bad client preface")
            self._preface_seen = True
            pos = len(f.PREFACE)
        end_of_data = len(buf)
        max_frame = self.limits.max_frame_size
        while end_of_data - pos >= f.FRAME_HEADER_SIZE:
            high, low, frame_type, flags, stream_id = _unpack_header(buf, pos)
            length = (high << 16) | low
            if length > max_frame:
                raise ProtocolError(f.FRAME_SIZE_ERROR, "frame too large")
            end = pos + f.FRAME_HEADER_SIZE + length
            if end > end_of_data:
                break
            payload = buf[pos + f.FRAME_HEADER_SIZE : end]
            pos = end
            stream_id &= 0x7FFFFFFF
            if self._continuation is not None and frame_type != f.CONTINUATION:
                raise ProtocolError(f.PROTOCOL_ERROR, "expected CONTINUATION")
            if frame_type == f.DATA:
                self._on_data(stream_id, flags, payload, length, events)
            elif frame_type == f.HEADERS:
                self._on_headers(stream_id, flags, payload, events)
            elif frame_type == f.CONTINUATION:
                self._on_continuation(stream_id, flags, payload, events)
            elif frame_type == f.WINDOW_UPDATE:
                self._on_window_update(stream_id, payload, events)
            elif frame_type == f.SETTINGS:
                self._on_settings(stream_id, flags, payload, events)
            elif frame_type == f.PING:
                if stream_id != 0 or length != 8:
                    raise ProtocolError(f.PROTOCOL_ERROR, "bad PING")
                if flags & f.ACK:
                    if payload == KEEPALIVE_PING:
                        self.keepalive_answered = True
                else:
                    self._on_ping(payload)
            elif frame_type == f.RST_STREAM:
                if stream_id == 0 or length != 4:
                    raise ProtocolError(f.PROTOCOL_ERROR, "bad RST_STREAM")
                state = self.streams.pop(stream_id, None)
                if state is not None:
                    self._blocked.pop(stream_id, None)
                    events.append(StreamReset(stream_id, _unpack_u32(payload)[0]))
            elif frame_type == f.GOAWAY:
                self.going_away = True  # the client opens no more streams here
            elif frame_type == f.PUSH_PROMISE:
                raise ProtocolError(f.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
            # PRIORITY and unknown frame types are ignored, as RFC 9113 asks.
        return pos

    def _on_ping(self, payload: bytes) -> None:
        min_time = self.limits.keepalive.min_time
        now = self._clock()
        if self.reset_ping_strikes:
            self.reset_ping_strikes = False
            self.ping_strikes = 0
        elif min_time > 0 and now - self._last_ping < min_time:
            self.ping_strikes += 1
            if self.ping_strikes > MAX_PING_STRIKES:
                raise ProtocolError(f.ENHANCE_YOUR_CALM, "too_many_pings")
        self._last_ping = now
        self._out.append(f.frame(f.PING, f.ACK, 0, payload))

    def _on_data(
        self, stream_id: int, flags: int, payload: bytes, length: int, events: list[Event]
    ) -> None:
        if stream_id == 0:
            raise ProtocolError(f.PROTOCOL_ERROR, "DATA on stream 0")
        self._received_unacked += length
        if flags & f.PADDED:
            payload = _unpad(payload)
        state = self.streams.get(stream_id)
        if state is None:
            if stream_id > self.last_stream_id:
                raise ProtocolError(f.PROTOCOL_ERROR, "DATA on an idle stream")
            return  # a stream this side already closed: the client may not know yet
        if state.remote_closed:
            self._out.append(f.rst_stream(stream_id, f.STREAM_CLOSED))
            return
        end = flags & f.END_STREAM != 0
        if end:
            state.remote_closed = True
        events.append(DataReceived(stream_id, payload, end))

    def _on_headers(self, stream_id: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if stream_id == 0:
            raise ProtocolError(f.PROTOCOL_ERROR, "HEADERS on stream 0")
        if flags & f.PADDED:
            payload = _unpad(payload)
        if flags & f.PRIORITY_FLAG:
            payload = payload[5:]
        if flags & f.END_HEADERS:
            self._on_header_block(stream_id, flags, payload, events)
        else:
            self._continuation = (stream_id, flags, bytearray(payload))

    def _on_continuation(
        self, stream_id: int, flags: int, payload: bytes, events: list[Event]
    ) -> None:
        pending = self._continuation
        if pending is None or pending[0] != stream_id:
            raise ProtocolError(f.PROTOCOL_ERROR, "unexpected CONTINUATION")
        pending[2].extend(payload)
        if len(pending[2]) > MAX_HEADER_LIST_SIZE * 2:
            raise ProtocolError(f.PROTOCOL_ERROR, "header block too large")
        if flags & f.END_HEADERS:
            self._continuation = None
            self._on_header_block(stream_id, pending[1], bytes(pending[2]), events)

    def _on_header_block(
        self, stream_id: int, flags: int, block: bytes, events: list[Event]
    ) -> None:
        head = self._decode(block)  # always: the decoder's table must see every block
        end = flags & f.END_STREAM != 0
        state = self.streams.get(stream_id)
        if state is not None:  # the client's trailers
            if not end:
                raise ProtocolError(f.PROTOCOL_ERROR, "trailers without END_STREAM")
            if not state.remote_closed:
                state.remote_closed = True
                events.append(StreamEnded(stream_id))
            return
        if stream_id % 2 == 0 or stream_id <= self.last_stream_id:
            raise ProtocolError(f.PROTOCOL_ERROR, "bad stream id")
        self.last_stream_id = stream_id
        if self.going_away or len(self.streams) >= self.limits.max_concurrent_streams:
            self._out.append(f.rst_stream(stream_id, f.REFUSED_STREAM))
            return
        self.streams[stream_id] = _StreamState(stream_id, self.peer_initial_window, end)
        events.append(RequestReceived(stream_id, head, end))

    def _decode(self, block: bytes) -> RequestHead:
        head = self._head_cache.get(block)
        if head is not None:
            return head
        entries = self._decoder.header_table.dynamic_entries
        size, first = len(entries), (entries[0] if entries else None)
        try:
            headers = self._decoder.decode(block, raw=True)
        except hpack.HPACKError as exc:
            raise ProtocolError(f.COMPRESSION_ERROR, f"bad header block: {exc}") from exc
        head = parse_head(cast(list[tuple[bytes, bytes]], headers))
        if len(entries) == size and (entries[0] if entries else None) is first:
            # The block left the table as it was: the same bytes decode the same way until a
            # block changes the table (clients send identical blocks for repeated calls).
            if len(self._head_cache) >= _HEADER_CACHE_SIZE:
                self._head_cache.clear()
            self._head_cache[block] = head
        else:
            self._head_cache.clear()
        return head

    def _on_window_update(self, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise ProtocolError(f.FRAME_SIZE_ERROR, "bad WINDOW_UPDATE")
        (increment,) = _unpack_u32(payload)
        increment &= 0x7FFFFFFF
        if stream_id == 0:
            if increment == 0:
                raise ProtocolError(f.PROTOCOL_ERROR, "zero WINDOW_UPDATE")
            self.send_window += increment
            if self.send_window > f.MAX_WINDOW:
                raise ProtocolError(f.FLOW_CONTROL_ERROR, "connection window overflow")
            if self._blocked:
                self._unblock()
                events.append(WindowUpdated(0))
            return
        state = self.streams.get(stream_id)
        if state is not None:
            state.send_window += increment
            if stream_id in self._blocked:
                self._unblock()
                events.append(WindowUpdated(stream_id))

    def _on_settings(self, stream_id: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if stream_id != 0:
            raise ProtocolError(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            return
        if len(payload) % 6:
            raise ProtocolError(f.FRAME_SIZE_ERROR, "bad SETTINGS")
        for offset in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HI", payload, offset)
            if key == f.SETTINGS_INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise ProtocolError(f.FLOW_CONTROL_ERROR, "bad initial window")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for state in self.streams.values():
                    state.send_window += delta
            elif key == f.SETTINGS_MAX_FRAME_SIZE:
                if not f.DEFAULT_MAX_FRAME <= value <= f.MAX_FRAME_LIMIT:
                    raise ProtocolError(f.PROTOCOL_ERROR, "bad max frame size")
                self.peer_max_frame = value
        self._out.append(f.frame(f.SETTINGS, f.ACK, 0))
        if self._blocked:
            self._unblock()
            events.append(WindowUpdated(0))

    # Frames out

    def send_message(self, stream_id: int, message: bytes) -> None:
        """One gRPC message (the response headers first, once). What the client's windows do
        not take now waits, in order, for WINDOW_UPDATE."""
        state = self.streams.get(stream_id)
        if state is None:
            return
        self.reset_ping_strikes = True
        if not state.headers_sent:
            state.headers_sent = True
            self._out.append(f.frame(f.HEADERS, f.END_HEADERS, stream_id, f.RESPONSE_HEADERS))
        payload = f.message_prefix(len(message)) + message
        if state.pending:
            state.pending = bytes(state.pending) + payload
            return
        state.pending = self._send(
            state, memoryview(payload) if len(payload) > self.peer_max_frame else payload
        )

    def send_status(self, stream_id: int, code: int, message: str) -> None:
        """The call's status, after what waits for window; then the stream is closed. With no
        message sent before, the response is "Trailers-Only" (headers and status in one)."""
        state = self.streams.get(stream_id)
        if state is None:
            return
        self.reset_ping_strikes = True
        if code == 0 and state.headers_sent:
            block = f.OK_TRAILERS
        else:
            block = f.status_block(code, message[:MAX_STATUS_MESSAGE], not state.headers_sent)
        trailers = f.frame(f.HEADERS, _TRAILERS_FLAGS, stream_id, block)
        if state.pending:
            state.trailers = trailers
            return
        self._out.append(trailers)
        self._close_stream(state)

    def send_headers(self, stream_id: int, block: bytes, end_stream: bool = False) -> None:
        """A header block of this side's own making (a non-gRPC answer such as 415)."""
        state = self.streams.get(stream_id)
        if state is None:
            return
        self.reset_ping_strikes = True
        state.headers_sent = True
        flags = _TRAILERS_FLAGS if end_stream else f.END_HEADERS
        self._out.append(f.frame(f.HEADERS, flags, stream_id, block))
        if end_stream:
            self._close_stream(state)

    def is_blocked(self, stream_id: int) -> bool:
        """True while data of the stream waits for the client's windows."""
        return stream_id in self._blocked

    def acknowledge_received(self, stream_id: int, size: int) -> None:
        """The call took ``size`` request bytes: grant them back, in halves of the window."""
        state = self.streams.get(stream_id)
        if state is None or state.remote_closed:
            return
        state.unacked += size
        if state.unacked >= self.limits.stream_window // 2:
            self._out.append(f.window_update(stream_id, state.unacked))
            state.unacked = 0

    def _send(self, state: _StreamState, payload: bytes | memoryview) -> bytes | memoryview:
        """Sends what the windows allow; returns what must wait (the stream is then blocked)."""
        max_frame = self.peer_max_frame
        sid = state.stream_id
        out = self._out
        while payload:
            allowed = min(state.send_window, self.send_window, max_frame, len(payload))
            if allowed <= 0:
                self._blocked[sid] = state
                return payload
            chunk = payload[:allowed]
            payload = payload[allowed:]
            out.append(f.frame(f.DATA, 0, sid, bytes(chunk)))
            state.send_window -= allowed
            self.send_window -= allowed
            # grpc-go forgives pings while it sends data: a client's BDP pings come during
            # long responses.
            self.reset_ping_strikes = True
        return b""

    def _unblock(self) -> None:
        # One pass: a stream still short of its own window goes back to the end of the queue.
        for sid, state in list(self._blocked.items()):
            if self.send_window <= 0:
                break
            del self._blocked[sid]
            if state.send_window <= 0:
                self._blocked[sid] = state
                continue
            state.pending = self._send(state, state.pending)
            if not state.pending and state.trailers is not None:
                self._out.append(state.trailers)
                state.trailers = None
                self._close_stream(state)

    def _close_stream(self, state: _StreamState) -> None:
        if not state.remote_closed:  # the client may stop sending: this call is over
            self._out.append(f.rst_stream(state.stream_id, f.NO_ERROR))
        del self.streams[state.stream_id]
        self._blocked.pop(state.stream_id, None)

    # Keepalive and shutdown

    def send_keepalive_ping(self) -> None:
        """A ping whose answer sets ``keepalive_answered`` again."""
        self.keepalive_answered = False
        self._out.append(f.frame(f.PING, 0, 0, KEEPALIVE_PING))

    def go_away(self) -> None:
        """Graceful: GOAWAY NO_ERROR, no new streams; the open ones run to their end."""
        if not self.goaway_sent:
            self.goaway_sent = self.going_away = True
            self._out.append(f.goaway(self.last_stream_id, f.NO_ERROR))

    def close(self, code: int, reason: str) -> None:
        """The connection ends: GOAWAY with the code (unless a graceful one already said it)."""
        if self.closed:
            return
        if not (self.goaway_sent and code == f.NO_ERROR):
            self._out.append(f.goaway(self.last_stream_id, code, reason.encode()[:256]))
        self.goaway_sent = self.going_away = self.closed = True


def _unpad(payload: bytes) -> bytes:
    if not payload:
        raise ProtocolError(f.PROTOCOL_ERROR, "bad padding")
    pad = payload[0]
    if pad >= len(payload):
        raise ProtocolError(f.PROTOCOL_ERROR, "bad padding")
    return payload[1 : len(payload) - pad]
