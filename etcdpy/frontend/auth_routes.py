"""Where a front-end sends the calls it cannot check itself: those carrying a simple token.

A front-end checks its local reads and watches against its auth view (etcdpy.frontend.replica):
a JWT is verified here with the public key, a certificate's CN needs no token, a call without
either is refused here as the core would refuse it. A simple token lives only in the core's
memory (etcd's simple tokens live in the memory of the member that issued them), so with
``--auth-token simple`` a Range or read-only Txn that carries a token, and a Watch stream that
carries one, go to the core over the link with the caller's identity, uncounted (this
front-end's counters have them already), and are checked there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from etcdpy.api.auth_guard import HandOff, token_of
from etcdpy.api.pipeline import Method, Unary
from etcdpy.api.watch import WatchService
from etcdpy.call import CallContext
from etcdpy.corelink.client import CoreLinkClient
from etcdpy.corelink.wire import METHOD_NUMBER, PACKAGE, UNCOUNTED
from etcdpy.frontend.to_core import tunnelled, unary_to_core


def hand_off_to_core(link: CoreLinkClient) -> HandOff:
    """The Auth layer's ``hand_off``: a method's calls, as they are, to the core."""

    def for_method(method: Method) -> Unary:
        forward = unary_to_core(link, UNCOUNTED + METHOD_NUMBER[method.service.path(method.name)])

        async def handed(request: Message, context: CallContext) -> bytes:
            response: bytes = await forward(request.SerializeToString(), context)
            return response

        return handed

    return for_method


class HandingWatchService(WatchService):
    """The front-end's watch service where tokens are simple: a stream that carries a token is
    tunnelled to the core (whatever auth's state when it opens: auth may be enabled later);
    any other stream is served here. Decided once per stream, when it opens."""

    def __init__(self, link: CoreLinkClient, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._link = link

    def stream_handler(
        self, method: MethodDescriptor, request_type: type[Message], serialize: Any
    ) -> grpc.RpcMethodHandler[Any, Any]:
        local: Any = super().stream_handler(method, request_type, serialize).stream_stream
        number = UNCOUNTED + METHOD_NUMBER[f"/{PACKAGE}.Watch/{method.name}"]
        tunnel = tunnelled(self._link, number, client_streaming=True)

        async def route(requests: AsyncIterator[bytes], context: CallContext) -> None:
            if token_of(context.invocation_metadata()) is None:
                await local(requests, context)
                return
            write = context.write
            async for message in tunnel(requests, context):
                await write(message)

        return grpc.stream_stream_rpc_method_handler(route)
