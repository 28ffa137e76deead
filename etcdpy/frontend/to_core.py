"""A call handed to the core as it is: a unary call crosses the core link as one record each
way; a stream is tunnelled over it: client messages go across as they arrive, the core's
messages come back and are written to the client, and each one written earns the core credit
for one more (etcdpy.corelink.wire)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from etcdpy.call import CallContext
from etcdpy.corelink.client import CoreLinkClient, CoreLinkLost, LinkStream, caller_identity
from etcdpy.corelink.errors import CORE_UNREACHABLE, status_code
from etcdpy.corelink.wire import STREAM_MESSAGE


async def _abort(context: CallContext, code: int, details: bytes) -> None:
    await context.abort(status_code(code), details.decode())


def unary_to_core(link: CoreLinkClient, number: int) -> Any:
    """A unary call's handler (bytes in, bytes out) that has the core answer it."""
    call = link.call

    async def handle(request: bytes, context: CallContext) -> bytes:
        reply = call(number, request, caller_identity(context))
        try:
            code, payload = await reply
        except CoreLinkLost:
            await context.abort(grpc.StatusCode.UNAVAILABLE, CORE_UNREACHABLE)
        except asyncio.CancelledError:  # the client went away: so does the core's call
            link.cancel_call(reply)
            raise
        if code == 0:
            return payload
        await _abort(context, code, payload)
        raise AssertionError("unreachable")  # abort raises

    return handle


async def _pump(requests: AsyncIterator[bytes], stream: LinkStream) -> None:
    """The client's messages to the core, then the client's half-close."""
    async for message in requests:
        if stream.ended:
            return
        stream.send(message)
    if not stream.ended:
        stream.half_close()


async def _responses(stream: LinkStream, context: CallContext) -> AsyncIterator[bytes]:
    """The core's messages until its final status (an error status aborts the call)."""
    incoming = stream.incoming
    while True:
        kind, payload = await incoming.get()
        if kind != STREAM_MESSAGE:
            if kind:
                await _abort(context, kind, payload)
            return
        yield payload
        stream.grant(1)


def tunnelled(link: CoreLinkClient, number: int, client_streaming: bool) -> Any:
    """A stream's handler (an async generator of the core's messages) tunnelled to the core."""

    async def handle(request: Any, context: CallContext) -> AsyncIterator[bytes]:
        try:
            stream = link.open_stream(
                number, b"" if client_streaming else request, caller_identity(context)
            )
        except CoreLinkLost:
            await context.abort(grpc.StatusCode.UNAVAILABLE, CORE_UNREACHABLE)
        pump = (
            asyncio.get_running_loop().create_task(_pump(request, stream))
            if client_streaming
            else None
        )
        try:
            async for message in _responses(stream, context):
                yield message
        finally:
            stream.cancel()  # nothing when the core ended it; else the client went away
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(BaseException):
                    await pump

    return handle
