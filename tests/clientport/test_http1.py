"""The client port's HTTP/1.1 protocol, driven with a fake transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from etcdpy.clientport.http1 import (
    Handler,
    Http1Connection,
    Http1Protocol,
    HttpRequest,
    HttpResponse,
    Response,
    StreamingResponse,
)


class FakeTransport:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closed


async def echo(request: HttpRequest) -> Response:
    body = f"{request.method} {request.path} {request.body.decode()}".encode()
    return HttpResponse(200, body)


async def _drive(chunks: list[bytes], handler: Handler) -> FakeTransport:
    transport = FakeTransport()
    proto = Http1Protocol(handler, max_body_bytes=1024)
    proto.connection_made(transport)  # type: ignore[arg-type]
    for chunk in chunks:
        proto.data_received(chunk)
        for _ in range(5):
            await asyncio.sleep(0)
    for _ in range(10):
        await asyncio.sleep(0)
    return transport


def drive(chunks: list[bytes], handler: Handler = echo) -> FakeTransport:
    return asyncio.run(_drive(chunks, handler))


def test_request_lowercases_headers_and_splits_query() -> None:
    conn = Http1Connection()
    conn.receive_data(
        b"GET /health?exclude=NOSPACE&exclude=CORRUPT HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n"
    )
    req = conn.next_event()
    assert isinstance(req, HttpRequest)
    assert req.method == "GET"
    assert req.path == "/health"
    assert req.query == {"exclude": ["NOSPACE", "CORRUPT"]}
    assert req.headers == {"host": "x", "x-a": "1"}


@pytest.mark.parametrize(
    "head",
    [
        b"GET /\r\nHost: x",
        b"GET / HTTP/2.0\r\nHost: x",
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon here",
        b"G@T / HTTP/1.1\r\nHost: x",
    ],
)
def test_malformed_heads_are_refused_with_a_close(head: bytes) -> None:
    t = drive([head + b"\r\n\r\n"])
    assert bytes(t.data).startswith((b"HTTP/1.1 400 Bad Request", b"HTTP/1.1 505 "))
    assert t.closed


def test_request_with_body_split_across_reads() -> None:
    t = drive([b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Le", b"ngth: 5\r\n\r\nab", b"cde"])
    text = bytes(t.data).decode()
    assert text.startswith("HTTP/1.1 200 OK\r\n")
    assert "Content-Length: 21\r\n" in text
    assert text.endswith("\r\n\r\nPOST /v3/kv/put abcde")
    assert not t.closed


def test_pipelined_requests_answered_in_order() -> None:
    t = drive([b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"])
    text = bytes(t.data).decode()
    assert text.index("GET /a") < text.index("GET /b")
    assert text.count("HTTP/1.1 200 OK") == 2


def test_chunked_request_body() -> None:
    head = b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    t = drive([head + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"])
    assert bytes(t.data).endswith(b"POST /x abcde")


def test_malformed_request_gets_400_and_close() -> None:
    t = drive([b"this is not http\r\n\r\n"])
    assert bytes(t.data).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close" in t.data
    assert t.closed


def test_body_over_limit_gets_413() -> None:
    t = drive([b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"])
    assert bytes(t.data).startswith(b"HTTP/1.1 413 ")
    assert t.closed


def test_connection_close_header_closes_after_answer() -> None:
    t = drive([b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
    assert b"GET /a" in t.data
    assert t.closed


def test_handler_exception_is_a_500_not_a_crash() -> None:
    async def broken(request: HttpRequest) -> Response:
        raise RuntimeError("boom")

    t = drive([b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"], broken)
    assert bytes(t.data).count(b"HTTP/1.1 500 Internal Server Error") == 2


def test_streaming_response_is_chunked() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"a":1}'
        yield b'{"b":2}'

    async def stream(request: HttpRequest) -> Response:
        return StreamingResponse(200, chunks())

    t = drive([b"POST /v3/watch HTTP/1.1\r\nHost: x\r\n\r\n"], stream)
    text = bytes(t.data)
    assert b"Transfer-Encoding: chunked" in text
    assert text.endswith(b'7\r\n{"a":1}\r\n7\r\n{"b":2}\r\n0\r\n\r\n')


def test_stream_head_waits_for_the_first_chunk() -> None:
    """As Go's server: nothing is written before the stream's first chunk, so the stream may
    still set its status (grpc-gateway's error before any message); a stream with no chunks
    answers its head and the last chunk when it ends."""
    gate = asyncio.Event()

    async def late() -> AsyncIterator[bytes]:
        await gate.wait()
        response.status = 503
        yield b'{"error":{}}'

    response = StreamingResponse(200, late())

    async def stream(request: HttpRequest) -> Response:
        return response

    async def run() -> tuple[bytes, bytes]:
        transport = FakeTransport()
        proto = Http1Protocol(stream)
        proto.connection_made(transport)  # type: ignore[arg-type]
        proto.data_received(b"POST /v3/watch HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(10):
            await asyncio.sleep(0)
        before = bytes(transport.data)
        gate.set()
        for _ in range(10):
            await asyncio.sleep(0)
        return before, bytes(transport.data)

    before, after = asyncio.run(run())
    assert before == b""
    assert after.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert after.endswith(b'\r\n\r\nc\r\n{"error":{}}\r\n0\r\n\r\n')

    async def nothing() -> AsyncIterator[bytes]:
        return
        yield b""

    async def empty(request: HttpRequest) -> Response:
        return StreamingResponse(200, nothing())

    text = bytes(drive([b"POST /v3/lease/keepalive HTTP/1.1\r\nHost: x\r\n\r\n"], empty).data)
    assert text.startswith(b"HTTP/1.1 200 OK\r\n")
    assert text.endswith(b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")


async def _stream_until_eof(eof_before_stream: bool) -> tuple[FakeTransport, list[str]]:
    """A stream that never ends by itself (a watch with no events), and a client that sends
    its request and then closes its side."""
    seen: list[str] = []

    async def endless() -> AsyncIterator[bytes]:
        seen.append("stream started")
        try:
            yield b'{"created":true}'
            await asyncio.Event().wait()
        finally:
            seen.append("stream closed")

    async def stream(request: HttpRequest) -> Response:
        if eof_before_stream:
            await asyncio.sleep(0.01)  # EOF arrives while the handler still works
        return StreamingResponse(200, endless())

    transport = FakeTransport()
    proto = Http1Protocol(stream)
    proto.connection_made(transport)  # type: ignore[arg-type]
    proto.data_received(b"POST /v3/watch HTTP/1.1\r\nHost: x\r\n\r\n")
    if not eof_before_stream:
        for _ in range(10):
            await asyncio.sleep(0)
        assert b'{"created":true}' in transport.data
    proto.eof_received()
    for _ in range(100):
        if len(seen) != 1 and transport.closed:
            break
        await asyncio.sleep(0.01)
    return transport, seen


@pytest.mark.parametrize("eof_before_stream", [False, True])
def test_stream_ends_and_connection_closes_when_the_client_leaves(eof_before_stream: bool) -> None:
    transport, seen = asyncio.run(_stream_until_eof(eof_before_stream))
    # Not left running: closed, or (when the client left first) never started.
    expected = [] if eof_before_stream else ["stream started", "stream closed"]
    assert seen == expected
    assert transport.closed


GO_HEADERS = b"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"


def go_refusal(public: bytes, body: bytes | None = None) -> bytes:
    return b"HTTP/1.1 " + public + GO_HEADERS + (public if body is None else body)


# Each answer was read from etcd 3.4 (Go 1.19's net/http) with the same bytes; where h11
# refuses with other words, or accepts what Go refuses, the client still sees Go's bytes.
@pytest.mark.parametrize(
    ("request_bytes", "answer"),
    [
        (b"garbage garbage\r\n\r\n", go_refusal(b"400 Bad Request")),
        (b"GET / HTTP/1.1\r\n\r\n", go_refusal(b"400 Bad Request: missing required Host header")),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", go_refusal(b"400 Bad Request")),
        (b"GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n", go_refusal(b"400 Bad Request")),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n",
            go_refusal(b"400 Bad Request: invalid header name"),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
            go_refusal(b"400 Bad Request: invalid header value"),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            go_refusal(b"400 Bad Request: malformed Host header"),
        ),
        (  # Go checks the Host before the values, wherever they are
            b"GET / HTTP/1.1\r\nX-A: a\x01b\r\nHost: a b\r\n\r\n",
            go_refusal(b"400 Bad Request: malformed Host header"),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            go_refusal(b"400 Bad Request"),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            go_refusal(b"400 Bad Request"),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            go_refusal(b"501 Not Implemented", b"Unsupported transfer encoding"),
        ),
        (
            b"GET / HTTP/3.0\r\nHost: x\r\n\r\n",
            go_refusal(b"505 HTTP Version Not Supported: unsupported protocol version"),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * (2 << 20),
            go_refusal(b"431 Request Header Fields Too Large"),
        ),
    ],
)
def test_refused_requests_get_gos_exact_answer(request_bytes: bytes, answer: bytes) -> None:
    t = drive([request_bytes])
    assert bytes(t.data) == answer
    assert t.closed


def test_other_expectations_get_gos_417() -> None:
    t = drive([b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: foo\r\n\r\n{}"])
    head = bytes(t.data)
    assert head.startswith(b"HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: ")
    assert head.endswith(b"\r\nContent-Length: 0\r\n\r\n")
    assert t.closed


def test_expect_100_continue_gets_100_then_the_answer() -> None:
    head = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    t = drive([head, b"{}"])
    assert bytes(t.data).startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert bytes(t.data).endswith(b"POST /x {}")


def test_head_gets_the_head_without_the_body() -> None:
    t = drive([b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"])
    text = bytes(t.data)
    first, second = text.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert first.endswith(b"Content-Length: 8\r\n\r\n")  # "HEAD /a ", unsent
    assert second.endswith(b"GET /b ")
    assert not t.closed


def test_http10_keep_alive_is_kept_as_go_does() -> None:
    """h11 closes after every HTTP/1.0 request; Go (and etcd) serve the next one."""
    t = drive([b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n"])
    text = bytes(t.data)
    assert text.count(b" 200 OK\r\n") == 2
    assert text.endswith(b"GET /b ")
    assert t.closed  # the second asked for no keep-alive


def test_body_over_limit_in_chunks_gets_413() -> None:
    chunk = b"400\r\n" + b"a" * 1024 + b"\r\n"
    t = drive([b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2])
    assert bytes(t.data).startswith(b"HTTP/1.1 413 ")
    assert t.closed
