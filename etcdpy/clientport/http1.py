"""A small HTTP/1.1 server protocol for the client port's HTTP side (health, metrics, gateway).

It is deliberately narrow: requests with Content-Length or chunked bodies, keep-alive, one
request at a time per connection (pipelined requests wait in the buffer), and responses that are
either whole (``HttpResponse``) or streamed with chunked encoding (``StreamingResponse``, for
watch and snapshot). Malformed requests get the answers Go's net/http gives (400 with a plain
text body, then close), because etcd's HTTP side is Go's server and clients see those bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import cast
from urllib.parse import parse_qs, urlsplit

import structlog

log = structlog.get_logger(__name__)

# Go's http.DefaultMaxHeaderBytes.
MAX_HEADER_BYTES = 1 << 20
DEFAULT_MAX_BODY_BYTES = 4 << 20
TEXT_PLAIN = "text/plain; charset=utf-8"


@dataclass(slots=True)
class HttpRequest:
    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    version: str
    headers: dict[str, str]  # names in lower case; repeated headers joined with ", "
    body: bytes = b""


@dataclass(slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = TEXT_PLAIN
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class StreamingResponse:
    """Sent with chunked encoding; each item of ``chunks`` goes out as one chunk. The head goes
    out with the first chunk, so ``status`` may change until then."""

    status: int
    chunks: AsyncIterator[bytes]
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


Response = HttpResponse | StreamingResponse
Handler = Callable[[HttpRequest], Awaitable[Response]]


def text_error(status: int, message: str | None = None) -> HttpResponse:
    """What Go's http.Error writes: the message and a newline, as plain text."""
    text = message if message is not None else f"{status} {HTTPStatus(status).phrase}"
    return HttpResponse(
        status, (text + "\n").encode(), headers=[("X-Content-Type-Options", "nosniff")]
    )


class BadRequest(Exception):
    def __init__(self, status: int = 400, message: str = "400 Bad Request") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Date:
    """The Date header, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def get(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True)
        return self._value


_date = _Date()


def parse_head(head: bytes) -> HttpRequest:
    """The request line and headers (without the blank line); raises BadRequest."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise BadRequest() from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadRequest()
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0") or not method.isalpha() or not target:
        raise BadRequest()
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "400 Bad Request: malformed MIME header line")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    split = urlsplit(target)
    return HttpRequest(
        method=method,
        target=target,
        path=split.path or "/",
        query=parse_qs(split.query, keep_blank_values=True),
        version=version,
        headers=headers,
    )


# etcd answers every HTTP request with these (its --cors default is "*").
_CORS = (
    "Access-Control-Allow-Headers: accept, content-type, authorization",
    "Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE",
    "Access-Control-Allow-Origin: *",
)


