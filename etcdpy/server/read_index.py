"""Linearizable reads by ReadIndex (Raft thesis §6.4), batched.

At most one ReadIndex round is in flight; every read that arrives meanwhile joins the next round,
so N concurrent reads cost one heartbeat round, not N. A round whose answer does not come back
(leader lost, message dropped) is asked again with the same context after a short delay.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence

from etcdpy.raft.types import ReadState
from etcdpy.server.wait import AppliedIndexWaiters

RETRY_SECONDS = 0.5


class LinearizableReads:
    def __init__(
        self,
        request_read_index: Callable[[bytes], None],
        applied: AppliedIndexWaiters,
    ) -> None:
        self._request_read_index = request_read_index
        self._applied = applied
        self._next_batch: list[asyncio.Future[None]] = []
        self._round_ctx: bytes | None = None
        self._round: list[asyncio.Future[None]] = []
        self._counter = 0
        self._retry: asyncio.TimerHandle | None = None

    def wait(self) -> asyncio.Future[None]:
        """A future that completes once this node has applied everything committed now."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._next_batch.append(future)
        if self._round_ctx is None:
            self._start_round()
        return future

    def _start_round(self) -> None:
        self._round = [f for f in self._next_batch if not f.done()]
        self._next_batch = []
        if not self._round:
            self._round_ctx = None
            return
        self._counter += 1
        self._round_ctx = self._counter.to_bytes(8, "big")
        self._ask()

    def _ask(self) -> None:
        assert self._round_ctx is not None
        self._request_read_index(self._round_ctx)
        loop = asyncio.get_running_loop()
        self._retry = loop.call_later(RETRY_SECONDS, self._on_retry, self._round_ctx)

    def _on_retry(self, ctx: bytes) -> None:
        if self._round_ctx != ctx:
            return
        self._round = [f for f in self._round if not f.done()]
        if not self._round:  # everyone gave up (timed out): start afresh if others wait
            self._round_ctx = None
            if self._next_batch:
                self._start_round()
            return
        self._ask()

    def on_read_states(self, read_states: Sequence[ReadState]) -> None:
        for state in read_states:
            if state.request_ctx != self._round_ctx:
                continue  # an answer to a round we already retried and got
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
            round_, self._round = self._round, []
            applied = self._applied.wait(state.index)
            applied.add_done_callback(functools.partial(_resolve, round_))
            self._round_ctx = None
        if self._round_ctx is None and self._next_batch:
            self._start_round()

    def fail_all(self, exc: BaseException) -> None:
        for future in self._round + self._next_batch:
            if not future.done():
                future.set_exception(exc)
        self._round, self._next_batch, self._round_ctx = [], [], None


def _resolve(waiters: list[asyncio.Future[None]], applied: asyncio.Future[None]) -> None:
    exc = applied.exception() if not applied.cancelled() else asyncio.CancelledError()
    for future in waiters:
        if future.done():
            continue
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)
