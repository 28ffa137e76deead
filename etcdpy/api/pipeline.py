"""The one path of an RPC: an ordered tuple of interceptors around a service's handler.

Every unary call runs through the same layers, outermost first (``core_interceptors``)::

    metrics -> codec -> errors -> auth -> learner guard -> quota -> header -> handler

- metrics: go-grpc-prometheus's counters and the slow-request log (etcdpy.api.grpc_metrics);
- codec: bytes in, bytes out: a request that does not parse is grpc-go's INTERNAL answer;
- errors: an EtcdError becomes etcd's gRPC status (etcd's togRPCError, ``errors.to_grpc_status``);
- auth: the caller (token or certificate CN) and etcd's checks made before a request is
  served: reads, admin-only RPCs (etcdpy.api.auth_guard; writes are checked when applied);
- learner guard: what a learner refuses (etcdpy.api.learner_guard);
- quota: --quota-backend-bytes in front of writes (etcdpy.api.quota);
- header: the ResponseHeader, by each service's rule (etcdpy.api.interceptors.Header).

Handlers stay tiny: validate, call the core, return the response. Streams (Watch,
LeaseKeepAlive, Snapshot, Observe) take the shape their service builds (``stream_handler``) and
meet the interceptors that concern a whole stream: metrics and the learner guard.

The interceptors are composed once, when the handlers are built: an interceptor that does not
concern a method hands its call back unchanged, so a call pays only for the layers it has.
``invoke`` (etcdpy.call) is the one way a transport runs a built handler: etcdpy.h2grpc, the
core link and the JSON gateway call it; grpc.aio (ETCDPY_CLIENT_FRONT=off) runs the same
built handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from etcdpy.api.services import SERVICES, Service
from etcdpy.call import CallContext, Handler

log = structlog.get_logger(__name__)

Unary = Callable[[Any, CallContext], Awaitable[Any]]
Handlers = dict[str, Handler]


@dataclass(frozen=True, slots=True)
class Method:
    """One method of one service, as the interceptors see it when they are composed."""

    service: Service
    descriptor: MethodDescriptor
    implemented: bool  # False: answered UNIMPLEMENTED, by every member

    @property
    def service_name(self) -> str:  # KV
        return self.service.name

    @property
    def name(self) -> str:  # Range
        return str(self.descriptor.name)

    @property
    def key(self) -> tuple[str, str]:
        return self.service.name, str(self.descriptor.name)

    @property
    def streaming(self) -> bool:
        return bool(self.descriptor.client_streaming or self.descriptor.server_streaming)

    @property
    def request_type(self) -> type[Message]:
        return self.service.request_type(self.descriptor)


class Interceptor:
    """One layer of the pipeline. Each hook gets what the layers inside it built and returns it
    wrapped, or unchanged when the layer does not concern the method."""

    def unary(self, method: Method, call: Unary) -> Unary:
        return call

    def stream(self, method: Method, handler: Handler) -> Handler:
        return handler


def serialize(message: Any) -> bytes:
    """A response's bytes: a message, bytes already encoded, or a large Range kept encoded
    (etcdpy.server.applier.EncodedRange)."""
    if isinstance(message, bytes):
        return message
    if isinstance(message, Message):
        return message.SerializeToString()
    encoded: bytes = message.encode()
    return encoded


def _unimplemented(method: Method) -> Handler:
    message = f"etcdpy: {method.service_name}.{method.name} is not implemented yet"

    async def handle(request: Any, context: CallContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

    descriptor = method.descriptor
    if descriptor.client_streaming and descriptor.server_streaming:
        return grpc.stream_stream_rpc_method_handler(handle)
    if descriptor.client_streaming:
        return grpc.stream_unary_rpc_method_handler(handle)
    if descriptor.server_streaming:
        return grpc.unary_stream_rpc_method_handler(handle)
    return grpc.unary_unary_rpc_method_handler(handle)


def build_method(method: Method, impl: object, interceptors: Sequence[Interceptor]) -> Handler:
    """``impl``'s handler of ``method`` inside ``interceptors`` (the first is outermost)."""
    if method.streaming or not method.implemented:
        if method.implemented:
            # Streaming services parse each message themselves (they get the request type).
            factory: Callable[..., Handler] = getattr(impl, "stream_handler")  # noqa: B009
            handler = factory(method.descriptor, method.request_type, serialize)
        else:
            handler = _unimplemented(method)
        if method.streaming:
            for interceptor in reversed(interceptors):
                handler = interceptor.stream(method, handler)
            return handler
        call: Unary = handler.unary_unary  # type: ignore[assignment]
    else:
        call = getattr(impl, method.name)
    for interceptor in reversed(interceptors):
        call = interceptor.unary(method, call)
    return grpc.unary_unary_rpc_method_handler(call)


def build_handlers(
    services: Mapping[str, object],
    interceptors: Sequence[Interceptor],
    only: Sequence[tuple[str, str]] | None = None,
) -> Handlers:
    """Every method of ``services`` (etcdpy.api.services names them) by full method path
    (``/etcdserverpb.KV/Range``); ``only``: just these (service, method) pairs."""
    handlers: Handlers = {}
    for name, impl in services.items():
        service = SERVICES[name]
        for descriptor in service.descriptor.methods:
            if only is not None and (name, descriptor.name) not in only:
                continue
            implemented = hasattr(impl, descriptor.name)
            method = Method(service, descriptor, implemented)
            handlers[service.path(descriptor.name)] = build_method(method, impl, interceptors)
    return handlers
