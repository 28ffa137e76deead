"""What is written during one turn of the event loop leaves in one ``write``: the core link's
records (both ends) and an HTTP/2 connection's frames (etcdpy.h2grpc)."""

from __future__ import annotations

import asyncio


class Outbox:
    __slots__ = ("_loop", "_pending", "_scheduled", "transport")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False
        self.transport: asyncio.Transport | None = None

    def add(self, record: bytes) -> None:
        self._pending.append(record)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Writes what is pending now (also what the scheduled flush does); nothing goes out
        once ``transport`` is None."""
        self._scheduled = False
        pending, self._pending = self._pending, []
        if self.transport is not None and pending:
            self.transport.write(b"".join(pending))
