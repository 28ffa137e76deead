"""go-grpc-prometheus's server counters: the outermost layer of the pipeline (``Metrics``).

Per call this costs a few integer additions and two perf_counter reads; prometheus_client is
only involved at scrape time (etcdpy.observability.metrics). Message and byte counts are the
protobuf sizes etcd counts, not HTTP/2 framing: a unary call's request and response bytes as
they cross this layer (the codec is inside it), a stream's from its (de)serializers.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import structlog

from etcdpy.api.pipeline import Interceptor, Method, Unary
from etcdpy.call import CallContext, Handler
from etcdpy.observability.metrics import GrpcStats, MethodStats
from etcdpy.observability.request_ids import RAFT_REQUEST_ID

log = structlog.get_logger(__name__)

# etcd's warnUnaryRequestLatency: unary requests slower than this are logged ("request stats").
SLOW_REQUEST_SECONDS = 0.3

_CANCELLED = 1
_UNKNOWN = 2


def rpc_type(client_streaming: bool, server_streaming: bool) -> str:
    if client_streaming and server_streaming:
        return "bidi_stream"
    if client_streaming:
        return "client_stream"
    if server_streaming:
        return "server_stream"
    return "unary"


def _code_of(context: Any, exc: BaseException) -> int:
    """The status the call ended with: what abort() set, else Canceled or Unknown."""
    code = None
    try:
        code = context.code()
    except Exception:  # pragma: no cover - older grpc without ServicerContext.code()
        code = None
    if isinstance(code, grpc.StatusCode):
        number: int = code.value[0]
        return number
    if isinstance(exc, asyncio.CancelledError):
        return _CANCELLED
    return _UNKNOWN


class Metrics(Interceptor):
    def __init__(self, totals: GrpcStats) -> None:
        self._totals = totals

    def _stats(self, method: Method) -> MethodStats:
        descriptor = method.descriptor
        kind = rpc_type(descriptor.client_streaming, descriptor.server_streaming)
        return self._totals.method(method.service.full_name, method.name, kind)

    def unary(self, method: Method, call: Unary) -> Unary:
        return _count_unary(call, self._stats(method), self._totals)

    def stream(self, method: Method, handler: Handler) -> Handler:
        return instrument_stream(handler, self._stats(method), self._totals)


def _count_unary(behavior: Unary, stats: MethodStats, totals: GrpcStats) -> Unary:
    perf = time.perf_counter
    handled = stats.handled
    observe = stats.handling.observe

    async def call(request: bytes, context: CallContext) -> bytes:
        stats.msg_received += 1
        totals.received_bytes += len(request)
        stats.started += 1
        started = perf()
        code = 0
        try:
            response: bytes = await behavior(request, context)
            stats.msg_sent += 1
            totals.sent_bytes += len(response)
            return response
        except BaseException as exc:
            code = _code_of(context, exc)
            raise
        finally:
            handled[code] += 1
            took = perf() - started
            observe(took)
            if took > SLOW_REQUEST_SECONDS:
                _log_slow(stats, request, took, code)

    return call


def instrument_stream(handler: Handler, stats: MethodStats, totals: GrpcStats) -> Handler:
    deserialize = _counting_deserializer(handler.request_deserializer, stats, totals)
    serialize = _counting_serializer(handler.response_serializer, stats, totals)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap(handler.unary_stream, stats),
            request_deserializer=deserialize,
            response_serializer=serialize,
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _wrap(handler.stream_unary, stats),
            request_deserializer=deserialize,
            response_serializer=serialize,
        )
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        _wrap(handler.stream_stream, stats),
        request_deserializer=deserialize,
        response_serializer=serialize,
    )


def _counting_deserializer(
    inner: Callable[[bytes], Any] | None, stats: MethodStats, totals: GrpcStats
) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        stats.msg_received += 1
        totals.received_bytes += len(data)
        return data if inner is None else inner(data)

    return deserialize


def _counting_serializer(
    inner: Callable[[Any], bytes] | None, stats: MethodStats, totals: GrpcStats
) -> Callable[[Any], bytes]:
    def serialize(message: Any) -> bytes:
        data: bytes = message if inner is None else inner(message)
        stats.msg_sent += 1
        totals.sent_bytes += len(data)
        return data

    return serialize


def _wrap(behavior: Callable[..., Any], stats: MethodStats) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):
        return _wrap_generator(behavior, stats)
    return _wrap_coroutine(behavior, stats)


def _wrap_coroutine(behavior: Callable[..., Any], stats: MethodStats) -> Callable[..., Any]:
    perf = time.perf_counter

    async def call(request: Any, context: Any) -> Any:
        stats.started += 1
        started = perf()
        code = 0
        try:
            return await behavior(request, context)
        except BaseException as exc:
            code = _code_of(context, exc)
            raise
        finally:
            stats.handled[code] += 1
            stats.handling.observe(perf() - started)

    return call


def _log_slow(stats: MethodStats, request: Any, took: float, code: int) -> None:
    # The raft request id, when the call went through the log (set by EtcdServer.propose in
    # this call's task); reads and status calls have none.
    request_id = RAFT_REQUEST_ID.get()
    log.warning(
        "request stats",
        method=f"/{stats.service}/{stats.method}",
        took=f"{took:.3f}s",
        expected_duration=f"{SLOW_REQUEST_SECONDS * 1000:.0f}ms",
        request_size=len(request) if isinstance(request, bytes) else None,
        grpc_code=code,
        request_id=f"{request_id:x}" if request_id else None,
    )


def _wrap_generator(behavior: Callable[..., Any], stats: MethodStats) -> Callable[..., Any]:
    perf = time.perf_counter

    async def call(request: Any, context: Any) -> AsyncIterator[Any]:
        stats.started += 1
        started = perf()
        code = 0
        try:
            async for response in behavior(request, context):
                yield response
        except BaseException as exc:
            code = _code_of(context, exc)
            raise
        finally:
            stats.handled[code] += 1
            stats.handling.observe(perf() - started)

    return call
