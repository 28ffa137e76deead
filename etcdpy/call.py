"""The contract between a transport and a handler: what a handler may ask of its call
(``CallContext``: etcdpy's own context, not grpc's), and ``invoke``, the one place a built
handler is run and its outcome turned into a gRPC status.

Four transports run handlers, each with a context of its own that satisfies ``CallContext``:
etcdpy.h2grpc (the client port), etcdpy.corelink.core (calls a front-end hands to the core),
etcdpy.clientport.gateway (the JSON gateway, in process) and grpc.aio's ``ServicerContext``
(ETCDPY_CLIENT_FRONT=off). The handlers themselves, with their interceptors, are built in
etcdpy.api.pipeline. This module sits below both sides so that the transports (h2grpc is a
library under api/) and the handlers meet here without importing each other.

May import: nothing of etcdpy.
"""

from __future__ import annotations

import inspect
from typing import Any, NoReturn, Protocol, TypeAlias

import grpc
import structlog

log = structlog.get_logger(__name__)

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # a string: grpc's is no generic at run time

_UNKNOWN = grpc.StatusCode.UNKNOWN.value[0]
_OK = grpc.StatusCode.OK

Metadata = tuple[tuple[str, str | bytes], ...]


class CallAborted(Exception):
    """Raised by ``abort`` of etcdpy's contexts, as grpc.aio raises its AbortError: the call
    ends with the status the context holds."""


class CallContext(Protocol):
    def peer(self) -> str:
        """Who called: ``ipv4:127.0.0.1:5555``, ``unix:core-link``, ..."""
        ...

    def time_remaining(self) -> float | None:
        """Seconds left before the caller's deadline; None: no deadline."""
        ...

    def invocation_metadata(self) -> Any:
        """The caller's metadata, as (name, value) pairs."""
        ...

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        """Ends the call with ``code`` and ``details``; always raises."""
        ...

    async def write(self, message: Any) -> None:
        """One message of a streaming response."""
        ...

    def code(self) -> Any:
        """The status ``abort`` set (a grpc.StatusCode), or None."""
        ...

    def details(self) -> Any:
        """The message ``abort`` set."""
        ...

    def client_cert_cn(self) -> str | None:
        """The common name of the client's verified TLS certificate (etcd's AuthInfoFromTLS:
        the user name under ``--client-cert-auth`` when auth is on); None: no certificate,
        or a call that came through the JSON gateway (etcd's fix for CVE-2018-16886)."""
        ...


async def invoke(
    handler: Handler, request: Any, context: CallContext, path: str | bytes = ""
) -> tuple[int, str, Any]:
    """Runs one call of a built handler: its status code (a number), message, and the unary
    response's bytes (None for a stream, whose messages went to ``context.write``).

    ``request`` is the request's bytes, or for a streaming request the iterator of its
    messages. An abort is the call's status; an exception a handler lets out is grpc-go's
    Unknown. Cancellation (the client went away) is the caller's to answer: it propagates."""
    try:
        if not handler.request_streaming:
            deserialize = handler.request_deserializer
            if deserialize is not None:
                request = deserialize(request)
        behavior: Any = (
            handler.unary_unary
            or handler.unary_stream
            or handler.stream_unary
            or handler.stream_stream
        )
        result = behavior(request, context)  # grpc.aio's handler signature
        if handler.response_streaming and inspect.isasyncgen(result):
            write = context.write
            async for message in result:
                await write(message)
            response = None
        else:
            response = await result
        code = context.code()
        if code is not None and code is not _OK:
            return code.value[0], context.details(), None
        if response is not None and not handler.response_streaming:
            serializer = handler.response_serializer
            if serializer is not None:
                response = serializer(response)
        return 0, "", response
    except CallAborted:
        code = context.code()
        return (_UNKNOWN if code is None else code.value[0]), context.details(), None
    except Exception as exc:  # what grpc-go answers for an error a handler lets out
        name = path.decode(errors="replace") if isinstance(path, bytes) else path
        log.exception("gRPC handler failed", method=name)
        return _UNKNOWN, f"Unexpected {type(exc)}: {exc}", None
