"""The change feed: what the core tells every front-end after each commit (pure; no I/O).

A front-end keeps a read replica (etcdpy.frontend.replica_store): the core's LMDB file opened read
only, plus its own key index. LMDB already holds the values; the index needs to know which keys
changed at which revision, which is what a feed record carries, once per committed batch:

    header: revision (i64), raft term, cluster id, member id (u64 each), flags (u8: REPLACED,
            LEARNER, AUTH_CHANGED)
    then ops: kind (u8), main revision (u64), sub revision (u32), length (u32), payload

PUT ops carry the new KeyValue's bytes (the watch fan-out of a front-end can use them as they
are), DELETE ops the key, COMPACT ops nothing (the main revision is the compaction's). The flag
REPLACED says the backend file was swapped (a snapshot from the leader, a defragmentation): the
replica must reopen the file and rebuild its index before it serves again. The flag
AUTH_CHANGED says the batch changed the auth buckets (users, roles, the enabled flag): the
front-end reloads its auth view from the file before it checks another call (AuthEnable moves
no revision, so the flag, not the revision, says so).

A feed record goes out on the core link before the responses of the requests its batch applied
(etcdpy.corelink.replica_feed), so a front-end has seen a write before its client has.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from etcdpy.pb.mvccpb.kv_pb2 import Event

HEADER = struct.Struct("<qQQQB")
OP = struct.Struct("<BQII")

PUT = 0
DELETE = 1
COMPACT = 2

REPLACED = 1
LEARNER = 2  # this member is a learner (its front-ends refuse what a learner refuses)
AUTH_CHANGED = 4  # the batch changed users, roles or the enabled flag

_DELETE_EVENT = Event.DELETE


@dataclass(slots=True)
class FeedOp:
    kind: int
    main: int
    sub: int
    payload: bytes


@dataclass(slots=True)
class FeedUpdate:
    revision: int
    raft_term: int
    cluster_id: int
    member_id: int
    replaced: bool
    ops: list[FeedOp] = field(default_factory=list)
    is_learner: bool = False
    auth_changed: bool = False


class FeedBuilder:
    """Collects the changes of one commit in encoded form."""

    __slots__ = ("_auth_changed", "_parts", "_replaced")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._replaced = False
        self._auth_changed = False

    def __bool__(self) -> bool:
        return bool(self._parts) or self._replaced or self._auth_changed

    def add_events(self, events: Iterable[Event]) -> None:
        """One write transaction's events, in order (an event's position is its sub revision)."""
        pack = OP.pack
        parts = self._parts
        for sub, ev in enumerate(events):
            kv = ev.kv
            if ev.type == _DELETE_EVENT:
                parts.append(pack(DELETE, kv.mod_revision, sub, len(kv.key)))
                parts.append(kv.key)
            else:
                data = kv.SerializeToString()
                parts.append(pack(PUT, kv.mod_revision, sub, len(data)))
                parts.append(data)

    def add_compaction(self, rev: int) -> None:
        self._parts.append(OP.pack(COMPACT, rev, 0, 0))

    def mark_replaced(self) -> None:
        """The backend file changed: ops collected before it are moot (the file has them)."""
        self._parts.clear()
        self._replaced = True

    def mark_auth_changed(self) -> None:
        """An auth request changed the auth buckets in this commit."""
        self._auth_changed = True

    def take(
        self,
        revision: int,
        raft_term: int,
        cluster_id: int,
        member_id: int,
        is_learner: bool = False,
    ) -> bytes:
        flags = (
            (REPLACED if self._replaced else 0)
            | (LEARNER if is_learner else 0)
            | (AUTH_CHANGED if self._auth_changed else 0)
        )
        header = HEADER.pack(revision, raft_term, cluster_id, member_id, flags)
        record = header + b"".join(self._parts)
        self._parts.clear()
        self._replaced = self._auth_changed = False
        return record


def decode_feed(payload: bytes) -> FeedUpdate:
    """A feed record's contents; ValueError when it is cut short."""
    if len(payload) < HEADER.size:
        raise ValueError("feed record shorter than its header")
    revision, term, cluster_id, member_id, flags = HEADER.unpack_from(payload, 0)
    update = FeedUpdate(revision, term, cluster_id, member_id, bool(flags & REPLACED))
    update.is_learner = bool(flags & LEARNER)
    update.auth_changed = bool(flags & AUTH_CHANGED)
    pos = HEADER.size
    end = len(payload)
    unpack = OP.unpack_from
    size = OP.size
    ops = update.ops
    while pos < end:
        if end - pos < size:
            raise ValueError("feed op cut short")
        kind, main, sub, length = unpack(payload, pos)
        pos += size
        if pos + length > end:
            raise ValueError("feed op payload cut short")
        ops.append(FeedOp(kind, main, sub, payload[pos : pos + length]))
        pos += length
    return update
