"""One HTTP/1.1 server connection, sans-IO: bytes in, requests out; responses in, bytes out.

h11 parses every request and keeps the connection's state (framing of bodies, keep-alive,
pipelining: a request that arrives during a response waits in h11's buffer). Requests h11 or Go
refuse get Go's raw answer (``go_answers``).

Response heads and bodies are written here rather than by h11's writer, in the order and with
the headers etcd's Go server sends. h11 is told each response as one of a few cached events
(status; length or chunked; close or not): its state machine still decides what comes next, but
it neither validates our headers again nor copies a body it would not write (~20 us a response,
measured). A whole body is announced to it as Content-Length 0: its bytes are discarded and none
of its state depends on the length.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import formatdate
from functools import lru_cache
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import h11

from etcdpy.clientport.http1 import go_answers
from etcdpy.clientport.http1.messages import HttpRequest, HttpResponse, text_error

# Go's http.DefaultMaxHeaderBytes, plus the 4096 bytes of slack its server allows.
MAX_HEADER_BYTES = (1 << 20) + 4096
DEFAULT_MAX_BODY_BYTES = 4 << 20
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# etcd answers every HTTP request with these (its --cors default is "*").
_CORS = (
    "Access-Control-Allow-Headers: accept, content-type, authorization",
    "Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE",
    "Access-Control-Allow-Origin: *",
)


@dataclass(frozen=True, slots=True)
class Send:
    """Bytes to write before anything else; ``close``: then close the connection."""

    data: bytes
    close: bool = False


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


date = _Date()


@lru_cache(maxsize=128)
def _status_line(status: int) -> str:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    return f"HTTP/1.1 {status} {reason}"


def _head_bytes(
    status: int, content_type: str, headers: list[tuple[str, str]], framing: str, close: bool
) -> bytes:
    lines = [_status_line(status), *_CORS, f"Content-Type: {content_type}"]
    lines.extend(f"{k}: {v}" for k, v in headers)
    lines.append(f"Date: {date.get()}")
    if framing:
        lines.append(framing)
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _new_h11() -> h11.Connection:
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)


_END = h11.EndOfMessage()


@lru_cache(maxsize=256)
def _h11_response(status: int, chunked: bool, close: bool) -> h11.Response:
    """What h11 is told of a response: events are immutable, so one per kind is built (and
    validated) once."""
    framing = (b"transfer-encoding", b"chunked") if chunked else (b"content-length", b"0")
    headers = [framing, (b"connection", b"close")] if close else [framing]
    return h11.Response(status_code=status, headers=headers)


class Http1Connection:
    """Feed it with ``receive_data``; ``next_event`` gives a whole request (body read), a
    ``Send`` (an interim or refusing answer) or None (more bytes needed, or a response is due).
    Answer a request with ``whole`` or ``stream_head``/``stream_chunk``/``stream_end``, then
    call ``next_cycle``."""

    def __init__(self, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self._h11 = _new_h11()
        self._max_body = max_body_bytes
        self._head = bytearray()  # the raw head so far, to classify a refused one as Go would
        self._request: HttpRequest | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self.wants_close = False  # the request asked to close after its answer
        self._keep_alive_10 = False  # HTTP/1.0 with keep-alive: Go serves it, h11 closes
        self._is_head = False
        self._unread = False  # bytes h11 has not parsed yet (else next_event needs more)

    # -- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self._h11.their_state is h11.IDLE and len(self._head) <= MAX_HEADER_BYTES:
            self._head += data
        self._h11.receive_data(data)
        self._unread = True

    def next_event(self) -> HttpRequest | Send | None:
        if not self._unread:
            return None  # h11 would say NEED_DATA: its buffer is empty
        conn = self._h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if self._request is not None:  # a refused body: Go's handler sees a read error
                    return Send(go_answers.BAD_REQUEST, close=True)
                hint = exc.error_status_hint
                return Send(go_answers.classify_bad_head(bytes(self._head), hint), close=True)
            kind = type(event)
            if kind is h11.Data:
                data = event.data  # type: ignore[union-attr]
                self._body_size += len(data)
                if self._body_size > self._max_body:
                    return self._too_large()
                self._body.append(bytes(data))
            elif kind is h11.EndOfMessage:
                request, self._request = self._request, None
                assert request is not None
                request.body = b"".join(self._body)
                self._body = []
                return request
            elif kind is h11.Request:
                refusal = self._begin(event)  # type: ignore[arg-type]
                if refusal is not None:
                    return refusal
            elif event is h11.NEED_DATA and conn.client_is_waiting_for_100_continue:
                # Go sends it when the handler reads the body; ours always does, at once.
                conn.send(h11.InformationalResponse(status_code=100, headers=[]))
                return Send(_CONTINUE)
            else:  # NEED_DATA, PAUSED (our answer is due first), ConnectionClosed
                self._unread = event is not h11.NEED_DATA
                return None

    def _begin(self, event: h11.Request) -> Send | None:
        raw_headers = event.headers.raw_items()  # a plain list: h11's Headers iterate slowly
        refusal = go_answers.go_refusal(event.http_version, raw_headers)
        if refusal is not None:
            return Send(refusal, close=True)
        headers: dict[str, str] = {}
        for raw_name, raw_value in raw_headers:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        expect = headers.get("expect")
        if expect is not None and expect.lower() != "100-continue":
            return Send(go_answers.expectation_failed(date.get()), close=True)
        length = headers.get("content-length")
        if length is not None and int(length) > self._max_body:
            return self._too_large()
        version = "HTTP/" + event.http_version.decode("ascii")
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            self.wants_close = "keep-alive" not in connection
            self._keep_alive_10 = not self.wants_close
        else:
            self.wants_close = "close" in connection
            self._keep_alive_10 = False
        target = event.target.decode("latin-1")
        split = urlsplit(target)
        method = event.method.decode("ascii")
        self._is_head = method == "HEAD"
        self._request = HttpRequest(
            method=method,
            target=target,
            path=split.path or "/",
            query=parse_qs(split.query, keep_blank_values=True),
            version=version,
            headers=headers,
        )
        return None

    def _too_large(self) -> Send:
        return Send(self.whole(text_error(413, "413 Request Entity Too Large"), True), True)

    # -- output ---------------------------------------------------------------------------

    def whole(self, response: HttpResponse, close: bool = False) -> bytes:
        """A response with a Content-Length (no body for HEAD, as Go)."""
        close = close or self.wants_close
        conn = self._h11
        conn.send(_h11_response(response.status, False, close))
        conn.send(_END)
        body = response.body
        head = _head_bytes(
            response.status,
            response.content_type,
            response.headers,
            f"Content-Length: {len(body)}",
            close,
        )
        return head if self._is_head else head + body

    def stream_head(
        self, status: int, content_type: str, headers: list[tuple[str, str]], close: bool
    ) -> bytes:
        """The head of a chunked response (an HTTP/1.0 client gets the body unframed, then the
        close, as from Go and h11)."""
        old_client = self._h11.their_http_version != b"1.1"
        close = close or self.wants_close or old_client
        self._h11.send(_h11_response(status, True, close))
        framing = "" if old_client else "Transfer-Encoding: chunked"
        return _head_bytes(status, content_type, headers, framing, close)

    def stream_chunk(self, data: bytes) -> bytes:
        return self._h11.send(h11.Data(data=data))

    def stream_end(self) -> bytes:
        return self._h11.send(_END)

    # -- between requests -------------------------------------------------------------------

    def next_cycle(self) -> bool:
        """After a whole answer: True when the connection serves the next request."""
        conn = self._h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        elif self._keep_alive_10 and conn.our_state is h11.MUST_CLOSE:
            leftover = conn.trailing_data[0]  # h11 closes after HTTP/1.0; Go keeps it alive
            self._h11 = conn = _new_h11()
            conn.receive_data(leftover)
        else:
            return False
        leftover = conn.trailing_data[0]
        self._head = bytearray(leftover)
        self._unread = bool(leftover)
        self._is_head = False
        return True
