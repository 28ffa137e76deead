"""The one place where domain errors become gRPC statuses (etcd's togRPCError)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from etcdpy import errors

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Ctx = grpc.aio.ServicerContext[Any, Any]
Handler = Callable[[Any, Req, Ctx], Awaitable[Resp]]


def grpc_errors(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Wraps a unary handler: an EtcdError aborts the call with etcd's code and message."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Req, context: Ctx) -> Resp:
        try:
            return await handler(self, request, context)
        except errors.EtcdError as exc:
            code, message = errors.to_grpc_status(exc)
            await context.abort(code, message)
            raise AssertionError("unreachable") from None  # abort always raises

    return wrapper


def unimplemented(service: str, method: str) -> Callable[..., Awaitable[Any]]:
    """A handler for an RPC that etcdpy does not serve yet: etcd's Unimplemented code."""

    async def handler(self: Any, request: Any, context: Ctx) -> Any:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"etcdpy: {service}.{method} is not implemented yet",
        )

    handler.__name__ = method
    return handler


def fill_unimplemented(servicer_cls: type, service: str) -> type:
    """Every RPC of the service that the class does not define answers UNIMPLEMENTED."""
    from etcdpy.pb.etcdserverpb import rpc_pb2

    descriptor = rpc_pb2.DESCRIPTOR.services_by_name[service]
    for method in descriptor.methods:
        if method.name not in servicer_cls.__dict__:
            setattr(servicer_cls, method.name, unimplemented(service, method.name))
    return servicer_cls
