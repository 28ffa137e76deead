"""Futures and deadlines of the server core, and the batching of ReadIndex rounds."""

from __future__ import annotations

import asyncio

import pytest

from etcdpy.raft.types import ReadState
from etcdpy.server.read_index import LinearizableReads
from etcdpy.server.wait import AppliedIndexWaiters, Deadlines, Wait


def test_deadlines_expire_in_order_and_clean_up() -> None:
    async def scenario() -> None:
        wait, deadlines = Wait(), Deadlines()
        early, late = wait.register(1), wait.register(2)
        deadlines.add(10.0, early, lambda: wait.cancel(1))
        deadlines.add(20.0, late, lambda: wait.cancel(2))
        deadlines.sweep(9.9, TimeoutError)
        assert not early.done() and not late.done()
        deadlines.sweep(10.0, TimeoutError)
        assert isinstance(early.exception(), TimeoutError)
        assert not late.done() and len(wait) == 1  # the expired waiter is gone
        wait.resolve(2, "applied")  # resolved before its deadline: never failed
        deadlines.sweep(99.0, TimeoutError)
        assert late.result() == "applied"

    asyncio.run(scenario())


def test_applied_index_waiters_release_in_any_order() -> None:
    async def scenario() -> None:
        applied = AppliedIndexWaiters(5)
        now, later, much_later = applied.wait(5), applied.wait(7), applied.wait(9)
        assert now.done()
        applied.advance(8)
        assert later.done() and not much_later.done()
        applied.advance(9)
        assert much_later.done()

    asyncio.run(scenario())


def test_concurrent_reads_share_one_read_index_round() -> None:
    """Raft thesis §6.4: reads waiting together are served by one ReadIndex round."""

    async def scenario() -> None:
        asked: list[bytes] = []
        applied = AppliedIndexWaiters(10)
        reads = LinearizableReads(asked.append, applied)
        first = reads.wait()
        queued = [reads.wait() for _ in range(50)]  # arrive while round 1 is in flight
        assert len(asked) == 1
        reads.on_read_states([ReadState(index=10, request_ctx=asked[0])])
        await asyncio.sleep(0)
        assert first.done() and not any(f.done() for f in queued)
        assert len(asked) == 2  # all 50 went into the second round together
        reads.on_read_states([ReadState(index=12, request_ctx=asked[1])])
        await asyncio.sleep(0)
        assert not any(f.done() for f in queued)  # not before applied reaches the read index
        applied.advance(12)
        await asyncio.sleep(0)
        assert all(f.done() for f in queued)
        assert len(asked) == 2

    asyncio.run(scenario())


def test_a_stale_read_state_does_not_release_a_newer_round() -> None:
    async def scenario() -> None:
        asked: list[bytes] = []
        reads = LinearizableReads(asked.append, AppliedIndexWaiters(0))
        future = reads.wait()
        reads.on_read_states([ReadState(index=3, request_ctx=b"not-ours")])
        await asyncio.sleep(0)
        assert not future.done()
        reads.fail_all(RuntimeError("stopped"))
        with pytest.raises(RuntimeError):
            await future

    asyncio.run(scenario())
