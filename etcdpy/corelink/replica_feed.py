"""The core's side of the change feed: collects the store's changes and, once they are
committed, sends one feed record to every front-end that subscribed (etcdpy.corelink.feed).

The record leaves before the responses of the requests it applied: EtcdServer.apply flushes the
feed after the commit and before it resolves the waiting requests, and both go through the same
ordered core link. Changes made outside an apply (a defragmentation swapping the file) are
flushed at the next turn of the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from etcdpy.corelink.feed import FeedBuilder
from etcdpy.pb.mvccpb.kv_pb2 import Event

# (revision, raft term, cluster id, member id, is learner) at the time of the flush
HeaderSource = Callable[[], tuple[int, int, int, int, bool]]


class FeedSubscriber(Protocol):
    def send_feed(self, record: bytes) -> None: ...


class ReplicaFeed:
    """A KVStore ChangeSink; costs nothing while no front-end subscribes."""

    def __init__(self, header: HeaderSource) -> None:
        self._header = header
        self._builder = FeedBuilder()
        self._scheduled = False
        self.subscribers: set[FeedSubscriber] = set()
        self._last_header: tuple[int, int, int, int, bool] | None = None

    def on_events(self, events: list[Event]) -> None:
        if self.subscribers:
            self._builder.add_events(events)
            self._schedule()

    def on_compaction(self, rev: int) -> None:
        if self.subscribers:
            self._builder.add_compaction(rev)
            self._schedule()

    def on_replaced(self) -> None:
        if self.subscribers:
            self._builder.mark_replaced()
            self._schedule()

    def on_auth_changed(self) -> None:
        """An applied auth request changed users, roles or the enabled flag (AuthStore's
        on_change, called inside the apply batch: the flag goes out with its commit)."""
        if self.subscribers:
            self._builder.mark_auth_changed()
            self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def current_header(self) -> bytes:
        """A feed record without changes: where the store stands (a subscriber's first)."""
        self._last_header = header = self._header()
        return FeedBuilder().take(*header)

    def flush(self) -> None:
        """Send what has been committed (call it after the commit)."""
        self._scheduled = False
        if not self.subscribers:
            return
        header = self._header()
        # A new term or learner state goes out even without changes (front-ends answer with it).
        if not self._builder and header[1:] == (self._last_header or header)[1:]:
            return
        self._last_header = header
        record = self._builder.take(*header)
        for subscriber in self.subscribers:
            subscriber.send_feed(record)
