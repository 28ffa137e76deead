"""Futures keyed by request id: a proposer waits, the apply loop resolves."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any


class Wait:
    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: dict[int, asyncio.Future[Any]] = {}

    def register(self, request_id: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = future
        return future

    def cancel(self, request_id: int) -> None:
        self._waiters.pop(request_id, None)

    def resolve(self, request_id: int, result: Any) -> None:
        future = self._waiters.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(result)

    def fail_all(self, exc: BaseException) -> None:
        waiters, self._waiters = self._waiters, {}
        for future in waiters.values():
            if not future.done():
                future.set_exception(exc)

    def __len__(self) -> int:
        return len(self._waiters)


class AppliedIndexWaiters:
    """Futures waiting for the applied index to reach a value (linearizable reads)."""

    __slots__ = ("_applied", "_pending")

    def __init__(self, applied: int) -> None:
        self._applied = applied
        self._pending: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def applied(self) -> int:
        return self._applied

    def wait(self, index: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if index <= self._applied:
            future.set_result(None)
        else:
            self._pending.append((index, future))
        return future

    def advance(self, applied: int) -> None:
        self._applied = applied
        if not self._pending:
            return
        still = []
        for index, future in self._pending:
            if index <= applied:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((index, future))
        self._pending = still

    def fail_all(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, []
        for _, future in pending:
            if not future.done():
                future.set_exception(exc)


class Deadlines:
    """Request deadlines, swept periodically instead of one timer per request.

    Every request of a kind has the same timeout, so deadlines arrive in order and a deque
    stays sorted: adding and expiring are O(1), and the hot path creates no timer handle.
    """

    __slots__ = ("_queue",)

    def __init__(self) -> None:
        self._queue: deque[tuple[float, asyncio.Future[Any], Callable[[], None] | None]] = deque()

    def add(
        self,
        deadline: float,
        future: asyncio.Future[Any],
        on_expire: Callable[[], None] | None = None,
    ) -> None:
        self._queue.append((deadline, future, on_expire))

    def sweep(self, now: float, make_error: Callable[[], BaseException]) -> None:
        queue = self._queue
        while queue and (queue[0][1].done() or queue[0][0] <= now):
            _, future, on_expire = queue.popleft()
            if future.done():
                continue
            future.set_exception(make_error())
            if on_expire is not None:
                on_expire()
