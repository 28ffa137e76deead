"""Drives the watchable store's catch-up work from an asyncio task.

etcd runs two loops: unsynced watchers every 100 ms (while it makes progress, again after a
pause as long as the last round took) and parked victims every 10 ms. Here one task does
both, and sleeps on an event that the store sets (``wake``) when a watcher needs history, a
watcher is parked, or a full stream drained, so a watcher created at an old revision gets
its history without waiting a period.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from etcdpy.mvcc.watchable_store import WatchableStore

log = structlog.get_logger(__name__)

VICTIM_RETRY_SECONDS = 0.01
UNSYNCED_RETRY_SECONDS = 0.1


class WatchSync:
    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        if self._event is not None:
            self._event.set()

    def start(self, store: WatchableStore) -> None:
        self._event = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(store), name="watch-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, store: WatchableStore) -> None:
        event = self._event
        assert event is not None
        clock = asyncio.get_running_loop().time
        while True:
            event.clear()
            began = clock()
            try:
                moved = store.move_victims()
                sent_before = store.history_responses
                store.sync_watchers()
                progressed = moved or store.history_responses != sent_before
            except Exception:  # a broken store is the apply loop's to report
                log.exception("watch sync failed")
                await asyncio.sleep(UNSYNCED_RETRY_SECONDS)
                continue
            if not store.has_pending_work:
                await event.wait()
            elif progressed:
                # Go on after a pause as long as this round took (as etcd's loop does): the
                # catch-up gets at most half of the process while the writers get the rest.
                await asyncio.sleep(clock() - began)
            else:
                delay = VICTIM_RETRY_SECONDS if store.victims else UNSYNCED_RETRY_SECONDS
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), delay)
