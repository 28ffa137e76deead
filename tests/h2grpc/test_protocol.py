"""The HTTP/2 core (etcdpy.h2grpc.protocol) without sockets: the h2 library's client-side
connection (or hand-built frames) makes the bytes, the core's events and output are checked,
and its output is fed back to the client, which checks it against RFC 9113 as it parses."""

from __future__ import annotations

import struct
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from etcdpy.h2grpc import frames as f
from etcdpy.h2grpc.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from etcdpy.h2grpc.limits import KeepalivePolicy, Limits
from etcdpy.h2grpc.protocol import CONNECTION_WINDOW, MAX_HEADER_LIST_SIZE, ServerConnection

LIMITS = Limits(max_receive_bytes=64 * 1024)
PATH = "/test.Echo/Unary"
REQUEST_HEADERS = [
    (":method", "POST"), (":scheme", "http"), (":path", PATH), (":authority", "test"),
    ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "250m"),
    ("x-token", "abc"),
]  # fmt: skip


class Pair:
    """A client (h2) and the core, connected by hand: ``to_server`` and ``to_client`` move the
    bytes each side queued."""

    def __init__(self, limits: Limits = LIMITS, window: int = 65535) -> None:
        self.now = 1000.0
        self.server = ServerConnection(limits, clock=lambda: self.now)
        self.server.initiate_connection()
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.client = h2.connection.H2Connection(config)
        self.client.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
        )
        self.client.initiate_connection()

    def to_server(self) -> list[Event]:
        return self.server.receive_data(self.client.data_to_send())

    def to_client(self) -> list[Any]:
        return list(self.client.receive_data(self.server.data_to_send()))

    def handshake(self) -> None:
        assert self.to_server() == []  # the client's SETTINGS
        self.to_client()
        assert self.to_server() == []  # the client's ACK of the server's SETTINGS

    def request(self, message: bytes = b"abc", end: bool = True) -> int:
        stream_id: int = self.client.get_next_available_stream_id()
        self.client.send_headers(stream_id, REQUEST_HEADERS)
        self.client.send_data(stream_id, f.message_prefix(len(message)) + message, end)
        return stream_id

    def respond(self, stream_id: int, message: bytes) -> None:
        self.server.send_message(stream_id, message)
        self.server.send_status(stream_id, 0, "")


