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
