"""Go net/http's answers to requests it refuses before any handler runs.

etcd's HTTP side is Go's server, and clients see these exact bytes: Go writes them raw (no Date,
no Content-Length, no CORS headers) and closes the connection (net/http server.go, ``serve``).
h11 refuses most of the same requests, but with its own words and sometimes in another order, and
accepts a few that Go refuses; ``classify_bad_head`` re-reads a refused head in Go's order, and
``go_refusal`` checks a head h11 accepted for what only Go refuses.
"""

from __future__ import annotations

import re

_ERROR_HEADERS = b"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"


def _answer(public: bytes, body: bytes | None = None) -> bytes:
    return b"HTTP/1.1 " + public + _ERROR_HEADERS + (public if body is None else body)


BAD_REQUEST = _answer(b"400 Bad Request")
HEADERS_TOO_LARGE = _answer(b"431 Request Header Fields Too Large")
UNSUPPORTED_TRANSFER_ENCODING = _answer(b"501 Not Implemented", b"Unsupported transfer encoding")
VERSION_NOT_SUPPORTED = _answer(b"505 HTTP Version Not Supported: unsupported protocol version")
MISSING_HOST = _answer(b"400 Bad Request: missing required Host header")
MALFORMED_HOST = _answer(b"400 Bad Request: malformed Host header")
INVALID_HEADER_NAME = _answer(b"400 Bad Request: invalid header name")
INVALID_HEADER_VALUE = _answer(b"400 Bad Request: invalid header value")


def expectation_failed(date: str) -> bytes:
    """An Expect other than 100-continue (response.sendExpectationFailed): a normal, empty
    response written before the handler, so without etcd's CORS headers."""
    return (
        "HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\n"
        f"Date: {date}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_HOST = re.compile(rb"[-0-9a-zA-Z!$%&()*+,.:;=\[\]'_~]*")  # httpguts.validHostByte
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # httpguts.ValidHeaderFieldValue


def classify_bad_head(head: bytes, status_hint: int) -> bytes:
    """Go's answer for a head h11 refused, from h11's status hint and the raw head (the bytes
    from the start of the request; the blank line may be missing)."""
    if status_hint == 431:
        return HEADERS_TOO_LARGE
    if status_hint == 501:
        return UNSUPPORTED_TRANSFER_ENCODING
    lines = head.split(b"\n")
    request_line = lines[0].rstrip(b"\r").split(b" ")
    if len(request_line) != 3 or not request_line[2].startswith(b"HTTP/"):
        return BAD_REQUEST  # Go: malformed HTTP request / version
    hosts = 0
    names: list[bytes] = []
    for raw in lines[1:]:
        line = raw.rstrip(b"\r")
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            continue  # a folded continuation line: Go joins it
        name, colon, _value = line.partition(b":")
        if not colon:
            return BAD_REQUEST  # textproto: malformed MIME header line
        names.append(name)
        hosts += name.lower() == b"host"
    if hosts > 1:
        return BAD_REQUEST  # Go: too many Host headers
    if hosts == 0 and request_line[2] != b"HTTP/1.0":
        return MISSING_HOST
    if any(_TOKEN.fullmatch(name) is None for name in names):
        return INVALID_HEADER_NAME
    return BAD_REQUEST


def go_refusal(version: bytes, headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """What Go refuses in a head h11 accepted: a major version other than 1, a malformed Host,
    control characters in a value. None when Go would serve it. Names in any case."""
    if not version.startswith(b"1."):
        return VERSION_NOT_SUPPORTED
    for name, value in headers:
        if len(name) == 4 and name.lower() == b"host" and _HOST.fullmatch(value) is None:
            return MALFORMED_HOST
    # One search over all values (joined by a tab, which Go allows): h11 already refused CR
    # and LF in a value, so a match is a control character inside one.
    if _CTL.search(b"\t".join([value for _, value in headers])) is not None:
        return INVALID_HEADER_VALUE
    return None
