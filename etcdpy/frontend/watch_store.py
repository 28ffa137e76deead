"""A front-end's read replica with etcd's watcher groups: watch streams end in the front-end.

The core's change feed reaches every front-end once per commit; each front-end hands the events
of every revision to its own synced watchers (etcdpy.mvcc.watchable_store: the same synced,
unsynced and victim logic as the core's), and its unsynced watchers catch up from history read
in the LMDB file. So one write costs the core one feed record per front-end, whatever the number
of watchers, and the encoding and sending of watch responses is spread over the front-ends.

Feed events carry no prev_kv (the core's do): while a watcher that asked for it exists, the
previous version is read from the replica at the revision before, as etcd does for history.
"""

from __future__ import annotations

from collections.abc import Callable

from etcdpy.corelink.feed import DELETE, FeedOp
from etcdpy.frontend.replica_store import ReplicaStore
from etcdpy.mvcc.backend import Backend
from etcdpy.mvcc.watchable_store import WatchableStore
from etcdpy.mvcc.watcher import Watcher
from etcdpy.pb.mvccpb.kv_pb2 import Event

_DELETE = Event.DELETE


class ReplicaWatchableStore(ReplicaStore, WatchableStore):
    def __init__(self, backend: Backend, wakeup: Callable[[], None] | None = None) -> None:
        WatchableStore.__init__(self, backend, wakeup=wakeup)
        self._prev_kv_watchers: set[Watcher] = set()

    def add_watcher(self, w: Watcher) -> None:
        super().add_watcher(w)
        if w.prev_kv:
            self._prev_kv_watchers.add(w)

    def remove_watcher(self, w: Watcher) -> None:
        super().remove_watcher(w)
        self._prev_kv_watchers.discard(w)

    def revision_applied(self, rev: int, ops: list[FeedOp]) -> None:
        if not self.synced.watchers:
            return  # nobody to tell (unsynced watchers read history)
        events: list[Event] = []
        for op in ops:
            ev = Event()
            if op.kind == DELETE:
                ev.type = _DELETE
                ev.kv.key = op.payload
                ev.kv.mod_revision = rev
            else:
                ev.kv.ParseFromString(op.payload)
            events.append(ev)
        if self._prev_kv_watchers:
            self._fill_prev_kv(events)
        self.notify(rev, events)
