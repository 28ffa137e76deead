"""go-grpc-prometheus's server counters, kept by wrapping each method handler once.

Per call this costs a few integer additions and two perf_counter reads; prometheus_client is
only involved at scrape time (etcdpy.observability.metrics). Message and byte counts come from
the (de)serializers, so they are the protobuf sizes etcd counts, not HTTP/2 framing.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import structlog

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


def instrument(
    handler: grpc.RpcMethodHandler[Any, Any], stats: MethodStats, totals: GrpcStats
) -> grpc.RpcMethodHandler[Any, Any]:
    deserialize = _counting_deserializer(handler.request_deserializer, stats, totals)
    serialize = _counting_serializer(handler.response_serializer, stats, totals)
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_coroutine(handler.unary_unary, stats, warn_slow=True),
            request_deserializer=deserialize,
            response_serializer=serialize,
        )
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


def _wrap_coroutine(
    behavior: Callable[..., Any], stats: MethodStats, warn_slow: bool = False
) -> Callable[..., Any]:
    perf = time.perf_counter
    handled = stats.handled
    observe = stats.handling.observe
    slow = SLOW_REQUEST_SECONDS if warn_slow else float("inf")

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
            handled[code] += 1
            took = perf() - started
            observe(took)
            if took > slow:
                _log_slow(stats, request, took, code)

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
