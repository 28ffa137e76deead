"""The core's end of the core link: each record is one unary call, run by the same method
handler (metrics, quota guard, parsing, errors) the core's gRPC server would run for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, cast

import grpc
import structlog

from etcdpy.corelink.wire import (
    HELLO,
    LINK_METHODS,
    REQUEST_HEADER,
    RecordReader,
    encode_response,
)

log = structlog.get_logger(__name__)

_UNKNOWN = grpc.StatusCode.UNKNOWN.value[0]
_CANCELLED = grpc.StatusCode.CANCELLED.value[0]


class CallAborted(Exception):
    """What ``LinkContext.abort`` raises, as grpc.aio's abort raises its own AbortError."""


class LinkContext:
    """The part of grpc.aio's ServicerContext that etcdpy's unary handlers use."""

    __slots__ = ("_code", "_details")

    def __init__(self) -> None:
        self._code: grpc.StatusCode | None = None
        self._details = ""

    async def abort(self, code: grpc.StatusCode, details: str = "", *_: Any) -> NoReturn:
        self._code = code
        self._details = details
        raise CallAborted(details)

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def time_remaining(self) -> float | None:
        return None


Unary = Callable[[Any, Any], Any]


class _Method:
    __slots__ = ("behavior", "deserialize", "serialize")

    def __init__(self, handler: grpc.RpcMethodHandler[Any, Any]) -> None:
        assert handler.unary_unary is not None
        self.behavior: Unary = handler.unary_unary
        self.deserialize = handler.request_deserializer or (lambda data: data)
        self.serialize = handler.response_serializer or (lambda message: message)


class _LinkProtocol(asyncio.Protocol):
    """One front-end's connection: reads request records, writes response records in batches."""

    def __init__(self, server: CoreLinkServer) -> None:
        self._server = server
        self._reader = RecordReader(REQUEST_HEADER)
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._server.connections.discard(self)
        for task in list(self._tasks):
            task.cancel()

    def data_received(self, data: bytes) -> None:
        methods = self._server.methods
        try:
            for call_id, number, payload in self._reader.feed(data):
                if number == HELLO:
                    self._server.on_hello(payload)
                    continue
                method = methods[number] if number < len(methods) else None
                if method is None:
                    self._reply(call_id, grpc.StatusCode.UNIMPLEMENTED.value[0], b"unknown method")
                    continue
                task = self._loop.create_task(self._call(call_id, method, payload))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except ValueError as exc:  # a corrupt stream: drop this front-end's connection
            log.error("core link: bad record", error=str(exc))
            if self._transport is not None:
                self._transport.close()

    async def _call(self, call_id: int, method: _Method, payload: bytes) -> None:
        context = LinkContext()
        try:
            request = method.deserialize(payload)
            response = await method.behavior(request, context)
            self._reply(call_id, 0, method.serialize(response))
        except CallAborted:
            code = context.code()
            number = code.value[0] if code is not None else _UNKNOWN
            self._reply(call_id, number, context.details().encode())
        except asyncio.CancelledError:
            self._reply(call_id, _CANCELLED, b"call cancelled")
            raise
        except Exception as exc:  # what grpc.aio answers for an exception a handler lets out
            log.exception("core link: unexpected error in handler")
            self._reply(call_id, _UNKNOWN, f"Unexpected {type(exc)}: {exc}".encode())

    def _reply(self, call_id: int, code: int, payload: bytes) -> None:
        self._out.append(encode_response(call_id, code, payload))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        if self._transport is not None and out:
            self._transport.write(b"".join(out))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class CoreLinkServer:
    """Listens on a private unix socket; front-ends connect to it, one connection each."""

    def __init__(
        self,
        handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]],
        on_hello: Callable[[bytes], None],
    ) -> None:
        self.methods: list[_Method | None] = [
            _Method(handlers[path]) if path in handlers else None for path in LINK_METHODS
        ]
        self.on_hello = on_hello
        self.connections: set[_LinkProtocol] = set()
        self._server: asyncio.AbstractServer | None = None

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
