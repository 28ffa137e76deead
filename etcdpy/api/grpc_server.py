"""Builds the gRPC server: etcd's limits, and every v3 service bound from its descriptor.

Requests arrive as bytes and are parsed here rather than by grpc, so that malformed protobuf gets
grpc-go's answer (INTERNAL, "grpc: error unmarshalling request: ...") as etcd gives it, and so
that any RPC a service does not define answers UNIMPLEMENTED with a message naming it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message

from etcdpy import errors
from etcdpy.api.cluster import ClusterService
from etcdpy.api.concurrency import ElectionService, LockService, Recipes
from etcdpy.api.grpc_metrics import instrument, rpc_type
from etcdpy.api.grpc_options import generic_handlers, grpc_server_options
from etcdpy.api.kv import KVService
from etcdpy.api.learner_guard import guard_learner_services
from etcdpy.api.lease import LeaseService
from etcdpy.api.local_client import LocalClient
from etcdpy.api.maintenance import MaintenanceService
from etcdpy.api.quota import guard_services
from etcdpy.api.services import SERVICES, Service
from etcdpy.api.status import Ctx
from etcdpy.api.watch import WatchService
from etcdpy.server.etcd_server import EtcdServer

if TYPE_CHECKING:
    from etcdpy.observability.metrics import GrpcStats  # ops

Unary = Callable[[Any, Ctx], Awaitable[Any]]


def _serialize(message: Message | bytes) -> bytes:
    # A handler may answer with bytes already encoded (a large Range: etcdpy.server.applier).
    return message if isinstance(message, bytes) else message.SerializeToString()


async def _parse(request_type: type[Message], data: bytes, context: Ctx) -> Any:
    try:
        return request_type.FromString(data)
    except DecodeError as exc:
        await context.abort(grpc.StatusCode.INTERNAL, f"grpc: error unmarshalling request: {exc}")


def _unary(request_type: type[Message], method: Unary) -> Callable[[bytes, Ctx], Awaitable[Any]]:
    """Parse, call, and map an EtcdError to etcd's status: one frame per request."""
    from_string = request_type.FromString

    async def handle(data: bytes, context: Ctx) -> Any:
        try:
            request = from_string(data)
        except DecodeError as exc:
            await context.abort(
                grpc.StatusCode.INTERNAL, f"grpc: error unmarshalling request: {exc}"
            )
        try:
            return await method(request, context)
        except errors.EtcdError as exc:
            code, message = errors.to_grpc_status(exc)
            await context.abort(code, message)

    return handle


def _unimplemented(service: str, name: str) -> Callable[..., Awaitable[Any]]:
    async def handle(request: Any, context: Ctx) -> Any:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, f"etcdpy: {service}.{name} is not implemented yet"
        )

    return handle


def _method_handler(
    service: Service, impl: object, method: MethodDescriptor
) -> grpc.RpcMethodHandler[Any, Any]:
    request_type = service.request_type(method)
    bound = getattr(impl, method.name, None)
    if bound is None:
        missing = _unimplemented(service.name, method.name)
        if method.client_streaming and method.server_streaming:
            return grpc.stream_stream_rpc_method_handler(missing)
        if method.client_streaming:
            return grpc.stream_unary_rpc_method_handler(missing)
        if method.server_streaming:
            return grpc.unary_stream_rpc_method_handler(missing)
        return grpc.unary_unary_rpc_method_handler(missing)
    if method.client_streaming or method.server_streaming:
        # Streaming services parse each message themselves (they get the request type).
        factory: Callable[..., grpc.RpcMethodHandler[Any, Any]] = getattr(impl, "stream_handler")  # noqa: B009
        return factory(method, request_type, _serialize)
    return grpc.unary_unary_rpc_method_handler(
        _unary(request_type, bound), response_serializer=_serialize
    )


def service_handlers(
    service: str, impl: object, stats: GrpcStats | None = None
) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """The service's method handlers by full method path (``/etcdserverpb.KV/Range``)."""
    found = SERVICES[service]
    methods = found.descriptor.methods
    handlers = {m.name: _method_handler(found, impl, m) for m in methods}
    if stats is not None:  # go-grpc-prometheus's counters (etcdpy.api.grpc_metrics)
        for m in methods:
            kind = rpc_type(m.client_streaming, m.server_streaming)
            method_stats = stats.method(found.full_name, m.name, kind)
            handlers[m.name] = instrument(handlers[m.name], method_stats, stats)
    return {found.path(name): handler for name, handler in handlers.items()}


class _NotYet:
    """A service none of whose RPCs is built yet."""


def build_method_handlers(
    server: EtcdServer, counted: bool = True
) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """Every method of the six v3 services and of Lock and Election, as both the gRPC server
    and the core link run them (``counted=False``: without the gRPC counters, for calls a
    front-end counted already)."""
    recipes = Recipes(LocalClient(server))  # etcd's v3lock and v3election, on its own client
    services: dict[str, object] = {
        "KV": KVService(server),
        "Maintenance": MaintenanceService(server),
        "Cluster": ClusterService(server),
        "Watch": WatchService.for_server(server),
        "Lease": LeaseService(server),
        "Auth": _NotYet(),
        "Lock": LockService(recipes),
        "Election": ElectionService(recipes),
    }
    services = guard_services(services, server)  # ops: --quota-backend-bytes (api/quota.py)
    services = guard_learner_services(services, server)  # what a learner refuses
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for name, impl in services.items():
        handlers.update(service_handlers(name, impl, server.metrics.grpc if counted else None))
    return handlers


def build_grpc_server(
    server: EtcdServer, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] | None = None
) -> grpc.aio.Server:
    grpc_server = grpc.aio.server(options=grpc_server_options(server.config))
    grpc_server.add_generic_rpc_handlers(
        generic_handlers(handlers if handlers is not None else build_method_handlers(server))
    )
    return grpc_server
