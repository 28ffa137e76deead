"""What the HTTP/2 core (``protocol.ServerConnection``) reports from the bytes it was fed.

One event per frame that matters to a call; END_STREAM rides on the event of the frame that
carries it. Frames the core answers by itself (SETTINGS, PING, connection WINDOW_UPDATE
grants, refused streams) give no event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class RequestHead(NamedTuple):
    """What a call needs from its header block (cached with the block: equal bytes, equal head)."""

    path: bytes
    method: bytes
    content_type: bytes
    timeout: float | None  # seconds, from grpc-timeout
    encoding: bytes  # grpc-encoding
    headers: list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A client opened a stream with this header block."""

    stream_id: int
    head: RequestHead
    end_stream: bool


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Request bytes on an open stream (padding removed; gRPC's framing left to the call)."""

    stream_id: int
    data: bytes
    end_stream: bool


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The client's trailers: its side of the stream is closed, with no more data."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The client reset the stream (RST_STREAM): the core forgot it; its call is cancelled."""

    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class WindowUpdated:
    """The client's windows grew (WINDOW_UPDATE, or SETTINGS); stream 0 is the connection.
    The core already sent what waited; writers that wait for room may go on."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class ConnectionTerminated:
    """The client broke the protocol: GOAWAY with the code is queued, and the core takes no
    more input. The transport writes what is queued and closes."""

    error_code: int
    reason: str


Event = (
    RequestReceived
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowUpdated
    | ConnectionTerminated
)
