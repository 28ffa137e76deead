"""The core's end of the core link: each call is run by ``invoke`` with the same built handler
(the pipeline's metrics, codec, errors, learner guard, quota, header: etcdpy.api.pipeline) that
the core's own gRPC server would run for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import grpc
import structlog

from etcdpy import errors
from etcdpy.call import Metadata, invoke
from etcdpy.corelink.wire import (
    CANCEL,
    CREDIT,
    CREDIT_COUNT,
    FEED,
    HALF_CLOSE,
    HELLO,
    IDENTIFIED,
    INITIAL_CREDIT,
    LEASE_NOT_FOUND_TTL,
    LINK_METHODS,
    MESSAGE,
    METHOD_MASK,
    METHOD_NUMBER,
    PACKAGE,
    READ_INDEX,
    RENEW,
    REQUEST_HEADER,
    STATS,
    STATS_REPLY,
    STREAM_MESSAGE,
    SUBSCRIBE,
    UNCOUNTED,
    Identity,
    RecordReader,
    decode_lease_ids,
    encode_renewals,
    encode_response,
    split_identity,
)
from etcdpy.h2grpc.context import RequestContext
from etcdpy.outbox import Outbox

if TYPE_CHECKING:
    from etcdpy.corelink.replica_feed import ReplicaFeed

log = structlog.get_logger(__name__)

_OK = 0
_UNKNOWN = grpc.StatusCode.UNKNOWN.value[0]
_CANCELLED = grpc.StatusCode.CANCELLED.value[0]
_UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED.value[0]
_INTERNAL = grpc.StatusCode.INTERNAL.value[0]


_LINK_PEER = "unix:core-link"
_WATCH = METHOD_NUMBER[f"/{PACKAGE}.Watch/Watch"]
# Kinds below this open a call (a method's number with the wire's flags); above: control records.
_CALL_KINDS_END = (UNCOUNTED | IDENTIFIED | METHOD_MASK) + 1


class _IdentifiedContext(RequestContext):
    """The context of a call that crossed with its caller's identity (wire.Identity): the
    metadata is the auth metadata the front-end's client sent, nothing else."""

    __slots__ = ("_carried",)

    def __init__(self, identity: Identity, write: Callable[[Any], Awaitable[None]] | None) -> None:
        super().__init__([], _LINK_PEER, None, write, identity.cert_cn)
        self._carried = identity.metadata

    def invocation_metadata(self) -> Metadata:
        return self._carried


def _link_context(identity: Identity | None, stream: _CoreStream | None = None) -> RequestContext:
    """The context a handler run for a front-end gets: its caller's auth metadata and
    certificate name, when the call crossed with them."""
    write = stream.send if stream is not None else None
    if identity is None:
        return RequestContext([], _LINK_PEER, None, write)
    return _IdentifiedContext(identity, write)


def _identity(data: Any) -> Any:
    return data


class _Method:
    __slots__ = ("deserialize", "handler", "serialize", "streaming_requests", "unary")

    def __init__(self, handler: grpc.RpcMethodHandler[Any, Any]) -> None:
        self.handler = handler
        self.unary = handler.unary_unary is not None
        self.streaming_requests = handler.request_streaming
        self.deserialize = handler.request_deserializer or _identity  # a stream's messages
        self.serialize = handler.response_serializer or _identity


class _CoreStream:
    """One tunnelled stream: client messages in through a queue, responses out as records,
    never more than the front-end's credit allows."""

    def __init__(
        self, link: _LinkProtocol, call_id: int, method: _Method, identity: Identity | None
    ) -> None:
        self._link = link
        self._call_id = call_id
        self._method = method
        self._identity = identity
        self._incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._credit = INITIAL_CREDIT
        self._credit_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def feed(self, payload: bytes | None) -> None:
        self._incoming.put_nowait(payload)  # None: the client half-closed

    def grant(self, count: int) -> None:
        self._credit += count
        self._credit_event.set()

    async def requests(self) -> AsyncIterator[Any]:
        deserialize = self._method.deserialize
        while True:
            data = await self._incoming.get()
            if data is None:
                return
            yield deserialize(data)

    async def send(self, message: Any) -> None:
        await self._send_encoded(self._method.serialize(message))

    async def _send_encoded(self, data: bytes) -> None:
        while self._credit <= 0:
            self._credit_event.clear()
            await self._credit_event.wait()
        self._credit -= 1
        self._link.reply(self._call_id, STREAM_MESSAGE, data)

    async def run(self, first: bytes) -> None:
        method = self._method
        request: Any = self.requests() if method.streaming_requests else first
        code, details = _CANCELLED, "call cancelled"
        try:
            code, details, response = await invoke(
                method.handler, request, _link_context(self._identity, self)
            )
            if response is not None:  # stream-unary (none in etcd's API): its one message
                await self._send_encoded(response)
        finally:
            self._link.end_stream(self._call_id, code, details.encode())