def frames_of(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of each frame in ``data``."""
    out = []
    pos = 0
    while pos < len(data):
        high, low, kind, flags, sid = f.FRAME_HEADER.unpack_from(data, pos)
        size = (high << 16) | low
        out.append((kind, flags, sid, data[pos + 9 : pos + 9 + size]))
        pos += 9 + size
    return out


def goaway_of(data: bytes) -> tuple[int, int, bytes]:
    """(last stream id, error code, debug data) of the GOAWAY in ``data``."""
    payload = next(p for kind, _, _, p in frames_of(data) if kind == f.GOAWAY)
    last, code = struct.unpack_from(">II", payload)
    return last, code, payload[8:]


def raw(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return f.frame(kind, flags, stream_id, payload)


PREFACE = f.PREFACE + raw(f.SETTINGS, 0, 0)


def test_the_server_preface_announces_the_limits() -> None:
    limits = Limits(max_receive_bytes=1 << 20, max_concurrent_streams=7)
    pair = Pair(limits)
    events = pair.to_client()
    changed = next(e for e in events if isinstance(e, h2.events.RemoteSettingsChanged))
    settings = {code: s.new_value for code, s in changed.changed_settings.items()}
    assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 7
    assert settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == 2 * ((1 << 20) + 5)
    assert settings[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] == MAX_HEADER_LIST_SIZE
    grant = next(e for e in events if isinstance(e, h2.events.WindowUpdated))
    assert (grant.stream_id, grant.delta) == (0, CONNECTION_WINDOW)


def test_limits_derive_the_stream_window_and_cap_the_streams() -> None:
    assert Limits(100).stream_window == f.DEFAULT_WINDOW  # never under the default
    assert Limits(1 << 20).stream_window == 2 * ((1 << 20) + 5)  # two whole requests
    assert Limits(2**31).stream_window == f.MAX_WINDOW
    assert Limits(100, max_concurrent_streams=2**32 - 1).max_concurrent_streams == 2**31 - 1


def test_a_unary_request_is_a_head_then_its_data() -> None:
    pair = Pair()
    pair.handshake()
    stream_id = pair.request(b"abc")
    events = pair.to_server()
    assert [type(e) for e in events] == [RequestReceived, DataReceived]
    opened = events[0]
    assert isinstance(opened, RequestReceived)
    assert (opened.stream_id, opened.end_stream) == (stream_id, False)
    head = opened.head
    assert (head.path, head.method, head.content_type) == (
        PATH.encode(),
        b"POST",
        b"application/grpc",
    )
    assert head.timeout == pytest.approx(0.25)
    assert (b"x-token", b"abc") in head.headers
    assert events[1] == DataReceived(stream_id, f.message_prefix(3) + b"abc", True)


def test_a_response_is_headers_data_trailers_and_closes_the_stream() -> None:
    pair = Pair()
    pair.handshake()
    stream_id = pair.request()
    pair.to_server()
    pair.respond(stream_id, b"cba")
    events = pair.to_client()
    assert [type(e) for e in events] == [
        h2.events.ResponseReceived, h2.events.DataReceived, h2.events.TrailersReceived,
        h2.events.StreamEnded,
    ]  # fmt: skip
    assert dict(events[0].headers)[b":status"] == b"200"
    assert events[1].data == f.message_prefix(3) + b"cba"
    assert dict(events[2].headers)[b"grpc-status"] == b"0"
    assert stream_id not in pair.server.streams


def test_a_status_without_a_message_is_trailers_only_and_percent_encoded() -> None:
    pair = Pair()
    pair.handshake()
    stream_id = pair.request()
    pair.to_server()
    pair.server.send_status(stream_id, 3, "etcdserver: bad ä 100%" + "x" * 9000)
    events = pair.to_client()
    assert [type(e) for e in events] == [h2.events.ResponseReceived, h2.events.StreamEnded]
    headers = dict(events[0].headers)
    assert headers[b":status"] == b"200" and headers[b"grpc-status"] == b"3"
    message = headers[b"grpc-message"]
    assert message.startswith(b"etcdserver: bad %C3%A4 100%25x")
    assert len(message) == len("etcdserver: bad %C3%A4 100%25") + 8192 - len(
        "etcdserver: bad ä 100%"
    )


def test_identical_header_blocks_decode_once_and_alike() -> None:
    pair = Pair()
    pair.handshake()
    heads = []
    for _ in range(3):
        pair.request()
        heads.append(next(e.head for e in pair.to_server() if isinstance(e, RequestReceived)))
    assert heads[0] == heads[1] == heads[2]


def test_bytes_fed_one_at_a_time_give_the_same_events() -> None:
    pair = Pair()
    pair.handshake()
    stream_id = pair.request(b"hello")
    data = pair.client.data_to_send()
    events: list[Event] = []
    for i in range(len(data)):
        events += pair.server.receive_data(data[i : i + 1])
    assert [type(e) for e in events] == [RequestReceived, DataReceived]
    assert events[1] == DataReceived(stream_id, f.message_prefix(5) + b"hello", True)


def test_padded_and_continued_frames() -> None:
    import hpack

    server = ServerConnection(LIMITS)
    block = hpack.Encoder().encode(REQUEST_HEADERS)
    head = raw(f.HEADERS, f.PADDED, 1, bytes([3]) + block[:10] + b"\0\0\0")
    rest = raw(f.CONTINUATION, f.END_HEADERS, 1, block[10:])
    data = raw(f.DATA, f.PADDED | f.END_STREAM, 1, bytes([2]) + b"\0\0\0\0\0xy" + b"\0\0")
    events = server.receive_data(PREFACE + head + rest + data)
    assert [type(e) for e in events] == [RequestReceived, DataReceived]
    assert events[1] == DataReceived(1, b"\0\0\0\0\0xy", True)


def test_the_server_honours_a_small_client_window() -> None:
    """What does not fit waits in the core, in order, with the trailers after it."""
    pair = Pair(window=1000)
    pair.handshake()
    stream_id = pair.request()
    pair.to_server()
    pair.respond(stream_id, b"z" * 2500)
    assert pair.server.is_blocked(stream_id)
    received = bytearray()
    ended = False
    for _ in range(10):
        for event in pair.to_client():
            if isinstance(event, h2.events.DataReceived):
                assert len(event.data) <= 1000  # never more than the window allows
                received += event.data
                pair.client.acknowledge_received_data(event.flow_controlled_length, stream_id)
            ended = ended or isinstance(event, h2.events.StreamEnded)
        if ended:
            break
        assert WindowUpdated(stream_id) in pair.to_server()
    assert ended and received == f.message_prefix(2500) + b"z" * 2500
    assert not pair.server.is_blocked(stream_id) and stream_id not in pair.server.streams


def test_streams_take_turns_for_the_connection_window() -> None:
    pair = Pair()
    pair.handshake()
    first, second = pair.request(), pair.request()
    pair.to_server()
    pair.to_client()
    big = b"q" * (40000 - 5)  # two of them overrun the client's connection window (65535)
    for stream_id in (first, second):
        pair.server.send_message(stream_id, big)
    assert not pair.server.is_blocked(first) and pair.server.is_blocked(second)
    out = pair.server.data_to_send()
    sent = sum(len(p) for kind, _, _, p in frames_of(out) if kind == f.DATA)
    assert sent == f.DEFAULT_WINDOW
    pair.client.receive_data(out)
    pair.client.increment_flow_control_window(10)  # the connection's only
    assert pair.to_server() == [WindowUpdated(0)]
    frames = frames_of(pair.server.data_to_send())
    assert [(kind, sid, len(p)) for kind, _, sid, p in frames] == [(f.DATA, second, 10)]


def test_a_larger_initial_window_in_settings_unblocks_a_stream() -> None:
    pair = Pair(window=10)
    pair.handshake()
    stream_id = pair.request()
    pair.to_server()
    pair.respond(stream_id, b"a" * 100)
    pair.to_client()
    pair.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    assert pair.to_server() == [WindowUpdated(0)]
    events = pair.to_client()
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)


def test_an_early_status_resets_a_stream_the_client_has_not_finished() -> None:
    pair = Pair()
    pair.handshake()
    stream_id = pair.request(end=False)
    pair.to_server()
    pair.server.send_status(stream_id, 12, "no")  # Trailers-Only
    frames = frames_of(pair.server.data_to_send())
    assert [(kind, flags) for kind, flags, _, _ in frames] == [
        (f.HEADERS, f.END_HEADERS | f.END_STREAM), (f.RST_STREAM, 0),
    ]  # fmt: skip
    assert struct.unpack(">I", frames[1][3]) == (f.NO_ERROR,)
    # The client's data still in flight is dropped; its stream id is not idle.
    pair.client.send_data(stream_id, b"late", end_stream=True)
    assert pair.to_server() == []


def test_the_clients_trailers_and_reset() -> None:
    pair = Pair()
    pair.handshake()
    first = pair.request(end=False)
    pair.client.send_headers(first, [("x-trailer", "1")], end_stream=True)
    second = pair.request(end=False)
    pair.client.reset_stream(second, 8)
    events = pair.to_server()
    assert [type(e) for e in events] == [
        RequestReceived, DataReceived, StreamEnded, RequestReceived, DataReceived, StreamReset,
    ]  # fmt: skip
    assert events[2] == StreamEnded(first) and events[5] == StreamReset(second, 8)
    assert second not in pair.server.streams and first in pair.server.streams
    # Data on a stream the client finished is a stream error.
    pair.server.receive_data(raw(f.DATA, 0, first, b"x"))
    kinds = [
        (kind, struct.unpack(">I", p)) for kind, _, _, p in frames_of(pair.server.data_to_send())
    ]
    assert (f.RST_STREAM, (f.STREAM_CLOSED,)) in kinds


def test_reading_grants_the_stream_window_back_in_halves() -> None:
    limits = Limits(max_receive_bytes=100)  # a 65535-byte stream window
    server = ServerConnection(limits)
    server.receive_data(PREFACE + raw(f.HEADERS, f.END_HEADERS, 1, _block()))
    server.data_to_send()
    server.acknowledge_received(1, 30000)
    assert server.data_to_send() == b""
    server.acknowledge_received(1, 3000)
    assert server.data_to_send() == f.window_update(1, 33000)


def test_too_many_streams_are_refused() -> None:
    pair = Pair(Limits(1000, max_concurrent_streams=1))
    pair.to_server()  # the client has not heard the limit yet
    first, second = pair.request(), pair.request()
    events = pair.to_server()
    assert [e.stream_id for e in events if isinstance(e, RequestReceived)] == [first]
    refused = [e for e in pair.to_client() if isinstance(e, h2.events.StreamReset)]
    assert [(e.stream_id, e.error_code) for e in refused] == [(second, f.REFUSED_STREAM)]


def test_go_away_refuses_new_streams_and_lets_open_ones_finish() -> None:
    pair = Pair()
    pair.handshake()
    first = pair.request()
    pair.to_server()
    pair.server.go_away()
    pair.server.go_away()  # once only
    out = pair.server.data_to_send()
    assert goaway_of(out) == (first, f.NO_ERROR, b"")
    assert sum(kind == f.GOAWAY for kind, _, _, _ in frames_of(out)) == 1
    pair.server.receive_data(raw(f.HEADERS, f.END_HEADERS, first + 2, _block()))
    assert frames_of(pair.server.data_to_send()) == [
        (f.RST_STREAM, 0, first + 2, struct.pack(">I", f.REFUSED_STREAM))
    ]
    pair.client.receive_data(out)
    pair.respond(first, b"ok")
    assert not pair.server.streams
    pair.server.close(f.NO_ERROR, "")  # a graceful GOAWAY said it already
    assert not [k for k, _, _, _ in frames_of(pair.server.data_to_send()) if k == f.GOAWAY]


def test_ping_is_answered() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.ping(b"12345678")
    pair.to_server()
    acks = [e for e in pair.to_client() if isinstance(e, h2.events.PingAckReceived)]
    assert [e.ping_data for e in acks] == [b"12345678"]


def test_a_client_that_pings_too_often_is_told_to_calm_down() -> None:
    pair = Pair(Limits(1000, keepalive=KeepalivePolicy(min_time=10.0)))
    pair.handshake()
    for i in range(3):  # the first sets the clock; two too soon are forgiven (grpc-go)
        pair.client.ping(b"%08d" % i)
        assert pair.to_server() == []
        pair.now += 1
    pair.client.ping(b"00000003")
    assert pair.to_server() == [ConnectionTerminated(f.ENHANCE_YOUR_CALM, "too_many_pings")]
    assert goaway_of(pair.server.data_to_send())[1:] == (f.ENHANCE_YOUR_CALM, b"too_many_pings")
    assert pair.server.closed and pair.server.receive_data(raw(f.PING, 0, 0, b"x" * 8)) == []


def test_pings_are_forgiven_while_the_server_sends_and_when_spaced() -> None:
    pair = Pair(Limits(1000, keepalive=KeepalivePolicy(min_time=10.0)))
    pair.handshake()
    for i in range(10):
        if i % 2:  # a response between two pings resets the strikes
            stream_id = pair.request()
            pair.to_server()
            pair.respond(stream_id, b"r")
        pair.client.ping(b"%08d" % i)
        assert pair.to_server() == []
    for i in range(10):  # pings min_time apart are no strikes
        pair.now += 10
        pair.client.ping(b"%08d" % i)
        assert pair.to_server() == []
    assert not pair.server.closed


def test_the_servers_keepalive_ping_is_answered() -> None:
    pair = Pair()
    pair.handshake()
    pair.server.send_keepalive_ping()
    assert not pair.server.keepalive_answered
    pair.to_client()  # h2 acknowledges it by itself
    pair.to_server()
    assert pair.server.keepalive_answered


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        (b"GET / HTTP/1.1\r\n\r\n" + b"\0" * 32, f.PROTOCOL_ERROR, "bad client preface"),
        (PREFACE + raw(f.HEADERS, f.END_HEADERS, 0, b"x"), f.PROTOCOL_ERROR, "HEADERS on stream 0"),
        (PREFACE + raw(f.HEADERS, f.END_HEADERS, 2, b"\x88"), f.PROTOCOL_ERROR, "bad stream id"),
        (PREFACE + raw(f.DATA, 0, 0, b"x"), f.PROTOCOL_ERROR, "DATA on stream 0"),
        (PREFACE + raw(f.DATA, 0, 9, b"x"), f.PROTOCOL_ERROR, "DATA on an idle stream"),
        (PREFACE + raw(f.PING, 0, 0, b"short"), f.PROTOCOL_ERROR, "bad PING"),
        (PREFACE + raw(f.SETTINGS, 0, 1), f.PROTOCOL_ERROR, "SETTINGS on a stream"),
        (PREFACE + raw(f.SETTINGS, 0, 0, b"12345"), f.FRAME_SIZE_ERROR, "bad SETTINGS"),
        (PREFACE + raw(f.WINDOW_UPDATE, 0, 0, b"\0\0\0\0"), f.PROTOCOL_ERROR, "zero WINDOW_UPDATE"),
        (
            PREFACE + raw(f.WINDOW_UPDATE, 0, 0, struct.pack(">I", f.MAX_WINDOW)),
            f.FLOW_CONTROL_ERROR,
            "connection window overflow",
        ),
        (
            PREFACE + raw(f.PUSH_PROMISE, 0, 1, b"\0" * 4),
            f.PROTOCOL_ERROR,
            "PUSH_PROMISE from a client",
        ),
        (PREFACE + f.FRAME_HEADER.pack(0, 0x4001, 0, 0, 1), f.FRAME_SIZE_ERROR, "frame too large"),
        (
            PREFACE + raw(f.HEADERS, 0, 1, b"") + raw(f.PING, 0, 0, b"x" * 8),
            f.PROTOCOL_ERROR,
            "expected CONTINUATION",
        ),
        (PREFACE + raw(f.HEADERS, f.END_HEADERS, 1, b"\xff\xff\xff"), f.COMPRESSION_ERROR, None),
    ],
)
def test_protocol_errors_end_the_connection_with_goaway(
    data: bytes, code: int, reason: str | None
) -> None:
    server = ServerConnection(LIMITS)
    server.initiate_connection()
    server.data_to_send()
    events = server.receive_data(data)
    ended = events[-1]
    assert isinstance(ended, ConnectionTerminated) and ended.error_code == code
    if reason is not None:
        assert ended.reason == reason
    _, sent_code, debug = goaway_of(server.data_to_send())
    assert sent_code == code and debug == ended.reason.encode()[:256]
    assert server.closed and server.receive_data(raw(f.PING, 0, 0, b"x" * 8)) == []


def test_priority_and_unknown_frames_are_ignored() -> None:
    server = ServerConnection(LIMITS)
    data = PREFACE + raw(f.PRIORITY, 0, 1, b"\0" * 5) + raw(0x42, 0xFF, 3, b"whatever")
    assert server.receive_data(data) == []
    assert not server.closed


def _block() -> bytes:
    import hpack

    return hpack.Encoder().encode(REQUEST_HEADERS)
