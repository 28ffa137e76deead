"""etcdpy's gRPC server (etcdpy.h2grpc) over sockets, against grpcio's client and raw HTTP/2
frames (h2).

The server runs in a thread of its own on a loopback port, with small handlers whose behaviour
each test checks from the client's side: statuses and messages, metadata, streams, deadlines,
cancellation, limits, compression, back-pressure, and what the asyncio transport owns (a broken
connection is closed while the server serves others, keepalive timers, graceful stop). The
HTTP/2 rules themselves are tested on the sans-IO core, without sockets (test_protocol.py).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from etcdpy.h2grpc.connection import Http2Connection
from etcdpy.h2grpc.server import GrpcServer, KeepalivePolicy

MAX_RECEIVE = 64 * 1024
SERVICE = "test.Echo"


class Handlers:
    def __init__(self) -> None:
        self.cancelled: list[str] = []

    async def unary(self, request: bytes, context: Any) -> bytes:
        return request[::-1]

    async def fail(self, request: bytes, context: Any) -> bytes:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: bad ä 100%")
        raise AssertionError

    async def crash(self, request: bytes, context: Any) -> bytes:
        raise ValueError("boom")

    async def slow(self, request: bytes, context: Any) -> bytes:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.append(request.decode())
            raise
        return b""

    async def big(self, request: bytes, context: Any) -> bytes:
        return b"x" * int(request)

    async def meta(self, request: bytes, context: Any) -> bytes:
        items = sorted(
            (k, v if isinstance(v, bytes) else v.encode())
            for k, v in context.invocation_metadata()
            if k.startswith("x-")
        )
        return b";".join(k.encode() + b"=" + v for k, v in items)

    async def stream(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        try:
            async for request in requests:
                yield request.upper()
        except asyncio.CancelledError:
            self.cancelled.append("stream")
            raise

    async def writer(self, requests: AsyncIterator[bytes], context: Any) -> None:
        async for request in requests:  # ``context.write`` style, as the Watch service
            for _ in range(int(request)):
                await context.write(b"y" * 1000)


def _handlers(h: Handlers) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    unary = grpc.unary_unary_rpc_method_handler
    streaming = grpc.stream_stream_rpc_method_handler
    table = {
        "Unary": unary(h.unary),
        "Fail": unary(h.fail),
        "Crash": unary(h.crash),
        "Slow": unary(h.slow),
        "Big": unary(h.big),
        "Meta": unary(h.meta),
        "Stream": streaming(h.stream),
        "Writer": streaming(h.writer),
    }
    return {f"/{SERVICE}/{name}": handler for name, handler in table.items()}


class ServerThread:
    def __init__(self, keepalive: KeepalivePolicy | None = None) -> None:
        self.keepalive = keepalive
        self.handlers = Handlers()
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = GrpcServer(_handlers(self.handlers), MAX_RECEIVE, keepalive=self.keepalive)
        self.grpc = server
        listener = await self._loop.create_server(lambda: Http2Connection(server), "127.0.0.1", 0)
        self.port = listener.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        listener.close()
        await server.stop(1.0)

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    thread = ServerThread()
    yield thread
    thread.stop()


@pytest.fixture()
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


def _unary(channel: grpc.Channel, name: str) -> Any:
    return channel.unary_unary(f"/{SERVICE}/{name}")


def _error(fn: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    return info.value


def test_unary_calls_many_times_on_one_connection(channel: grpc.Channel) -> None:
    call = _unary(channel, "Unary")
    for i in range(200):
        assert call(b"abc%d" % i, timeout=5) == (b"abc%d" % i)[::-1]
    assert call(b"", timeout=5) == b""  # an empty message is still one message


def test_status_and_message_as_the_handler_set_them(channel: grpc.Channel) -> None:
    err = _error(_unary(channel, "Fail"), b"x", timeout=5)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "etcdserver: bad ä 100%"  # percent-encoded on the wire
    err = _error(_unary(channel, "Crash"), b"x", timeout=5)
    assert err.code() == grpc.StatusCode.UNKNOWN
    assert "boom" in (err.details() or "")


def test_unknown_methods_get_grpc_gos_words(channel: grpc.Channel) -> None:
    err = _error(_unary(channel, "Nope"), b"x", timeout=5)
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    assert err.details() == f"unknown method Nope for service {SERVICE}"
    err = _error(channel.unary_unary("/other.Svc/Call"), b"x", timeout=5)
    assert err.details() == "unknown service other.Svc"


def test_metadata_reaches_the_handler(channel: grpc.Channel) -> None:
    metadata = (("x-token", "abc"), ("x-data-bin", b"\x00\xff"))
    assert _unary(channel, "Meta")(b"", metadata=metadata, timeout=5) == (
        b"x-data-bin=\x00\xff;x-token=abc"
    )


def test_large_messages_both_ways_within_the_limit(channel: grpc.Channel) -> None:
    # 3 MiB out: many frames, many window updates from the client.
    assert len(_unary(channel, "Big")(b"%d" % (3 << 20), timeout=20)) == 3 << 20
    request = b"9" * (MAX_RECEIVE - 10)
    err = _error(_unary(channel, "Big"), request, timeout=20)  # in, parsed: int("999...") fails
    assert err.code() == grpc.StatusCode.UNKNOWN


def test_a_message_over_the_limit_is_refused(channel: grpc.Channel) -> None:
    err = _error(_unary(channel, "Unary"), b"z" * (MAX_RECEIVE + 1), timeout=10)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == (
        f"grpc: received message larger than max ({MAX_RECEIVE + 1} vs. {MAX_RECEIVE})"
    )
    assert _unary(channel, "Unary")(b"ok", timeout=5) == b"ko"  # the connection still serves


def test_gzip_compressed_requests(channel: grpc.Channel) -> None:
    call = _unary(channel, "Unary")
    assert (
        call(b"hello" * 100, compression=grpc.Compression.Gzip, timeout=5) == (b"hello" * 100)[::-1]
    )


def test_deadline_ends_the_call_and_cancels_the_handler(
    server: ServerThread, channel: grpc.Channel
) -> None:
    err = _error(_unary(channel, "Slow"), b"deadline", timeout=0.3)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    _wait_for(lambda: "deadline" in server.handlers.cancelled)


def test_client_cancel_cancels_the_handler(server: ServerThread, channel: grpc.Channel) -> None:
    future = _unary(channel, "Slow").future(b"cancel-me", timeout=20)
    time.sleep(0.2)
    future.cancel()
    _wait_for(lambda: "cancel-me" in server.handlers.cancelled)


def test_streams_echo_in_order_and_end(channel: grpc.Channel) -> None:
    call = channel.stream_stream(f"/{SERVICE}/Stream")
    messages = [b"m%d" % i for i in range(300)]
    assert list(call(iter(messages), timeout=10)) == [m.upper() for m in messages]


def test_context_write_streams_wait_for_a_slow_reader(channel: grpc.Channel) -> None:
    """2 MB through the client's flow-control window: nothing lost, all in order."""
    call = channel.stream_stream(f"/{SERVICE}/Writer")
    responses = call(iter([b"2000"]), timeout=20)
    got = 0
    for response in responses:
        assert response == b"y" * 1000
        got += 1
        if got % 500 == 0:
            time.sleep(0.05)  # the client reads slowly for a moment
    assert got == 2000


