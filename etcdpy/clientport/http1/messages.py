"""What a route sees: a request, a whole or streamed response, and the handler between them.

Routes (clientport/routes.py, the gateway, later the dashboard) use only these; how the bytes
are parsed and framed is the business of ``connection`` and ``protocol``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

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
