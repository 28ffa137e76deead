"""Watchers, the event batches they share, and the per-stream queue of watch responses.

A WatchStream is what one gRPC Watch stream holds: many watchers and one bounded queue of
responses in the order they must go out. The store pushes into the queue without ever
waiting: once the stream has a backlog (``behind``) an event push fails and the watcher is
parked as a victim (see watchable_store.py), so the memory one slow client can pin is
bounded: half of ``capacity`` plus one event response per watcher, at most ``max_events``
events, and one parked batch per watcher.

Control responses (created, canceled, a stream-wide progress answer) always enter the queue:
they are answers to the client's own requests, one each.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from etcdpy.pb.mvccpb.kv_pb2 import Event

# etcd's texts for a create request it refuses (the response's cancel_reason).
ERR_EMPTY_RANGE = "mvcc: watcher range is empty"
ERR_DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"
INVALID_WATCH_ID = -1

# etcd's chanBufLen: responses one stream may have waiting for its sender.
DEFAULT_STREAM_CAPACITY = 128
# Our own cap on the events waiting in one stream's queue (etcd has none), so that a stream
# that stopped reading pins a bounded amount of memory even when responses are large.
DEFAULT_STREAM_MAX_EVENTS = 16384

_PUT = Event.PUT
_DELETE = Event.DELETE


class EventBatch:
    """Events of one or more whole revisions, in revision order, shared by many watchers.

    ``encoded`` is scratch space for the API layer to keep the wire encoding, so that a
    batch that goes to a thousand watchers is serialized once.
    """

    __slots__ = ("_filtered", "encoded", "events")

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self._filtered: dict[int, EventBatch] | None = None
        self.encoded: Any = None

    def filtered(self, no_put: bool, no_delete: bool) -> EventBatch:
        """The batch without the event types a watcher filters out (cached per filter)."""
        mask = (1 if no_put else 0) | (2 if no_delete else 0)
        if mask == 0:
            return self
        cache = self._filtered
        if cache is None:
            cache = self._filtered = {}
        found = cache.get(mask)
        if found is None:
            drop = {_PUT} if mask == 1 else {_DELETE} if mask == 2 else {_PUT, _DELETE}
            found = EventBatch([ev for ev in self.events if ev.type not in drop])
            cache[mask] = found
        return found


class WatchResponse:
    """One response for the stream's sender to encode (etcd's WatchResponse fields).

    ``batch`` is None for control and progress responses. A response with
    ``compact_revision`` set cancels its watcher (the start revision was compacted away).
    """

    __slots__ = (
        "batch",
        "cancel_reason",
        "canceled",
        "compact_revision",
        "created",
        "fragment",
        "prev_kv",
        "revision",
        "watch_id",
    )

    def __init__(
        self,
        watch_id: int,
        revision: int,
        batch: EventBatch | None = None,
        compact_revision: int = 0,
        created: bool = False,
        canceled: bool = False,
        cancel_reason: str = "",
        prev_kv: bool = False,
        fragment: bool = False,
    ) -> None:
        self.watch_id = watch_id
        self.revision = revision
        self.batch = batch
        self.compact_revision = compact_revision
        self.created = created
        self.canceled = canceled or compact_revision != 0
        self.cancel_reason = cancel_reason
        self.prev_kv = prev_kv
        self.fragment = fragment

    @property
    def events(self) -> list[Event]:
        return self.batch.events if self.batch is not None else []

    def __repr__(self) -> str:
        n = len(self.events)
        return (
            f"WatchResponse(id={self.watch_id}, rev={self.revision}, events={n}, "
            f"created={self.created}, canceled={self.canceled}, "
            f"compact={self.compact_revision}, reason={self.cancel_reason!r})"
        )


class Watcher:
    """One watch: a key or a range, the next revision it needs, and its options.

    ``end`` is None for a single key, b"" for every key >= ``key``, else exclusive.
    """

    __slots__ = (
        "compacted",
        "end",
        "events_sent",
        "fragment",
        "id",
        "key",
        "min_rev",
        "no_delete",
        "no_put",
        "prev_kv",
        "progress_notify",
        "state",
        "stream",
    )

    def __init__(
        self,
        stream: WatchStream,
        watch_id: int,
        key: bytes,
        end: bytes | None,
        min_rev: int,
        prev_kv: bool = False,
        no_put: bool = False,
        no_delete: bool = False,
        progress_notify: bool = False,
        fragment: bool = False,
    ) -> None:
        self.stream = stream
        self.id = watch_id
        self.key = key
        self.end = end
        self.min_rev = min_rev
        self.prev_kv = prev_kv
        self.no_put = no_put
        self.no_delete = no_delete
        self.progress_notify = progress_notify
        self.fragment = fragment
        self.compacted = False
        self.events_sent = False
        # "synced", "unsynced", "victim", "compacted" or "canceled"; set by the store.
        self.state = ""

    def matches(self, key: bytes) -> bool:
        end = self.end
        if end is None:
            return key == self.key
        return self.key <= key and (not end or key < end)

    def send(self, batch: EventBatch | None, revision: int) -> bool:
        """Queue events (or, with no batch, a progress notification); False if full.

        Events all removed by the watcher's filters send nothing, successfully (as etcd).
        """
        if batch is not None and (self.no_put or self.no_delete):
            batch = batch.filtered(self.no_put, self.no_delete)
            if not batch.events:
                return True
        stream = self.stream
        if batch is not None and stream.behind():
            # Its sender has a backlog: park the watcher now (it catches up from history
            # later, many revisions per response) rather than queue one more response.
            stream.starved = True
            return False
        if not stream.has_room():
            stream.starved = True
            return False
        stream.push(
            WatchResponse(self.id, revision, batch, prev_kv=self.prev_kv, fragment=self.fragment)
        )
        if batch is not None:
            self.events_sent = True
        return True

    def __repr__(self) -> str:
        return f"Watcher(id={self.id}, key={self.key!r}, end={self.end!r}, min={self.min_rev})"


class StreamHost(Protocol):
    """What a WatchStream needs of the store its watchers watch: the core's WatchableStore
    and a front-end's replica store (etcdpy.frontend.watch_store) both are one. A protocol,
    so that this module does not import the store that imports it."""

    @property
    def current_revision(self) -> int: ...

    def add_watcher(self, w: Watcher) -> None: ...

    def remove_watcher(self, w: Watcher) -> None: ...

    def want_progress(self, stream: WatchStream) -> None:
        """Answer the stream with a progress response once no watcher of it is behind."""

    def forget_stream(self, stream: WatchStream) -> None: ...

    def wake(self) -> None:
        """Parked watchers may be retried now (the stream's queue drained)."""


class WatchStream:
    """The watchers of one client stream and the queue of responses for its sender.

    ``on_ready`` is called when the queue goes from empty to non-empty (wake the sender).
    """

    def __init__(
        self,
        store: StreamHost,
        on_ready: Callable[[], None] | None = None,
        capacity: int = DEFAULT_STREAM_CAPACITY,
        max_events: int = DEFAULT_STREAM_MAX_EVENTS,
    ) -> None:
        self._store = store
        self.on_ready = on_ready
        self.capacity = capacity
        self.max_events = max_events
        self.park_at = max(2, capacity // 2)
        self.watchers: dict[int, Watcher] = {}
        self._next_id = 0
        self._queue: deque[WatchResponse] = deque()
        self._queued_events = 0
        self.starved = False  # a push failed since the last drain
        self.progress_requested = False  # a RequestProgress waits for every watcher to sync
        self.closed = False

    # -- the queue -----------------------------------------------------------------------

    def behind(self) -> bool:
        """The sender has a backlog: event pushes park the watcher instead.

        That is more than one response per watcher of the stream plus half the base
        capacity waiting (etcd parks a watcher when its stream's channel of 128 is full).
        """
        return len(self._queue) >= self.park_at + len(self.watchers)

    def has_room(self) -> bool:
        # Room for one live response per watcher on top of the base capacity: a stream with
        # hundreds of watchers must not park most of them at every write.
        room = self.capacity + len(self.watchers)
        return len(self._queue) < room and self._queued_events < self.max_events

    def push(self, resp: WatchResponse) -> None:
        was_empty = not self._queue
        self._queue.append(resp)
        if resp.batch is not None:
            self._queued_events += len(resp.batch.events)
        if was_empty and self.on_ready is not None:
            self.on_ready()

    def drain(self, limit: int = 0) -> list[WatchResponse]:
        """Take up to ``limit`` queued responses (0: all), oldest first."""
        q = self._queue
        if not q:
            return []
        if limit <= 0 or limit >= len(q):
            out = list(q)
            q.clear()
            self._queued_events = 0
        else:
            out = [q.popleft() for _ in range(limit)]
            self._queued_events -= sum(len(r.events) for r in out if r.batch is not None)
        if self.starved:
            self.starved = False
            self._store.wake()  # parked watchers of this stream can be retried now
        return out

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def queued_events(self) -> int:
        return self._queued_events

    # -- requests from the client --------------------------------------------------------

    def watch(
        self,
        key: bytes,
        end: bytes | None,
        start_rev: int = 0,
        watch_id: int = 0,
        prev_kv: bool = False,
        no_put: bool = False,
        no_delete: bool = False,
        progress_notify: bool = False,
        fragment: bool = False,
    ) -> int:
        """Create a watcher and queue its ``created`` response; the id, or -1 if refused.

        ``end`` as in Watcher. ``start_rev`` 0 means from the next revision. ``watch_id`` 0
        lets the stream pick the lowest free id.
        """
        rev = self._store.current_revision
        reason = ""
        if end and key >= end:
            reason = ERR_EMPTY_RANGE
        elif self.closed:
            reason = ERR_EMPTY_RANGE  # etcd's answer on a closed stream
        elif watch_id == 0:
            while self._next_id in self.watchers:
                self._next_id += 1
            watch_id = self._next_id
            self._next_id += 1
        elif watch_id in self.watchers:
            reason = ERR_DUPLICATE_ID
        if reason:
            self.refuse(reason)
            return INVALID_WATCH_ID
        w = Watcher(
            self,
            watch_id,
            key,
            end,
            start_rev if start_rev > 0 else rev + 1,
            prev_kv=prev_kv,
            no_put=no_put,
            no_delete=no_delete,
            progress_notify=progress_notify,
            fragment=fragment,
        )
        self.watchers[watch_id] = w
        # The created response goes first: nothing can be queued for w before this returns.
        self.push(WatchResponse(watch_id, rev, created=True))
        self._store.add_watcher(w)
        return watch_id

    def refuse(self, reason: str) -> None:
        """Answer a create request that makes no watcher: created and canceled, with why."""
        self.push(
            WatchResponse(
                INVALID_WATCH_ID,
                self._store.current_revision,
                created=True,
                canceled=True,
                cancel_reason=reason,
            )
        )

    def cancel(self, watch_id: int, reason: str = "") -> bool:
        """Cancel a watcher and queue the ``canceled`` response (with ``reason`` when the
        server ends it); False for an unknown id."""
        w = self.watchers.pop(watch_id, None)
        if w is None or self.closed:
            return False
        self._store.remove_watcher(w)
        self.push(
            WatchResponse(
                watch_id, self._store.current_revision, canceled=True, cancel_reason=reason
            )
        )
        return True

    def request_progress(self) -> None:
        """Answer with the current revision once every watcher here has caught up.

        etcd 3.4 answers at once; waiting until no watcher of the stream is behind keeps the
        promise of a progress notification: every event up to its revision was sent before.
        """
        if self.all_synced():
            self.push(WatchResponse(INVALID_WATCH_ID, self._store.current_revision))
        else:
            self.progress_requested = True
            self._store.want_progress(self)

    def progress_tick(self) -> None:
        """The periodic progress notification of watchers that asked for it.

        A watcher that got events since the last tick is skipped (the events said enough);
        one that is behind is skipped too (a notification would pass undelivered events).
        """
        rev = self._store.current_revision
        for w in list(self.watchers.values()):
            if not w.progress_notify:
                continue
            if not w.events_sent and w.state == "synced":
                w.send(None, rev)
            w.events_sent = False

    def all_synced(self) -> bool:
        return all(w.state in ("synced", "compacted") for w in self.watchers.values())

    def close(self) -> None:
        """Cancel every watcher and drop what is queued (the client is gone)."""
        if self.closed:
            return
        self.closed = True
        for w in self.watchers.values():
            self._store.remove_watcher(w)
        self.watchers.clear()
        self._queue.clear()
        self._queued_events = 0
        self._store.forget_stream(self)
