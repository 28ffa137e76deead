"""What a learner refuses, in one place at the API edge (etcd's v3rpc interceptors).

A learner member serves only Maintenance.Status and serializable KV.Range; every other unary
RPC and every stream (Watch, LeaseKeepAlive, Snapshot) is answered with UNAVAILABLE
"etcdserver: rpc not supported for learner", before the request reaches the service.

The check is one attribute read of ``EtcdServer.is_learner`` (kept up to date by the membership
code), so a voter pays a plain function call per unary request and nothing more. The learner
state is read per call, not when the server is built: a learner that is promoted serves
everything from its next request on.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from etcdpy import errors
from etcdpy.api.services import SERVICES
from etcdpy.api.status import Ctx


class Member(Protocol):
    """What the guard reads per request: the core's EtcdServer, or a front-end's replica."""

    @property
    def is_learner(self) -> bool: ...


Unary = Callable[[Any, Ctx], Awaitable[Any]]

# Unary RPCs a learner answers; None: always, else a test on the request.
ALLOWED_ON_LEARNER: dict[tuple[str, str], Callable[[Any], bool] | None] = {
    ("Maintenance", "Status"): None,
    ("KV", "Range"): lambda request: bool(request.serializable),
}


def guard_learner_services(services: dict[str, object], server: Member) -> dict[str, object]:
    """Wraps, in place, every RPC of ``services`` that a learner must refuse."""
    for name, impl in services.items():
        service = SERVICES.get(name)
        if service is None:
            continue
        descriptor = service.descriptor
        streams = False
        for method in descriptor.methods:
            if method.client_streaming or method.server_streaming:
                streams = True
                continue
            inner = getattr(impl, method.name, None)
            if inner is None:
                continue  # answered UNIMPLEMENTED, learner or not
            key = (name, method.name)
            if key in ALLOWED_ON_LEARNER:
                allowed = ALLOWED_ON_LEARNER[key]
                if allowed is not None:
                    setattr(impl, method.name, _unary_unless(inner, allowed, server))
            else:
                setattr(impl, method.name, _unary_refused(inner, server))
        factory = getattr(impl, "stream_handler", None)
        if streams and factory is not None:
            setattr(impl, "stream_handler", _stream_factory(factory, server))  # noqa: B010
    return services


async def _refuse() -> Any:
    raise errors.NotSupportedForLearner()


def _unary_refused(inner: Unary, server: Member) -> Unary:
    # A plain function handing back the inner coroutine: no extra frame per request.
    def call(request: Any, context: Ctx) -> Awaitable[Any]:
        if server.is_learner:
            return _refuse()
        return inner(request, context)

    return call


def _unary_unless(inner: Unary, allowed: Callable[[Any], bool], server: Member) -> Unary:
    def call(request: Any, context: Ctx) -> Awaitable[Any]:
        if server.is_learner and not allowed(request):
            return _refuse()
        return inner(request, context)

    return call


async def _abort(context: Ctx) -> None:
    code, message = errors.to_grpc_status(errors.NotSupportedForLearner())
    await context.abort(code, message)


def _stream_factory(factory: Callable[..., Any], server: Member) -> Callable[..., Any]:
    """Wraps the handler a streaming service builds, so each new stream is checked once."""

    def build(*args: Any) -> Any:
        handler = factory(*args)
        fields = ("unary_stream", "stream_unary", "stream_stream")
        for field in fields:
            behavior = getattr(handler, field)
            if behavior is not None:
                return handler._replace(**{field: _stream_refused(behavior, server)})
        return handler

    return build


def _stream_refused(behavior: Callable[..., Any], server: Member) -> Callable[..., Any]:
    # grpc.aio runs a handler that is neither a coroutine function nor an async generator
    # function in a thread: keep the kind of the wrapped behavior.
    if inspect.isasyncgenfunction(behavior):

        async def responses(request: Any, context: Ctx) -> AsyncIterator[Any]:
            if server.is_learner:
                await _abort(context)
            async for response in behavior(request, context):
                yield response

        return responses

    async def call(request: Any, context: Ctx) -> Any:
        if server.is_learner:
            await _abort(context)
        return await behavior(request, context)

    return call
