"""A read replica of the core's store, in a front-end process.

It opens the core's LMDB file read only (LMDB lets many processes read one file while one
writes it) and rebuilds the key index from it, as any KVStore does on open; from then on the
core's change feed (etcdpy.corelink.feed) keeps the index level with the core: the values are in
the file already, the index learns which key changed at which revision.

Reads go through KVStore's own read path (apply_range and friends work unchanged), at the
revision the replica has reached. A change the restore saw is skipped when the feed repeats it.
"""

from __future__ import annotations

import os

from etcdpy.corelink.feed import COMPACT, DELETE, PUT, FeedOp, FeedUpdate
from etcdpy.mvcc import backend as bk
from etcdpy.mvcc.backend import Backend, Tx
from etcdpy.mvcc.errors import CompactedError
from etcdpy.mvcc.kvstore import SCHEDULED_COMPACT_KEY, KVStore
from etcdpy.mvcc.revision import Revision, decode
from etcdpy.pb.mvccpb.kv_pb2 import KeyValue


class ReplicaOutOfStep(Exception):
    """The feed does not fit the index (a change missed): the replica must be rebuilt."""


class ReplicaStore(KVStore):
    """A KVStore over a read-only backend, moved forward by feed updates."""

    def apply_update(self, update: FeedUpdate) -> None:
        """Take one feed record's changes (the caller handles ``update.replaced``)."""
        index = self._index
        base = self._current_rev
        pending: list[FeedOp] = []  # the ops of the revision being read
        for op in update.ops:
            kind = op.kind
            if pending and op.main != pending[0].main:
                self._revision_done(pending)
                pending = []
            if kind == COMPACT:
                if op.main > self._compact_rev:
                    index.compact(op.main)
                    self._compact_rev = op.main
                continue
            if op.main <= base:
                continue  # the restore read it from the file
            if kind == PUT:
                index.put(_key_of(op.payload), Revision(op.main, op.sub))
            elif kind == DELETE:
                if index.key_index(op.payload) is None:
                    raise ReplicaOutOfStep(f"delete of a key the replica lacks at {op.main}")
                index.tombstone(op.payload, Revision(op.main, op.sub))
            else:
                raise ReplicaOutOfStep(f"unknown feed op {kind}")
            pending.append(op)
        if pending:
            self._revision_done(pending)
        if update.revision > self._current_rev:
            self._current_rev = update.revision

    def _revision_done(self, ops: list[FeedOp]) -> None:
        rev = ops[0].main
        if rev > self._current_rev:
            self._current_rev = rev
        self.revision_applied(rev, ops)

    def revision_applied(self, rev: int, ops: list[FeedOp]) -> None:
        """Every change of revision ``rev`` is in the index (a hook for watchers)."""

    def _check_history(self, tx: Tx, start_rev: int) -> None:
        # The core deletes compacted revisions before this replica may have heard of the
        # compaction: a scan of history would skip them without a word. The file's own record
        # of the compaction, read in the same transaction as the scan, says whether it may.
        raw = tx.get(bk.META, SCHEDULED_COMPACT_KEY)
        if raw and start_rev < decode(raw).main:
            raise CompactedError()

    def close_reader(self) -> None:
        """Close the read-only file (KVStore.close would try to finish compactions)."""
        self._b.close()


def _key_of(kv_bytes: bytes) -> bytes:
    """The key of a marshalled KeyValue: field 1 comes first (protobuf writes fields in number
    order), so its length-delimited bytes are read without parsing the rest."""
    if kv_bytes[:1] == b"\x0a":
        length = shift = 0
        pos = 1
        while pos < len(kv_bytes) and shift < 35:
            byte = kv_bytes[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return kv_bytes[pos : pos + length]
            shift += 7
    return KeyValue.FromString(kv_bytes).key


def open_replica(db_path: str | os.PathLike[str], map_size: int) -> ReplicaStore:
    """The replica of the file at ``db_path`` as it is now (the writer must have created it)."""
    return ReplicaStore(Backend(db_path, map_size=map_size, readonly=True))
