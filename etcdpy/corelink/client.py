"""A front-end's end of the core link: ``call`` sends one request record and waits for its
response record; ``open_stream`` tunnels a stream."""

from __future__ import annotations

import array
import asyncio
import fcntl
import termios
from collections.abc import Callable
from typing import Protocol, cast

from etcdpy.call import CallContext
from etcdpy.corelink.wire import (
    AUTH_METADATA,
    CANCEL,
    CREDIT,
    CREDIT_COUNT,
    FEED,
    HALF_CLOSE,
    HELLO,
    MESSAGE,
    RESPONSE_HEADER,
    STATS,
    STATS_REPLY,
    STREAM_MESSAGE,
    RecordReader,
    encode_identity,
    encode_request,
)
from etcdpy.h2grpc.context import RequestContext
from etcdpy.outbox import Outbox

CALL_ID_LIMIT = 2**32
_CANCELLED = 1


_AUTH_HEADERS = frozenset(name.encode() for name in AUTH_METADATA)


def caller_identity(context: CallContext) -> bytes:
    """What the core must know of a call's caller to check its auth: its ``token`` and
    ``authorization`` metadata and its certificate's CN (wire.encode_identity; b"": none)."""
    cert_cn = context.client_cert_cn()
    if (
        cert_cn is None
        and isinstance(context, RequestContext)
        and not context.sent_any_of(_AUTH_HEADERS)
    ):
        return b""  # the common case, without parsing the metadata (1 us of 15 per call)
    return encode_identity(context.invocation_metadata(), cert_cn)


class CoreLinkLost(ConnectionError):
    """The core process is gone (or closed the link)."""


class LinkStream:
    """The front-end's side of one tunnelled stream."""

    def __init__(self, link: CoreLinkClient, call_id: int) -> None:
        self._link = link
        self.call_id = call_id
        # (STREAM_MESSAGE, message) items, then (status code, details) to end
        self.incoming: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.ended = False

    def send(self, payload: bytes) -> None:
        self._link.send(self.call_id, MESSAGE, payload)

    def half_close(self) -> None:
        self._link.send(self.call_id, HALF_CLOSE, b"")

    def grant(self, count: int) -> None:
        self._link.send(self.call_id, CREDIT, CREDIT_COUNT.pack(count))

    def cancel(self) -> None:
        if not self.ended:
            self.ended = True
            self._link.forget(self.call_id)
            self._link.send(self.call_id, CANCEL, b"")


class InboundDelay(Protocol):
    """A slow link a test imposes (etcdpy.testing.faults.LinkDelay); None in production."""

    def defer(self, handle: Callable[[bytes], None], data: bytes) -> None:
        """Calls ``handle(data)`` later, keeping the order of the data."""
        ...


class CoreLinkClient(asyncio.Protocol):
    def __init__(
        self, on_lost: Callable[[], None], inbound_delay: InboundDelay | None = None
    ) -> None:
        self._on_lost = on_lost
        self._reader = RecordReader(RESPONSE_HEADER)
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self._streams: dict[int, LinkStream] = {}
        self._next_id = 1
        self._loop = asyncio.get_running_loop()
        self._outbox = Outbox(self._loop)
        self._inbound_delay = inbound_delay
        # FEED records (etcdpy.corelink.feed), in order with the responses around them
        self.on_feed: Callable[[bytes], None] | None = None
        # The counts the core asks for with STATS records (etcdpy.corelink.stats)
        self.take_stats: Callable[[], bytes] | None = None

    @classmethod
    async def connect(
        cls, path: str, on_lost: Callable[[], None], inbound_delay: InboundDelay | None = None
    ) -> CoreLinkClient:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_unix_connection(lambda: cls(on_lost, inbound_delay), path)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = self._outbox.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = self._outbox.transport = None
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(CoreLinkLost("the core process closed the link"))
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.ended = True
            stream.incoming.put_nowait((_CANCELLED, b"the core process closed the link"))
        self._on_lost()

    def data_received(self, data: bytes) -> None:
        if self._inbound_delay is not None:
            self._inbound_delay.defer(self._handle, data)
        else:
            self._handle(data)

    def _handle(self, data: bytes) -> None:
        pending = self._pending
        streams = self._streams
        for call_id, kind, payload in self._reader.feed(data):
            if call_id == 0:  # no call has id 0
                if kind == FEED and self.on_feed is not None:
                    self.on_feed(payload)
                elif kind == STATS and self.take_stats is not None:
                    question = CREDIT_COUNT.unpack(payload)[0]
                    self.send(question, STATS_REPLY, self.take_stats())
                continue
            future = pending.pop(call_id, None)
            if future is not None:
                if not future.done():
                    future.set_result((kind, payload))
                continue
            stream = streams.get(call_id)
            if stream is None:
                continue  # a cancelled stream's last records
            if kind != STREAM_MESSAGE:
                del streams[call_id]
                stream.ended = True
            stream.incoming.put_nowait((kind, payload))

    def has_unread_input(self) -> bool:
        """Bytes from the core wait in the socket (records this process has not seen yet)."""
        transport = self._transport
        if transport is None:
            return False
        sock = transport.get_extra_info("socket")
        if sock is None:
            return False
        count = array.array("i", [0])
        try:
            fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
        except OSError:
            return False
        return count[0] > 0

    def _new_id(self) -> int:
        call_id = self._next_id
        self._next_id = call_id + 1 if call_id + 1 < CALL_ID_LIMIT else 1
        return call_id

    def call(
        self, method: int, payload: bytes, identity: bytes = b""
    ) -> asyncio.Future[tuple[int, bytes]]:
        """Sends a call (``identity``: its caller's, from ``caller_identity``); the future gets
        (gRPC status code, response bytes or error text)."""
        future: asyncio.Future[tuple[int, bytes]] = self._loop.create_future()
        if self._transport is None:
            future.set_exception(CoreLinkLost("no link to the core process"))
            return future
        call_id = self._new_id()
        self._pending[call_id] = future
        self._outbox.add(encode_request(call_id, method, payload, identity))
        return future

    def cancel_call(self, future: asyncio.Future[tuple[int, bytes]]) -> None:
        """Tells the core that the client of a call ``call`` sent went away (the core cancels
        its handler: a Lock or a Campaign that waits deletes its key, as etcd does)."""
        for call_id, pending in self._pending.items():
            if pending is future:
                del self._pending[call_id]
                self.send(call_id, CANCEL, b"")
                return

    def open_stream(self, method: int, payload: bytes, identity: bytes = b"") -> LinkStream:
        """Opens a stream (``payload``: the request of a server-streaming call, else empty;
        ``identity``: its caller's, from ``caller_identity``)."""
        if self._transport is None:
            raise CoreLinkLost("no link to the core process")
        stream = LinkStream(self, self._new_id())
        self._streams[stream.call_id] = stream
        self._outbox.add(encode_request(stream.call_id, method, payload, identity))
        return stream

    def forget(self, call_id: int) -> None:
        self._streams.pop(call_id, None)

    def hello(self, text: str) -> None:
        self.send(0, HELLO, text.encode())

    def send(self, call_id: int, kind: int, payload: bytes) -> None:
        self._outbox.add(encode_request(call_id, kind, payload))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
