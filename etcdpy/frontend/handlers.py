"""A front-end's gRPC method handlers: bytes in, bytes out, the work done by the core."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from etcdpy.corelink.client import CoreLinkClient, CoreLinkLost
from etcdpy.corelink.wire import KEEP_ALIVE_MESSAGE, METHOD_NUMBER, PACKAGE
from etcdpy.pb.etcdserverpb import rpc_pb2

Handlers = dict[str, "grpc.RpcMethodHandler[Any, Any]"]
Ctx = grpc.aio.ServicerContext[Any, Any]

_STATUS = {code.value[0]: code for code in grpc.StatusCode}
CORE_UNREACHABLE = "etcdpy: the core process is not reachable"
# Metadata the gRPC library sets itself; everything else (hasleader, token, ...) is forwarded.
_NOT_FORWARDED = ("user-agent",)


def _forwarded_metadata(context: Ctx) -> tuple[tuple[str, str | bytes], ...]:
    return tuple(
        (key, value)
        for key, value in (context.invocation_metadata() or ())
        if not key.startswith((":", "grpc-")) and key not in _NOT_FORWARDED
    )


def _unary(link: CoreLinkClient, number: int) -> Any:
    call = link.call

    async def handle(request: bytes, context: Ctx) -> bytes:
        try:
            code, payload = await call(number, request)
        except CoreLinkLost:
            await context.abort(grpc.StatusCode.UNAVAILABLE, CORE_UNREACHABLE)
        if code == 0:
            return payload
        await context.abort(_STATUS.get(code, grpc.StatusCode.UNKNOWN), payload.decode())
        raise AssertionError("unreachable")  # abort raises

    return handle


def _stream_stream(channel: grpc.aio.Channel, path: str) -> Any:
    open_call = channel.stream_stream(path, None, None)

    async def handle(requests: AsyncIterator[bytes], context: Ctx) -> AsyncIterator[bytes]:
        call = open_call(
            requests, metadata=_forwarded_metadata(context), timeout=context.time_remaining()
        )
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
        finally:
            call.cancel()

    return handle


def _unary_stream(channel: grpc.aio.Channel, path: str) -> Any:
    open_call = channel.unary_stream(path, None, None)

    async def handle(request: bytes, context: Ctx) -> AsyncIterator[bytes]:
        call = open_call(
            request, metadata=_forwarded_metadata(context), timeout=context.time_remaining()
        )
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
        finally:
            call.cancel()

    return handle


def _keep_alive(link: CoreLinkClient) -> Any:
    """LeaseKeepAlive ends here: each message crosses the link as a call of its own."""
    call = link.call
    number = METHOD_NUMBER[KEEP_ALIVE_MESSAGE]

    async def handle(requests: AsyncIterator[bytes], context: Ctx) -> AsyncIterator[bytes]:
        async for data in requests:
            try:
                code, payload = await call(number, data)
            except CoreLinkLost:
                await context.abort(grpc.StatusCode.UNAVAILABLE, CORE_UNREACHABLE)
            if code:
                await context.abort(_STATUS.get(code, grpc.StatusCode.UNKNOWN), payload.decode())
            yield payload

    return handle


def build_handlers(link: CoreLinkClient, core_channel: grpc.aio.Channel) -> Handlers:
    """Every method of the v3 services: unary ones and keep-alives over the link, the other
    streams relayed as gRPC streams."""
    handlers: Handlers = {}
    for service in rpc_pb2.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            path = f"/{PACKAGE}.{service.name}/{method.name}"
            if f"{path}:message" == KEEP_ALIVE_MESSAGE:
                handlers[path] = grpc.stream_stream_rpc_method_handler(_keep_alive(link))
            elif method.client_streaming and method.server_streaming:
                handlers[path] = grpc.stream_stream_rpc_method_handler(
                    _stream_stream(core_channel, path)
                )
            elif method.server_streaming:
                handlers[path] = grpc.unary_stream_rpc_method_handler(
                    _unary_stream(core_channel, path)
                )
            elif method.client_streaming:  # etcd's API has none; refuse rather than guess
                continue
            else:
                handlers[path] = grpc.unary_unary_rpc_method_handler(
                    _unary(link, METHOD_NUMBER[path])
                )
    return handlers
