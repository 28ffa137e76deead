"""The asyncio side of an HTTP/1.1 connection: bytes from the transport into ``Http1Connection``,
each request to the handler (one at a time; pipelined requests wait), the answer's bytes back.

Responses are whole (``HttpResponse``) or streamed with chunked encoding (``StreamingResponse``,
for watch and snapshot). A client that closes its side ends a stream in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

import structlog

from etcdpy.clientport.http1.connection import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    Http1Connection,
    Send,
)
from etcdpy.clientport.http1.messages import (
    Handler,
    HttpRequest,
    HttpResponse,
    StreamingResponse,
    text_error,
)

log = structlog.get_logger(__name__)


class Http1Protocol(asyncio.Protocol):
    """One HTTP/1.1 connection on an asyncio transport."""

    def __init__(self, handler: Handler, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self._handler = handler
        self._conn = Http1Connection(max_body_bytes)
        self._pause_above = MAX_HEADER_BYTES + max_body_bytes
        self._waiting_bytes = 0  # received while a request is served
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
        self._conn.receive_data(data)
        if self._task is None:
            self._next_request()
            return
        self._waiting_bytes += len(data)
        if self._waiting_bytes > self._pause_above and self._transport is not None:
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
        """Starts the next complete request h11 has, if there is one."""
        transport = self._transport
        if transport is None:
            return
        while True:
            event = self._conn.next_event()
            if not isinstance(event, Send):
                break
            transport.write(event.data)
            if event.close:
                self._close()
                return
        if event is None:
            if self._closing:
                self._close()
            else:
                self._waiting_bytes = 0
                transport.resume_reading()
            return
        self._task = asyncio.get_running_loop().create_task(self._serve(event))

    async def _serve(self, request: HttpRequest) -> None:
        try:
            try:
                response = await self._handler(request)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a handler bug must not take the connection's server down
                log.error("http handler failed", path=request.path, error=repr(exc))
                response = text_error(500)
            if isinstance(response, StreamingResponse):
                await self._write_stream(response)
            else:
                self._write_whole(response)
        except asyncio.CancelledError:
            self._close()  # the client left in the middle of a response
            raise
        finally:
            self._task = None
        if self._transport is None or not self._conn.next_cycle():
            self._close()
        else:
            self._next_request()

    def _write_whole(self, response: HttpResponse) -> None:
        data = self._conn.whole(response)
        if self._transport is not None:
            self._transport.write(data)

    async def _write_stream(self, response: StreamingResponse) -> None:
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
                head = b"" if head_sent else self._stream_head(response)
                head_sent = True
                data = head + self._conn.stream_chunk(chunk)
                self._transport.write(data)
                await self._can_write.wait()
        finally:
            self._streaming = False
            aclose = getattr(response.chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        if self._transport is not None:
            head = b"" if head_sent else self._stream_head(response)
            self._transport.write(head + self._conn.stream_end())

    def _stream_head(self, response: StreamingResponse) -> bytes:
        return self._conn.stream_head(
            response.status, response.content_type, response.headers, close=False
        )

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