def _head_bytes(
    status: int, content_type: str, headers: list[tuple[str, str]], framing: str, close: bool
) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    lines = [f"HTTP/1.1 {status} {reason}", *_CORS, f"Content-Type: {content_type}"]
    lines.extend(f"{k}: {v}" for k, v in headers)
    lines.append(f"Date: {_date.get()}")
    lines.append(framing)
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Http1Protocol(asyncio.Protocol):
    """One HTTP/1.1 connection; ``initial`` holds bytes read before the protocol took over."""

    def __init__(self, handler: Handler, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self._handler = handler
        self._max_body = max_body_bytes
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._peer_done = False  # the client closed its side (EOF)
        self._streaming = False
        self._can_write = asyncio.Event()
        self._can_write.set()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._task is None:
            self._next_request()
        elif len(self._buffer) > MAX_HEADER_BYTES + self._max_body and self._transport:
            self._transport.pause_reading()  # a pipelining client waits for its answers

    def eof_received(self) -> bool:
        self._peer_done = True
        self._closing = True
        if self._task is None:
            self._close()
        elif self._streaming:
            # A stream has no end of its own: once the client has gone (Go's server cancels
            # the request's context on EOF too), stop it now, or a gateway watch would live on
            # until an event fails to write.
            self._task.cancel()
        return True  # keep the write side open to finish a whole response in progress

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._transport = None
        self._can_write.set()
        if self._task is not None:
            self._task.cancel()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # -- requests --------------------------------------------------------------------------

    def _next_request(self) -> None:
        """Starts the next complete request in the buffer, if there is one."""
        if self._transport is None:
            return
        try:
            request = self._take_request()
        except BadRequest as exc:
            self._write_whole(text_error(exc.status, exc.message), close=True)
            self._close()
            return
        if request is None:
            if self._closing:
                self._close()
            else:
                self._transport.resume_reading()
            return
        self._task = asyncio.get_running_loop().create_task(self._serve(request))

    def _take_request(self) -> HttpRequest | None:
        buf = self._buffer
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                raise BadRequest(431, "431 Request Header Fields Too Large")
            return None
        request = parse_head(bytes(buf[:end]))
        body_start = end + 4
        headers = request.headers
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parsed = _dechunk(buf, body_start, self._max_body)
            if parsed is None:
                return None
            request.body, consumed = parsed
        else:
            length_text = headers.get("content-length", "0")
            if not length_text.isdigit():
                raise BadRequest(400, "400 Bad Request: bad Content-Length")
            length = int(length_text)
            if length > self._max_body:
                raise BadRequest(413, "413 Request Entity Too Large")
            if len(buf) < body_start + length:
                return None
            request.body = bytes(buf[body_start : body_start + length])
            consumed = body_start + length
        del buf[:consumed]
        return request

    async def _serve(self, request: HttpRequest) -> None:
        close = _wants_close(request)
        try:
            try:
                response = await self._handler(request)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a handler bug must not take the connection's server down
                log.error("http handler failed", path=request.path, error=repr(exc))
                response = text_error(500)
            if isinstance(response, StreamingResponse):
                await self._write_stream(response, close)
            else:
                self._write_whole(response, close)
        except asyncio.CancelledError:
            self._close()  # the client left in the middle of a response
            raise
        finally:
            self._task = None
        if close:
            self._close()
        else:
            self._next_request()

    def _write_whole(self, response: HttpResponse, close: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        head = _head_bytes(
            response.status,
            response.content_type,
            response.headers,
            f"Content-Length: {len(response.body)}",
            close,
        )
        transport.write(head + response.body)

    async def _write_stream(self, response: StreamingResponse, close: bool) -> None:
        """The head goes out with the first chunk (or with the end of a stream that had none),
        as Go's server sends a handler's header at its first write: until then the stream may
        still change its status (grpc-gateway's error before any message)."""
        if self._transport is None:
            return
        self._streaming = True
        head_sent = False
        try:
            if self._peer_done:
                return  # the client left before the stream began
            async for chunk in response.chunks:
                if self._transport is None:
                    return
                if not chunk:
                    continue
                data = b"%x\r\n%b\r\n" % (len(chunk), chunk)
                if not head_sent:
                    data = self._stream_head(response, close) + data
                    head_sent = True
                self._transport.write(data)
                await self._can_write.wait()
        finally:
            self._streaming = False
            aclose = getattr(response.chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        if self._transport is not None:
            head = b"" if head_sent else self._stream_head(response, close)
            self._transport.write(head + b"0\r\n\r\n")

    @staticmethod
    def _stream_head(response: StreamingResponse, close: bool) -> bytes:
        return _head_bytes(
            response.status,
            response.content_type,
            response.headers,
            "Transfer-Encoding: chunked",
            close,
        )

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


def _wants_close(request: HttpRequest) -> bool:
    connection = request.headers.get("connection", "").lower()
    if request.version == "HTTP/1.0":
        return "keep-alive" not in connection
    return "close" in connection


def _dechunk(buf: bytearray, start: int, limit: int) -> tuple[bytes, int] | None:
    """A chunked body from ``start``: (body, end offset), or None while incomplete."""
    body = bytearray()
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadRequest(400, "400 Bad Request: bad chunked encoding") from None
        if len(body) + size > limit:
            raise BadRequest(413, "413 Request Entity Too Large")
        pos = eol + 2
        if size == 0:
            # Trailers (ignored) end with an empty line.
            end = buf.find(b"\r\n\r\n", pos - 2)
            if end < 0:
                return None
            return bytes(body), end + 4
        if len(buf) < pos + size + 2:
            return None
        body += buf[pos : pos + size]
        pos += size + 2
