"""What a learner refuses, in one layer of the pipeline (etcd's v3rpc interceptors).

A learner member serves only Maintenance.Status and serializable KV.Range; every other unary
RPC and every stream (Watch, LeaseKeepAlive, Snapshot) is answered with UNAVAILABLE
"etcdserver: rpc not supported for learner", before the request reaches the service.

The check is one attribute read of ``is_learner`` (kept up to date by the membership code), so
a voter pays a plain function call per unary request and nothing more. The learner state is
read per call, not when the handlers are built: a learner that is promoted serves everything
from its next request on.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, cast

from etcdpy import errors
from etcdpy.api.pipeline import Interceptor, Method, Unary
from etcdpy.call import CallContext, Handler


class Member(Protocol):
    """What the guard reads per request: the core's EtcdServer, or a front-end's replica."""

    @property
    def is_learner(self) -> bool: ...


# Unary RPCs a learner answers; None: always, else a test on the request.
ALLOWED_ON_LEARNER: dict[tuple[str, str], Callable[[Any], bool] | None] = {
    ("Maintenance", "Status"): None,
    ("KV", "Range"): lambda request: bool(request.serializable),
}


class LearnerGuard(Interceptor):
    def __init__(self, member: Member) -> None:
        self._member = member

    def unary(self, method: Method, call: Unary) -> Unary:
        if not method.implemented:
            return call  # answered UNIMPLEMENTED, learner or not
        key = method.key
        if key not in ALLOWED_ON_LEARNER:
            return _unary_refused(call, self._member)
        allowed = ALLOWED_ON_LEARNER[key]
        return call if allowed is None else _unary_unless(call, allowed, self._member)

    def stream(self, method: Method, handler: Handler) -> Handler:
        """Each new stream is checked once, when it opens."""
        if not method.implemented:
            return handler
        for field in ("unary_stream", "stream_unary", "stream_stream"):
            behavior = getattr(handler, field)
            if behavior is not None:
                guarded: Handler = cast(Any, handler)._replace(
                    **{field: _stream_refused(behavior, self._member)}
                )  # a grpc handler is a namedtuple
                return guarded
        return handler


async def _refuse() -> Any:
    raise errors.NotSupportedForLearner()


def _unary_refused(inner: Unary, member: Member) -> Unary:
    # A plain function handing back the inner coroutine: no extra frame per request.
    def call(request: Any, context: CallContext) -> Awaitable[Any]:
        if member.is_learner:
            return _refuse()
        return inner(request, context)

    return call


def _unary_unless(inner: Unary, allowed: Callable[[Any], bool], member: Member) -> Unary:
    def call(request: Any, context: CallContext) -> Awaitable[Any]:
        if member.is_learner and not allowed(request):
            return _refuse()
        return inner(request, context)

    return call


async def _abort(context: CallContext) -> None:
    # A stream maps its own errors (it has no errors layer around it).
    code, message = errors.to_grpc_status(errors.NotSupportedForLearner())
    await context.abort(code, message)


def _stream_refused(behavior: Callable[..., Any], member: Member) -> Callable[..., Any]:
    # grpc.aio runs a handler that is neither a coroutine function nor an async generator
    # function in a thread: keep the kind of the wrapped behavior.
    if inspect.isasyncgenfunction(behavior):

        async def responses(request: Any, context: CallContext) -> AsyncIterator[Any]:
            if member.is_learner:
                await _abort(context)
            async for response in behavior(request, context):
                yield response

        return responses

    async def call(request: Any, context: CallContext) -> Any:
        if member.is_learner:
            await _abort(context)
        return await behavior(request, context)

    return call