class _LinkProtocol(asyncio.Protocol):
    """One front-end's connection: reads request records, writes response records in batches."""

    def __init__(self, server: CoreLinkServer) -> None:
        self._server = server
        self._reader = RecordReader(REQUEST_HEADER)
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._outbox = Outbox(self._loop)
        self._tasks: set[asyncio.Task[None]] = set()
        self._streams: dict[int, _CoreStream] = {}
        self._calls: dict[int, asyncio.Task[None]] = {}  # unary calls running, by call id
        self._questions: dict[int, asyncio.Future[bytes]] = {}
        self._next_question = 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = self._outbox.transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = self._outbox.transport = None
        self._server.connections.discard(self)
        if self._server.feed is not None:
            self._server.feed.subscribers.discard(self)
        for task in list(self._tasks):
            task.cancel()
        for question in self._questions.values():
            if not question.done():
                question.cancel()
        self._questions.clear()

    def data_received(self, data: bytes) -> None:
        try:
            for call_id, kind, payload in self._reader.feed(data):
                self._on_record(call_id, kind, payload)
        except ValueError as exc:  # a corrupt stream: drop this front-end's connection
            log.error("core link: bad record", error=str(exc))
            if self._transport is not None:
                self._transport.close()

    def _on_record(self, call_id: int, kind: int, payload: bytes) -> None:
        methods = self._server.methods
        if kind < len(methods):  # the common case: a counted call without identity
            self._open(call_id, methods[kind], payload, None)
            return
        if kind < _CALL_KINDS_END:
            self._open_flagged(call_id, kind, payload)
            return
        if kind == STATS_REPLY:
            question = self._questions.pop(call_id, None)
            if question is not None and not question.done():
                question.set_result(payload)
            else:  # answered after the scrape gave up on it: the next scrape counts it
                self._server.late_stats.append(payload)
            return
        open_stream = self._streams.get(call_id)
        if open_stream is None:
            if kind == HELLO:
                self._server.on_hello(payload)
            elif kind == SUBSCRIBE:
                self._subscribe(call_id)
            elif kind == READ_INDEX:
                self._spawn(self._read_index(call_id))
            elif kind == RENEW:
                self._spawn(self._renew(call_id, payload))
            elif kind == CANCEL:  # a unary call whose client went away (a Lock that waits)
                call = self._calls.get(call_id)
                if call is not None:
                    call.cancel()
            elif kind not in (MESSAGE, CREDIT, HALF_CLOSE):
                raise ValueError(f"unknown record kind {kind}")
            return  # records that crossed the stream's end
        stream = open_stream
        if kind == MESSAGE:
            stream.feed(payload)
        elif kind == CREDIT:
            stream.grant(CREDIT_COUNT.unpack(payload)[0])
        elif kind == HALF_CLOSE:
            stream.feed(None)
        elif kind == CANCEL:
            if stream.task is not None:
                stream.task.cancel()
        else:
            raise ValueError(f"unknown record kind {kind}")

    def _open(
        self, call_id: int, method: _Method | None, payload: bytes, identity: Identity | None
    ) -> None:
        """Starts a unary call or a stream."""
        if method is None:
            self.reply(call_id, _UNIMPLEMENTED, b"unknown method")
        elif method.unary:
            self._calls[call_id] = self._spawn(self._call(call_id, method, payload, identity))
        else:
            stream = _CoreStream(self, call_id, method, identity)
            self._streams[call_id] = stream
            stream.task = self._spawn(stream.run(payload))

    def _open_flagged(self, call_id: int, kind: int, payload: bytes) -> None:
        """A call's opening record with UNCOUNTED or IDENTIFIED in its kind."""
        number = kind & METHOD_MASK
        uncounted = bool(kind & UNCOUNTED)
        table = self._server.uncounted if uncounted else self._server.methods
        method = table[number] if number < len(table) else None
        if uncounted and method is not None and not method.unary and number != _WATCH:
            # uncounted: a read a front-end tried first, a Watch it hands on (etcdpy.frontend)
            method = None
        identity = None
        if kind & IDENTIFIED:
            try:
                identity, payload = split_identity(payload)
            except ValueError as exc:  # that call fails; the link goes on
                log.error("core link: bad identity block", error=str(exc))
                self.reply(call_id, _INTERNAL, f"core link: {exc}".encode())
                return
        self._open(call_id, method, payload, identity)

    def _spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _call(
        self, call_id: int, method: _Method, payload: bytes, identity: Identity | None
    ) -> None:
        try:
            code, details, response = await invoke(method.handler, payload, _link_context(identity))
        except asyncio.CancelledError:
            self.reply(call_id, _CANCELLED, b"call cancelled")
            raise
        finally:
            self._calls.pop(call_id, None)
        if code:
            self.reply(call_id, code, details.encode())
        else:
            self.reply(call_id, _OK, response)

    def _subscribe(self, call_id: int) -> None:
        feed = self._server.feed
        if feed is None:
            self.reply(call_id, _UNIMPLEMENTED, b"this core keeps no feed")
            return
        feed.subscribers.add(self)
        self.reply(call_id, _OK, feed.current_header())

    async def _read_index(self, call_id: int) -> None:
        read_index = self._server.read_index
        if read_index is None:
            self.reply(call_id, _UNIMPLEMENTED, b"this core serves no read index")
            return
        try:
            await read_index()
        except errors.EtcdError as exc:
            code, message = errors.to_grpc_status(exc)
            self.reply(call_id, code.value[0], message.encode())
            return
        except Exception as exc:
            log.exception("core link: unexpected error in read index")
            self.reply(call_id, _UNKNOWN, f"Unexpected {type(exc)}: {exc}".encode())
            return
        self.reply(call_id, _OK, b"")

    async def _renew(self, call_id: int, payload: bytes) -> None:
        renew_many = self._server.renew_many
        if renew_many is None:
            self.reply(call_id, _UNIMPLEMENTED, b"this core renews no leases")
            return
        try:
            lease_ids = decode_lease_ids(payload)
        except ValueError as exc:
            self.reply(call_id, _INTERNAL, str(exc).encode())
            return
        results: list[tuple[int, int, str]] = []
        for outcome in await renew_many(lease_ids):
            if isinstance(outcome, errors.LeaseNotFound):
                results.append((LEASE_NOT_FOUND_TTL, _OK, ""))
            elif isinstance(outcome, errors.EtcdError):
                code, message = errors.to_grpc_status(outcome)
                results.append((0, code.value[0], message))
            else:
                results.append((outcome, _OK, ""))
        self.reply(call_id, _OK, encode_renewals(results))

    def send_feed(self, record: bytes) -> None:
        self.reply(0, FEED, record)

    def ask_stats(self) -> asyncio.Future[bytes]:
        """The front-end's gRPC counts since it was last asked (etcdpy.corelink.stats)."""
        number = self._next_question
        self._next_question = number + 1 if number < 2**31 else 1
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._questions[number] = future
        self.reply(0, STATS, CREDIT_COUNT.pack(number))
        return future

    def end_stream(self, call_id: int, code: int, details: bytes) -> None:
        self._streams.pop(call_id, None)
        self.reply(call_id, code, details)

    def reply(self, call_id: int, kind: int, payload: bytes) -> None:
        self._outbox.add(encode_response(call_id, kind, payload))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class CoreLinkServer:
    """Listens on a private unix socket; front-ends connect to it, one connection each."""

    def __init__(
        self,
        handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]],
        on_hello: Callable[[bytes], None],
        feed: ReplicaFeed | None = None,
        read_index: Callable[[], Awaitable[None]] | None = None,
        uncounted: Mapping[str, grpc.RpcMethodHandler[Any, Any]] | None = None,
        renew_many: Callable[[Sequence[int]], Awaitable[Sequence[int | errors.EtcdError]]]
        | None = None,
    ) -> None:
        self.methods: list[_Method | None] = [
            _Method(handlers[path]) if path in handlers else None for path in LINK_METHODS
        ]
        uncounted = uncounted or {}
        self.uncounted: list[_Method | None] = [
            _Method(uncounted[path]) if path in uncounted else None for path in LINK_METHODS
        ]
        self.on_hello = on_hello
        self.feed = feed
        self.read_index = read_index
        self.renew_many = renew_many
        self.connections: set[_LinkProtocol] = set()
        self.late_stats: list[bytes] = []
        self._server: asyncio.AbstractServer | None = None

    async def collect_stats(self, timeout: float) -> list[bytes]:
        """Every subscribed front-end's counts (those that do not answer in time are left out:
        they count at the next scrape)."""
        answers, self.late_stats = self.late_stats, []
        if self.feed is None:
            return answers
        asked = [
            connection.ask_stats()
            for connection in self.connections
            if connection in self.feed.subscribers
        ]
        if not asked:
            return answers
        await asyncio.wait(asked, timeout=timeout)
        for future in asked:
            if future.done() and not future.cancelled():
                answers.append(future.result())
            else:
                future.cancel()
        return answers

    async def listen(self, path: str) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _LinkProtocol(self), path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
