"""A front-end's read replica: the core's LMDB file, read only, kept level by the change feed.

Started after the core has subscribed this front-end to its feed, so every change committed
after the replica's restore arrives as a feed record (changes the restore saw already are
skipped, etcdpy.frontend.replica_store). When the core swaps its backend file, or when a feed record
does not fit the index (a bug, but never a reason to serve wrong data), the replica reopens the
file and restores again.

It also keeps the front-end's auth view: an AuthStore over the same read-only file (the auth
buckets are in it), reloaded when a feed record carries AUTH_CHANGED, on REPLACED and at the
start. A feed record is sent after its batch commits and before the batch's clients hear OK, so
once a revoke's OK is out, every front-end has reloaded (or will before the next feed record:
the reload comes before the record's changes are handed to watchers).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from etcdpy.auth.store import AuthStore
from etcdpy.auth.tokens import JwtTokens, SimpleTokens
from etcdpy.corelink.feed import FeedUpdate, decode_feed
from etcdpy.frontend.replica_store import ReplicaOutOfStep
from etcdpy.frontend.watch_store import ReplicaWatchableStore
from etcdpy.mvcc.backend import Backend
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb

log = structlog.get_logger(__name__)


class FrontendReplica:
    def __init__(
        self,
        db_path: str,
        map_size: int,
        wakeup: Callable[[], None] | None = None,
        tokens: SimpleTokens | JwtTokens | None = None,
    ) -> None:
        self._db_path = db_path
        self._map_size = map_size
        self._wakeup = wakeup  # the front-end's watch sync (etcdpy.server.watch_sync)
        self._tokens = tokens if tokens is not None else SimpleTokens(0, _no_clock)
        self.store: ReplicaWatchableStore | None = None
        # Users, roles, the enabled flag, read from the file (None until started).
        self.auth: AuthStore | None = None
        self.cluster_id = 0
        self.member_id = 0
        self.raft_term = 0
        self.is_learner = False  # read per request by the learner guard (api/learner_guard.py)

    def start(self, subscribed: bytes) -> None:
        """Open the file; ``subscribed`` is the core's answer to SUBSCRIBE (where it stands)."""
        self._take_header(decode_feed(subscribed))
        self._open()

    def _open(self) -> None:
        """Open the file as it is now; a store already open keeps its watchers (they catch up
        from the new file, as the core's do after a snapshot)."""
        store = self.store
        if store is not None:
            store.backend.close()  # LMDB opens a file once per process
            store.replace_backend(self._backend())
        else:
            self.store = store = ReplicaWatchableStore(self._backend(), wakeup=self._wakeup)
        self._reload_auth(store)

    def _reload_auth(self, store: ReplicaWatchableStore) -> None:
        """Read the auth buckets again, as they are committed now (one object throughout:
        the Auth layer and the watch service hold it)."""
        if self.auth is None:
            self.auth = AuthStore(store.backend, self._tokens)
        else:
            self.auth.recover(store.backend)

    def _backend(self) -> Backend:
        return Backend(self._db_path, map_size=self._map_size, readonly=True)

    def _take_header(self, update: FeedUpdate) -> None:
        self.cluster_id = update.cluster_id
        self.member_id = update.member_id
        self.raft_term = update.raft_term
        self.is_learner = update.is_learner

    def on_feed(self, payload: bytes) -> None:
        update = decode_feed(payload)
        self._take_header(update)
        store = self.store
        if store is None:
            return  # not started yet: the restore will read these changes from the file
        try:
            if update.replaced:
                self._open()
                return
            if update.auth_changed:  # before the changes reach watchers: they look at it
                self._reload_auth(store)
            store.apply_update(update)
        except (ReplicaOutOfStep, ValueError, KeyError) as exc:
            log.error("front-end replica out of step with the core; rebuilding", error=str(exc))
            self._open()

    def fill_header(self, header: pb.ResponseHeader) -> None:
        store = self.store
        header.cluster_id = self.cluster_id
        header.member_id = self.member_id
        header.raft_term = self.raft_term
        if not header.revision and store is not None:
            header.revision = store.current_revision

    def close(self) -> None:
        if self.store is not None:
            self.store.close_reader()
            self.store = None


def _no_clock() -> float:
    return 0.0
