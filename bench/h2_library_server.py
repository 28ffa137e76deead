"""The null KV over the h2 library's HTTP/2 state machine (only as much of gRPC as the
benchmark's unary calls need): the library made for the job, measured against etcdpy.h2grpc
and grpc.aio by bench.h2grpc_cost."""

from __future__ import annotations

import asyncio
import struct
from typing import Any, cast

import grpc
import h2.config
import h2.connection
import h2.events

_RESPONSE_HEADERS = [(":status", "200"), ("content-type", "application/grpc")]
_TRAILERS = [("grpc-status", "0")]


class H2LibraryConnection(asyncio.Protocol):
    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
        self._handlers = {path.encode(): h for path, h in handlers.items()}
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self._conn = h2.connection.H2Connection(config)
        self._bodies: dict[int, tuple[bytes, list[bytes]]] = {}
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._conn.initiate_connection()
        self._conn.increment_flow_control_window(1 << 24)
        self._transport.write(self._conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self._conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                path = dict(event.headers)[b":path"]
                self._bodies[event.stream_id] = (path, [])
            elif isinstance(event, h2.events.DataReceived):
                self._bodies[event.stream_id][1].append(event.data)
                self._conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                path, parts = self._bodies.pop(event.stream_id)
                asyncio.get_running_loop().create_task(
                    self._call(event.stream_id, path, b"".join(parts)[5:])
                )
        self._flush()

    async def _call(self, stream_id: int, path: bytes, body: bytes) -> None:
        handler = self._handlers[path]
        assert handler.request_deserializer and handler.response_serializer
        assert handler.unary_unary is not None
        # The null KV's handlers never look at their context; this server has none to give.
        context = cast(grpc.ServicerContext, None)
        response = await handler.unary_unary(handler.request_deserializer(body), context)
        data = handler.response_serializer(response)
        self._conn.send_headers(stream_id, _RESPONSE_HEADERS)
        self._conn.send_data(stream_id, struct.pack(">BI", 0, len(data)) + data)
        self._conn.send_headers(stream_id, _TRAILERS, end_stream=True)
        self._flush()

    def _flush(self) -> None:
        out = self._conn.data_to_send()
        if out and self._transport is not None:
            self._transport.write(out)
