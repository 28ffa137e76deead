"""One call on one HTTP/2 stream: its request messages in, the handler run, its status out.

Unary-request methods run once the whole request is in (END_STREAM); streaming-request methods
run from the HEADERS frame, reading messages as they arrive. A call ends with one status
("Trailers-Only" when it sent no message); a stream the client resets, or a connection that goes
away, cancels the handler's task.

A call knows its connection only as a ``CallSink`` (the frames it may send, the waits it may
make), and the server only as a ``Router``: it never imports either (h2's stream.py).
"""

from __future__ import annotations

import asyncio
import collections
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import grpc
import structlog

from etcdpy.call import invoke
from etcdpy.h2grpc import frames as f
from etcdpy.h2grpc.context import RequestContext
from etcdpy.h2grpc.events import RequestHead
from etcdpy.h2grpc.limits import Limits

log = structlog.get_logger(__name__)

_OK = 0
_CANCELLED = grpc.StatusCode.CANCELLED.value[0]
_UNKNOWN = grpc.StatusCode.UNKNOWN.value[0]
_DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
_RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
_UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED.value[0]
_INTERNAL = grpc.StatusCode.INTERNAL.value[0]


class CallSink(Protocol):
    """What a call needs from its connection (``connection.Http2Connection``)."""

    loop: asyncio.AbstractEventLoop
    peer: str
    cert_cn: str | None  # the CN of the client certificate the TLS handshake verified
    limits: Limits
    closed: bool

    def send_message(self, stream_id: int, message: bytes) -> None: ...
    def send_status(self, stream_id: int, code: int, message: str) -> None:
        """The call's status; the stream is closed and the call forgotten."""

    def refuse_content_type(self, stream_id: int) -> None: ...
    def acknowledge_received(self, stream_id: int, size: int) -> None: ...
    def is_blocked(self, stream_id: int) -> bool: ...
    async def wait_writable(self) -> None: ...
    def stream_closed(self, stream_id: int) -> None: ...


class Router(Protocol):
    """What a call needs from its server (``server.GrpcServer``): the handlers by path."""

    methods: dict[bytes, grpc.RpcMethodHandler[Any, Any]]

    def unknown_method_message(self, path: bytes) -> str: ...


