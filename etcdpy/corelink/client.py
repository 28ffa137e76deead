"""A front-end's end of the core link: ``call`` sends one request record and waits for its
response record. Records written in one turn of the event loop leave in one write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from etcdpy.corelink.wire import HELLO, RESPONSE_HEADER, RecordReader, encode_request

CALL_ID_LIMIT = 2**32


class CoreLinkLost(ConnectionError):
    """The core process is gone (or closed the link)."""


class CoreLinkClient(asyncio.Protocol):
    def __init__(self, on_lost: Callable[[], None]) -> None:
        self._on_lost = on_lost
        self._reader = RecordReader(RESPONSE_HEADER)
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self._next_id = 1
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def connect(cls, path: str, on_lost: Callable[[], None]) -> CoreLinkClient:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_unix_connection(lambda: cls(on_lost), path)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(CoreLinkLost("the core process closed the link"))
        self._on_lost()

    def data_received(self, data: bytes) -> None:
        pending = self._pending
        for call_id, code, payload in self._reader.feed(data):
            future = pending.pop(call_id, None)
            if future is not None and not future.done():
                future.set_result((code, payload))

    def call(self, method: int, payload: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Sends a call; the future gets (gRPC status code, response bytes or error text)."""
        future: asyncio.Future[tuple[int, bytes]] = self._loop.create_future()
        if self._transport is None:
            future.set_exception(CoreLinkLost("no link to the core process"))
            return future
        call_id = self._next_id
        self._next_id = call_id + 1 if call_id + 1 < CALL_ID_LIMIT else 1
        self._pending[call_id] = future
        self._send(encode_request(call_id, method, payload))
        return future

    def hello(self, text: str) -> None:
        self._send(encode_request(0, HELLO, text.encode()))

    def _send(self, record: bytes) -> None:
        self._out.append(record)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        if self._transport is not None and out:
            self._transport.write(b"".join(out))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
