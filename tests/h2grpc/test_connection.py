"""The asyncio transport (etcdpy.h2grpc.connection) on an in-memory transport: calls started
from the core's events, their responses written once per event-loop turn, graceful GOAWAY,
and random frames (whatever a client sends, the answer is HTTP/2, a GOAWAY naming a protocol
error at worst, never an internal error)."""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator
from typing import Any

import grpc
import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdpy.h2grpc import frames as f
from etcdpy.h2grpc.connection import Http2Connection
from etcdpy.h2grpc.server import GrpcServer

SERVICE = "test.Echo"
PREFACE = f.PREFACE + f.frame(f.SETTINGS, 0, 0)


class MemoryTransport:
    """What an asyncio transport does for the connection: collect writes, note the close."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4242) if name == "peername" else default

    def frames(self) -> list[tuple[int, int, int, bytes]]:
        data = b"".join(self.writes)
        out, pos = [], 0
        while pos + 9 <= len(data):
            high, low, kind, flags, sid = f.FRAME_HEADER.unpack_from(data, pos)
            size = (high << 16) | low
            out.append((kind, flags, sid, data[pos + 9 : pos + 9 + size]))
            pos += 9 + size
        return out


async def _unary(request: bytes, context: Any) -> bytes:
    return request[::-1]


async def _slow(request: bytes, context: Any) -> bytes:
    await asyncio.sleep(0.05)
    return b"done"


async def _stream(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request.upper()


def _server() -> GrpcServer:
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Slow": grpc.unary_unary_rpc_method_handler(_slow),
        "Stream": grpc.stream_stream_rpc_method_handler(_stream),
    }
    return GrpcServer({f"/{SERVICE}/{k}": v for k, v in handlers.items()}, 64 * 1024)


def _request_block(method: str, content_type: str = "application/grpc") -> bytes:
    headers = [
        (":method", "POST"), (":scheme", "http"), (":path", f"/{SERVICE}/{method}"),
        (":authority", "t"), ("content-type", content_type),
    ]  # fmt: skip
    return hpack.Encoder().encode(headers)


def _call(stream_id: int, method: str, message: bytes) -> bytes:
    return f.frame(f.HEADERS, f.END_HEADERS, stream_id, _request_block(method)) + f.frame(
        f.DATA, f.END_STREAM, stream_id, f.message_prefix(len(message)) + message
    )


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def _connect(server: GrpcServer) -> tuple[Http2Connection, MemoryTransport]:
    connection = Http2Connection(server)
    transport = MemoryTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport


def test_calls_answered_in_one_write_per_turn() -> None:
    async def run() -> None:
        server = _server()
        connection, transport = _connect(server)
        connection.data_received(PREFACE + _call(1, "Unary", b"abc") + _call(3, "Unary", b"xy"))
        await _turns()
        # The server's preface and SETTINGS ACK in the turn of the read; both responses in one
        # write of the turn the handlers ran in.
        assert len(transport.writes) == 2 and transport.writes[1].count(b"grpc-status") == 2
        data = [(sid, p) for kind, _, sid, p in transport.frames() if kind == f.DATA]
        assert data == [(1, f.message_prefix(3) + b"cba"), (3, f.message_prefix(2) + b"yx")]
        assert connection.idle.is_set() and not connection.streams
        assert connection in server.connections

    asyncio.run(run())


def test_a_wrong_content_type_gets_415() -> None:
    async def run() -> None:
        connection, transport = _connect(_server())
        block = _request_block("Unary", "text/plain")
        connection.data_received(PREFACE + f.frame(f.HEADERS, f.END_HEADERS, 1, block))
        await _turns()
        heads = [(flags, p) for kind, flags, sid, p in transport.frames() if kind == f.HEADERS]
        assert heads == [(f.END_HEADERS | f.END_STREAM, b"\x08\x03415")]
        resets = [p for kind, _, _, p in transport.frames() if kind == f.RST_STREAM]
        assert resets == [struct.pack(">I", f.NO_ERROR)]  # the client had not finished

    asyncio.run(run())


def test_go_away_waits_for_the_open_call_then_closes() -> None:
    async def run() -> None:
        server = _server()
        connection, transport = _connect(server)
        connection.data_received(PREFACE + _call(1, "Slow", b""))
        await _turns()
        assert not connection.idle.is_set()
        await server.stop(grace=5)
        assert transport.closed and connection.closed
        kinds = [(kind, sid) for kind, _, sid, _ in transport.frames()]
        goaway = kinds.index((f.GOAWAY, 0))
        assert (f.DATA, 1) in kinds[goaway:]  # the call finished after the GOAWAY
        assert kinds.count((f.GOAWAY, 0)) == 1

    asyncio.run(run())


def test_a_broken_connection_writes_goaway_and_closes() -> None:
    async def run() -> None:
        server = _server()
        connection, transport = _connect(server)
        connection.data_received(PREFACE + f.frame(f.HEADERS, f.END_HEADERS, 0, b"x"))
        assert transport.closed
        payload = next(p for kind, _, _, p in transport.frames() if kind == f.GOAWAY)
        assert struct.unpack_from(">I", payload, 4) == (f.PROTOCOL_ERROR,)
        connection.connection_lost(None)
        assert connection not in server.connections

    asyncio.run(run())


def test_streaming_calls_and_connection_loss_cancels_them() -> None:
    async def run() -> None:
        connection, transport = _connect(_server())
        head = f.frame(f.HEADERS, f.END_HEADERS, 1, _request_block("Stream"))
        connection.data_received(
            PREFACE + head + f.frame(f.DATA, 0, 1, f.message_prefix(2) + b"hi")
        )
        await _turns()
        data = [p for kind, _, _, p in transport.frames() if kind == f.DATA]
        assert data == [f.message_prefix(2) + b"HI"]
        stream = connection.streams[1]
        connection.connection_lost(None)
        await _turns()
        assert stream.task is not None and stream.task.done()

    asyncio.run(run())


# Random frames.

_FRAME_TYPES = st.integers(min_value=0, max_value=12)
_STREAM_IDS = st.sampled_from([0, 1, 2, 3, 5, 7, 0x7FFFFFFF])


@st.composite
def _frames(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        payload = draw(st.binary(max_size=48))
        if draw(st.booleans()):  # a plausible request head now and then, so calls start
            payload = _request_block(draw(st.sampled_from(["Unary", "Stream", "Nope"])))
        frame_type = draw(_FRAME_TYPES)
        flags = draw(st.integers(min_value=0, max_value=255))
        stream_id = draw(_STREAM_IDS)
        size = len(payload)
        out += struct.pack(">BHBBI", size >> 16, size & 0xFFFF, frame_type, flags, stream_id)
        out += payload
    return out


@settings(max_examples=int(os.environ.get("H2_FUZZ_EXAMPLES", "200")), deadline=None)
@given(frames=_frames())
def test_random_frames_never_cause_an_internal_error(frames: bytes) -> None:
    async def run() -> list[int]:
        connection, transport = _connect(_server())
        connection.data_received(PREFACE)
        connection.data_received(frames)
        await _turns()
        connection.connection_lost(None)
        await _turns()
        return [
            struct.unpack_from(">I", p, 4)[0]
            for kind, _, _, p in transport.frames()
            if kind == f.GOAWAY and len(p) >= 8
        ]

    codes = asyncio.run(run())
    assert f.INTERNAL_ERROR not in codes, "the server failed on this input"
