"""The watchable store: a KVStore whose write transactions feed watchers, never waiting on them.

Every watcher is in exactly one state (etcd's design):

- synced: it has everything up to the current revision; the events of each write
  transaction are pushed to it as the transaction ends, one response per revision.
- unsynced: it needs history (an old start revision, or it was parked); ``sync_watchers``
  reads the backend from the lowest revision they need and sends each up to
  ``batch_max_revs`` revisions in one response, until it reaches the current revision and
  moves to synced. A start revision older than the compaction gets a response with
  ``compact_revision`` set instead, and the watcher is done.
- victim: a push failed because its stream has a backlog (WatchStream.behind). It keeps
  the batch that did not fit and stops receiving. Once the stream drained, ``move_victims``
  sends that batch and makes it synced if nothing happened meanwhile; if more happened, it
  goes to unsynced from the batch's first revision, so the batch and what followed arrive
  together in one catch-up response.

So a writer only ever appends to bounded queues: a slow client costs one parked batch per
watcher, and falling behind past a compaction ends with the compacted response.

This is a pure library: the server calls ``sync_watchers`` and ``move_victims`` from a
periodic task (etcd runs them every 100 ms and 10 ms) and ``wakeup`` (injected) tells it
there is work. Not thread-safe: one thread drives the store, its streams and their senders.
"""

from __future__ import annotations

from collections.abc import Callable

from etcdpy.mvcc.backend import Backend
from etcdpy.mvcc.errors import CompactedError, TxnInProgressError
from etcdpy.mvcc.kvstore import DEFAULT_COMPACTION_BATCH_LIMIT, KVStore, TxnWrite
from etcdpy.mvcc.watcher import (
    DEFAULT_STREAM_CAPACITY,
    DEFAULT_STREAM_MAX_EVENTS,
    INVALID_WATCH_ID,
    EventBatch,
    Watcher,
    WatchResponse,
    WatchStream,
)
from etcdpy.mvcc.watcher_group import WatcherGroup
from etcdpy.pb.mvccpb.kv_pb2 import Event

# etcd's watchBatchMaxRevs: revisions in one catch-up response at most.
WATCH_BATCH_MAX_REVS = 1000
# etcd's maxWatchersPerSync.
MAX_WATCHERS_PER_SYNC = 512
# Events read from the backend in one sync step at most (etcd reads all); cut at a revision.
SYNC_READ_LIMIT = 10000

_PUT = Event.PUT