class _Rejected(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Stream:
    """A call's stream: what was received, the handler's task, its end. The HTTP/2 side of it
    (windows, what waits for them) is the connection's."""

    __slots__ = (
        "body", "conn", "deadline", "head", "local_closed", "messages",
        "method", "remote_closed", "stream_id", "task", "timer", "waiter",
    )  # fmt: skip

    def __init__(
        self, conn: CallSink, stream_id: int, head: RequestHead, deadline: float | None
    ) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.head = head
        self.deadline = deadline
        self.method: grpc.RpcMethodHandler[Any, Any] | None = None
        self.body = bytearray()
        self.messages: collections.deque[bytes] = collections.deque()
        self.remote_closed = False
        self.local_closed = False
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.waiter: asyncio.Future[None] | None = None

    # Requests in

    def receive(self, payload: bytes, end: bool) -> None:
        if self.local_closed:
            return  # answered already (an early error); the client's rest is dropped
        if payload:
            self.body += payload
        try:
            if self.method is not None and self.method.request_streaming:
                self._split_messages()
            elif len(self.body) >= f.MESSAGE_PREFIX.size:
                self._check_size(f.MESSAGE_PREFIX.unpack_from(self.body)[1])
        except _Rejected as exc:
            self.finish(exc.code, str(exc))
            if self.task is not None:
                self.task.cancel()
            return
        if end:
            self.remote_closed = True
            if self.method is not None and not self.method.request_streaming:
                self._start_unary()
            self._wake_reader()

    def _check_size(self, size: int) -> None:
        limit = self.conn.limits.max_receive_bytes
        if size > limit:
            raise _Rejected(
                _RESOURCE_EXHAUSTED,
                f"grpc: received message larger than max ({size} vs. {limit})",
            )

    def _split_messages(self) -> None:
        body = self.body
        prefix = f.MESSAGE_PREFIX
        taken = 0
        while len(body) - taken >= prefix.size:
            compressed, size = prefix.unpack_from(body, taken)
            self._check_size(size)
            end = taken + prefix.size + size
            if end > len(body):
                break
            self.messages.append(self._message(compressed, bytes(body[taken + prefix.size : end])))
            taken = end
        if taken:
            del body[:taken]
            self._wake_reader()

    def _message(self, compressed: int, data: bytes) -> bytes:
        if not compressed:
            return data
        encoding = self.head.encoding
        if encoding != b"gzip":
            raise _Rejected(
                _UNIMPLEMENTED,
                f'grpc: Decompressor is not installed for grpc-encoding "{encoding.decode()}"',
            )
        limit = self.conn.limits.max_receive_bytes
        inflater = zlib.decompressobj(wbits=31)
        try:
            plain = inflater.decompress(data, limit + 1)
        except zlib.error as exc:
            raise _Rejected(_INTERNAL, f"grpc: failed to decompress the message: {exc}") from exc
        if len(plain) > limit:
            raise _Rejected(
                _RESOURCE_EXHAUSTED,
                f"grpc: received message after decompression larger than max "
                f"({len(plain)} vs. {limit})",
            )
        return plain

    def _start_unary(self) -> None:
        body = self.body
        prefix = f.MESSAGE_PREFIX
        try:
            if len(body) < prefix.size:
                raise _Rejected(_INTERNAL, "grpc: error while reading the request: EOF")
            compressed, size = prefix.unpack_from(body)
            if len(body) - prefix.size != size:
                raise _Rejected(_INTERNAL, "grpc: the request is not one whole message")
            data = self._message(compressed, bytes(body[prefix.size :]))
        except _Rejected as exc:
            self.finish(exc.code, str(exc))
            return
        self.body = bytearray()
        assert self.method is not None
        self.task = self.conn.loop.create_task(_run(self, self.method, data))

    def _wake_reader(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def requests(self, deserialize: Callable[[bytes], Any] | None) -> AsyncIterator[Any]:
        """The client's messages, as its handler reads them (each read grants window back)."""
        loop = self.conn.loop
        while True:
            if self.messages:
                data = self.messages.popleft()
                self._grant(len(data) + f.MESSAGE_PREFIX.size)
                yield deserialize(data) if deserialize is not None else data
                continue
            if self.remote_closed or self.local_closed:
                return
            self.waiter = loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    def _grant(self, size: int) -> None:
        self.conn.acknowledge_received(self.stream_id, size)

    # Responses out

    def send_message(self, data: bytes) -> None:
        if not self.local_closed:
            self.conn.send_message(self.stream_id, data)

    async def write(self, data: bytes) -> None:
        """A streaming response: sent, then wait while the client's window or socket is full."""
        if self.local_closed:
            raise asyncio.CancelledError  # the client reset the stream, or went away
        self.send_message(data)
        conn = self.conn
        while not self.local_closed and not conn.closed and conn.is_blocked(self.stream_id):
            await conn.wait_writable()

    def finish(self, code: int, message: str) -> None:
        """The call's status; the connection sends it after any message still waiting."""
        if self.local_closed:
            return
        self.local_closed = True
        self.conn.send_status(self.stream_id, code, message)
        self._closed()

    def refuse_content_type(self) -> None:
        self.local_closed = True
        self.conn.refuse_content_type(self.stream_id)
        self._closed()

    def _closed(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._wake_reader()

    def reset_by_peer(self) -> None:
        self.remote_closed = self.local_closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None:
            self.task.cancel()
        self.conn.stream_closed(self.stream_id)
        self._wake_reader()

    def abandon(self) -> None:
        """The connection is gone."""
        self.local_closed = self.remote_closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None:
            self.task.cancel()
        self._wake_reader()

    def expire(self) -> None:
        self.timer = None
        if not self.local_closed:
            self.finish(_DEADLINE_EXCEEDED, "Deadline Exceeded")
            if self.task is not None:
                self.task.cancel()


def run_call(stream: Stream, router: Router, ended: bool) -> None:
    """Called on the HEADERS frame that opens ``stream``."""
    head = stream.head
    if not head.content_type.startswith(b"application/grpc"):
        stream.remote_closed = stream.remote_closed or ended
        stream.refuse_content_type()
        return
    method = router.methods.get(head.path)
    if method is None:
        stream.remote_closed = ended
        stream.finish(_UNIMPLEMENTED, router.unknown_method_message(head.path))
        return
    stream.method = method
    if head.timeout is not None:
        stream.timer = stream.conn.loop.call_later(head.timeout, stream.expire)
    if method.request_streaming:
        stream.task = stream.conn.loop.create_task(_run(stream, method, None))
        if ended:
            stream.receive(b"", True)
    elif ended:
        stream.receive(b"", True)


async def _run(stream: Stream, method: grpc.RpcMethodHandler[Any, Any], data: bytes | None) -> None:
    serialize = method.response_serializer
    deserialize = method.request_deserializer
    streaming_out = method.response_streaming
    write = None
    if streaming_out:
        raw_write = stream.write

        async def write(message: Any) -> None:
            await raw_write(serialize(message) if serialize is not None else message)

    conn = stream.conn
    context = RequestContext(stream.head.headers, conn.peer, stream.deadline, write, conn.cert_cn)
    request: Any = stream.requests(deserialize) if method.request_streaming else data
    try:
        code, details, response = await invoke(method, request, context, stream.head.path)
    except asyncio.CancelledError:
        stream.finish(_CANCELLED, "context canceled")  # no-op when the stream is gone
        return
    if code:
        stream.finish(code, details)
        return
    if response is not None and not streaming_out:
        stream.send_message(response)  # invoke serialized it
    stream.finish(_OK, "")