def test_stream_cancel_cancels_the_handler(server: ServerThread, channel: grpc.Channel) -> None:
    requests: list[bytes] = [b"a"]
    call = channel.stream_stream(f"/{SERVICE}/Stream")(iter(requests + [b""] * 0), timeout=20)
    assert next(call) == b"A"
    call.cancel()
    _wait_for(lambda: "stream" in server.handlers.cancelled or call.done())


def _wait_for(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# Raw HTTP/2 (the h2 library as the client).


class RawClient:
    def __init__(self, port: int, window: int = 65535) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
        )
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def events(self, until: type, seconds: float = 5.0) -> list[Any]:
        got: list[Any] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            data = self.sock.recv(1 << 20)
            if not data:
                break
            got.extend(self.conn.receive_data(data))
            self.flush()
            if any(isinstance(e, until) for e in got):
                break
        return got

    def receive_once(self) -> list[Any]:
        data = self.sock.recv(1 << 20)
        events = self.conn.receive_data(data) if data else []
        self.flush()
        return list(events)

    def call(self, path: str, message: bytes) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        headers = [
            (":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", "test"), ("content-type", "application/grpc"), ("te", "trailers"),
        ]  # fmt: skip
        self.conn.send_headers(stream_id, headers)
        self.conn.send_data(stream_id, struct.pack(">BI", 0, len(message)) + message, True)
        self.flush()
        return stream_id


def test_protocol_errors_close_only_that_connection(server: ServerThread) -> None:
    bad = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    bad.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x01\x05\x00\x00\x00\x00")
    data = b""
    while chunk := bad.recv(65536):  # HEADERS on stream 0: GOAWAY, then the socket closes
        data += chunk
    assert b"\x07\x00\x00\x00\x00\x00" in data  # a GOAWAY frame header (type 7) is in there
    bad.close()
    garbage = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    garbage.sendall(b"GET / HTTP/1.1\r\n\r\n" + b"\x00" * 32)
    while garbage.recv(65536):
        pass
    garbage.close()
    client = RawClient(server.port)  # a well-behaved client is still served
    client.call(f"/{SERVICE}/Unary", b"abc")
    events = client.events(h2.events.StreamEnded)
    assert b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))[5:] == b"cba"
    trailers = [e for e in events if isinstance(e, h2.events.TrailersReceived)]
    assert dict(trailers[0].headers)[b"grpc-status"] == b"0"
    client.sock.close()


def test_graceful_stop_lets_calls_finish() -> None:
    thread = ServerThread()
    with grpc.insecure_channel(f"127.0.0.1:{thread.port}") as ch:
        assert _unary(ch, "Unary")(b"ab", timeout=5) == b"ba"
        thread.stop()
        err = _error(_unary(ch, "Unary"), b"ab", timeout=2)
        assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _read_until_closed(sock: socket.socket, seconds: float) -> bytes:
    sock.settimeout(seconds)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_server_keepalive_closes_a_connection_that_never_answers() -> None:
    thread = ServerThread(KeepalivePolicy(interval=0.3, timeout=0.3))
    try:
        silent = socket.create_connection(("127.0.0.1", thread.port), timeout=5)
        silent.sendall(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        )
        began = time.monotonic()
        data = _read_until_closed(silent, 5)  # it reads but never answers the pings
        assert b"etcdpyka" in data and time.monotonic() - began < 4
        silent.close()
        with grpc.insecure_channel(f"127.0.0.1:{thread.port}") as ch:
            call = _unary(ch, "Unary")
            for _ in range(8):  # grpcio answers pings: its connection lives on
                assert call(b"ab", timeout=5) == b"ba"
                time.sleep(0.15)
    finally:
        thread.stop()