class WatchableStore(KVStore):
    def __init__(
        self,
        backend: Backend,
        compaction_batch_limit: int = DEFAULT_COMPACTION_BATCH_LIMIT,
        wakeup: Callable[[], None] | None = None,
        stream_capacity: int = DEFAULT_STREAM_CAPACITY,
        stream_max_events: int = DEFAULT_STREAM_MAX_EVENTS,
        batch_max_revs: int = WATCH_BATCH_MAX_REVS,
        sync_read_limit: int = SYNC_READ_LIMIT,
    ) -> None:
        super().__init__(backend, compaction_batch_limit)
        self.wakeup = wakeup
        self.stream_capacity = stream_capacity
        self.stream_max_events = stream_max_events
        self.batch_max_revs = batch_max_revs
        self.sync_read_limit = sync_read_limit
        self.synced = WatcherGroup()
        self.unsynced = WatcherGroup()
        self.victims: dict[Watcher, EventBatch] = {}
        self._progress_waiting: dict[WatchStream, None] = {}
        self.history_responses = 0  # responses sync_watchers sent (a progress measure)

    def replace_backend(self, backend: Backend) -> None:
        """A snapshot from the leader: every watcher catches up from the new state, from the
        revision it has reached (etcd's watchableStore.Restore moves all to unsynced)."""
        reached = self.current_revision  # synced watchers have had everything up to here
        super().replace_backend(backend)
        for w in list(self.synced):
            self.synced.delete(w)
            w.min_rev = max(w.min_rev, reached + 1)
            w.state = "unsynced"
            self.unsynced.add(w)
        self.wake()

    # -- streams and watchers ------------------------------------------------------------

    def new_stream(self, on_ready: Callable[[], None] | None = None) -> WatchStream:
        return WatchStream(self, on_ready, self.stream_capacity, self.stream_max_events)

    def add_watcher(self, w: Watcher) -> None:
        if w.min_rev > self.current_revision:
            w.state = "synced"
            self.synced.add(w)
        else:
            w.state = "unsynced"
            self.unsynced.add(w)
            self.wake()

    def remove_watcher(self, w: Watcher) -> None:
        if not (self.synced.delete(w) or self.unsynced.delete(w)):
            self.victims.pop(w, None)
        w.state = "canceled"

    def want_progress(self, stream: WatchStream) -> None:
        self._progress_waiting[stream] = None
        self.wake()

    def forget_stream(self, stream: WatchStream) -> None:
        self._progress_waiting.pop(stream, None)

    def wake(self) -> None:
        if self.wakeup is not None:
            self.wakeup()

    @property
    def has_pending_work(self) -> bool:
        """Watchers behind, parked, or a progress request waiting for them."""
        return bool(self.unsynced.watchers or self.victims or self._progress_waiting)

    # -- writes --------------------------------------------------------------------------

    def write(self, consistent_index: int | None = None) -> TxnWrite:
        self._check_usable()
        if self._txn is not None:
            raise TxnInProgressError("a write transaction is already open")
        txn = _NotifyingTxnWrite(self, consistent_index)
        self._txn = txn
        return txn

    def notify(self, rev: int, events: list[Event]) -> None:
        """Push the events of revision ``rev`` to the synced watchers; park who is full."""
        synced = self.synced
        if not synced.watchers:
            return
        parked: list[tuple[Watcher, EventBatch]] = []
        for members, batch in synced.batches(events):
            for w in members:
                if rev >= w.min_rev and not w.send(batch, rev):
                    parked.append((w, batch))
        for w, batch in parked:
            w.min_rev = rev + 1
            synced.delete(w)
            self._park(w, batch)

    def _park(self, w: Watcher, batch: EventBatch) -> None:
        w.state = "victim"
        self.victims[w] = batch
        self.wake()

    # -- catching up (driven by the server) ----------------------------------------------

    def move_victims(self) -> int:
        """Retry the parked batches; returns how many went out."""
        if not self.victims:
            self._answer_progress()
            return 0
        cur = self.current_revision
        moved: list[Watcher] = []
        for w, batch in self.victims.items():
            stream = w.stream
            if stream.behind():
                stream.starved = True
            elif w.min_rev <= cur and batch.events:
                # More happened since it was parked: the catch-up from history will carry
                # the parked batch too, in the same response as what followed it.
                w.min_rev = batch.events[0].kv.mod_revision
                moved.append(w)
            elif w.send(batch, w.min_rev - 1):
                moved.append(w)
        for w in moved:
            del self.victims[w]
            if w.min_rev <= cur:
                w.state = "unsynced"
                self.unsynced.add(w)
            else:
                w.state = "synced"
                self.synced.add(w)
        self._answer_progress()
        return len(moved)

    def sync_watchers(self, max_watchers: int = MAX_WATCHERS_PER_SYNC) -> int:
        """Send history to up to ``max_watchers`` unsynced watchers; returns how many remain."""
        unsynced = self.unsynced
        if not unsynced.watchers:
            self._answer_progress()
            return 0
        cur = self.current_revision
        compact = self.compact_revision
        chosen: list[Watcher] = []
        for w in list(unsynced.watchers):
            if len(chosen) >= max_watchers:
                break
            if w.stream.behind():
                w.stream.starved = True  # read its history once its sender has caught up
                continue
            if w.min_rev < compact:
                # Its history is gone: the compacted response ends it (retried while full).
                if w.stream.has_room():
                    w.stream.push(WatchResponse(w.id, 0, compact_revision=compact))
                    self.history_responses += 1
                    unsynced.delete(w)
                    w.state = "compacted"
                    w.compacted = True
                else:
                    w.stream.starved = True
                continue
            chosen.append(w)
        if not chosen:
            self._answer_progress()
            return len(unsynced)
        min_rev = min(w.min_rev for w in chosen)
        events = self.events_since(min_rev, cur + 1, limit=self.sync_read_limit)
        covered = cur
        if len(events) >= self.sync_read_limit:
            covered = events[-1].kv.mod_revision  # the read stopped after this revision
        groups: dict[tuple[bytes, bytes | None, int], list[Watcher]] = {}
        for w in chosen:
            groups.setdefault((w.key, w.end, w.min_rev), []).append(w)
        for (key, end, start), members in groups.items():
            batch, more_rev = self._history_batch(events, key, end, start)
            # (A group that starts beyond a read cut short keeps its own start.)
            next_min = more_rev or max(covered + 1, start)
            if batch is not None and any(w.prev_kv for w in members):
                self._fill_prev_kv(batch.events)
            for w in members:
                w.min_rev = next_min
                if batch is not None:
                    if not w.send(batch, cur):
                        unsynced.delete(w)
                        self._park(w, batch)
                        continue
                    self.history_responses += 1
                if next_min > cur:
                    unsynced.delete(w)
                    w.state = "synced"
                    self.synced.add(w)
        self._answer_progress()
        return len(unsynced)

    def _history_batch(
        self, events: list[Event], key: bytes, end: bytes | None, start: int
    ) -> tuple[EventBatch | None, int]:
        """The events of one watcher range from ``start``, cut after batch_max_revs revisions.

        Returns the batch (None if empty) and the first revision left out (0 if none).
        """
        picked: list[Event] = []
        revs = 0
        last = -1
        for ev in events:
            kv = ev.kv
            rev = kv.mod_revision
            if rev < start:
                continue
            k = kv.key
            if end is None:
                if k != key:
                    continue
            elif k < key or (end and k >= end):
                continue
            if rev != last:
                revs += 1
                if revs > self.batch_max_revs:
                    return EventBatch(picked), rev
                last = rev
            picked.append(ev)
        return (EventBatch(picked) if picked else None), 0

    def _fill_prev_kv(self, events: list[Event]) -> None:
        """History events carry no prev_kv: read it at the revision before (as etcd)."""
        for ev in events:
            kv = ev.kv
            if ev.HasField("prev_kv") or (
                ev.type == _PUT and kv.create_revision == kv.mod_revision
            ):
                continue
            try:
                found = self.range(kv.key, rev=kv.mod_revision - 1).kvs
            except CompactedError:
                continue
            if found:
                ev.prev_kv.CopyFrom(found[0])

    def _answer_progress(self) -> None:
        if not self._progress_waiting:
            return
        done = [s for s in self._progress_waiting if s.all_synced()]
        for stream in done:
            del self._progress_waiting[stream]
            if stream.progress_requested and not stream.closed:
                stream.progress_requested = False
                stream.push(WatchResponse(INVALID_WATCH_ID, self.current_revision))


class _NotifyingTxnWrite(TxnWrite):
    """A write transaction whose end() hands its events to the synced watchers."""

    __slots__ = ()

    def end(self) -> list[Event]:
        if self._ended:
            return self._events
        events = super().end()
        if events:
            store = self._s
            assert isinstance(store, WatchableStore)
            store.notify(store.current_revision, events)
        return events
