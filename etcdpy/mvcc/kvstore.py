"""The multi-version key-value store: the in-memory index over the backend's key bucket.

Revisions. A fresh store is at revision 1. Every write transaction that changes something
takes the next main revision, and its changes get sub revisions 0, 1, 2, ... in order; a
transaction that changes nothing (say, the delete of a missing key) takes no revision.

Storage. The ``key`` bucket maps an encoded revision (see revision.py) to the marshalled
``mvccpb.KeyValue`` written at that revision; a deletion writes a tombstone (the revision with
a ``t`` mark, and a KeyValue holding only the key). The ``meta`` bucket holds the consistent
index (the last applied raft index, 8 bytes big-endian) and the scheduled and finished
compaction revisions. On open, the index is rebuilt by one pass over the key bucket.

Batching. ``write()`` joins the backend's open write transaction when there is one, so the
server wraps the apply of one Ready in ``with store.batch():`` and pays one LMDB commit for
many transactions. Lease, auth and membership code can write their buckets through the Tx
that ``batch()`` yields, in the same commit.

Failures. If an exception escapes a write transaction that already changed something, the
in-memory index no longer matches what will be committed: the batch is aborted and the store
refuses further use (StoreClosedError). Reopening it from the backend gives the last
committed state, and the server replays its WAL from ``consistent_index``.

Not thread-safe: one thread drives a KVStore.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Protocol, cast

from crc32c import crc32c

from etcdpy.mvcc import backend as bk
from etcdpy.mvcc.backend import Backend, Tx
from etcdpy.mvcc.counts import MvccCounts
from etcdpy.mvcc.errors import (
    CompactedError,
    FutureRevError,
    StoreClosedError,
    TxnInProgressError,
)
from etcdpy.mvcc.index import TreeIndex
from etcdpy.mvcc.key_index import KeyIndex
from etcdpy.mvcc.revision import MARKED_REV_BYTES_LEN, Revision, decode, encode
from etcdpy.pb.mvccpb.kv_pb2 import Event, KeyValue

CONSISTENT_INDEX_KEY = b"consistent_index"
SCHEDULED_COMPACT_KEY = b"scheduledCompactRev"
FINISHED_COMPACT_KEY = b"finishedCompactRev"

DEFAULT_COMPACTION_BATCH_LIMIT = 1000

_REV = struct.Struct(">Q1sQ")
_pack_rev = _REV.pack
_unpack_rev = _REV.unpack_from
_U64 = struct.Struct(">Q")

_DELETE = Event.DELETE
_parse_kv = KeyValue.FromString


def _missing(rev: Revision) -> RuntimeError:
    return RuntimeError(f"mvcc: the index points at revision {tuple(rev)}, absent from backend")


def _out_of_order(main: int, sub: int) -> RuntimeError:
    return RuntimeError(f"mvcc: revision {(main, sub)} is not after the last one in the backend")


class RangeResult:
    """What a range found: ``kvs`` (at most ``limit``), ``count`` (all matches), ``rev``.

    ``rev`` is the store's revision at the time of the read (the response header revision),
    not the revision read at. (A plain slotted class: it is built on every read, and a
    frozen dataclass costs three times as much to construct.)
    """

    __slots__ = ("count", "kvs", "rev")

    def __init__(self, kvs: list[KeyValue], count: int, rev: int) -> None:
        self.kvs = kvs
        self.count = count
        self.rev = rev

    def __repr__(self) -> str:
        return f"RangeResult(kvs={self.kvs!r}, count={self.count}, rev={self.rev})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeResult):
            return NotImplemented
        return (self.kvs, self.count, self.rev) == (other.kvs, other.count, other.rev)

    __hash__ = None  # type: ignore[assignment]


class _Compaction:
    """A compaction whose backend deletions are not finished yet."""

    __slots__ = ("end", "keep", "next_key", "rev")

    def __init__(self, rev: int, keep: set[Revision]) -> None:
        self.rev = rev
        self.keep = keep
        self.next_key = _pack_rev(0, b"_", 0)
        self.end = _U64.pack(rev + 1)  # every key of a revision <= rev sorts below this


class ChangeSink(Protocol):
    """Told of every change the store makes (the core's feed to front-end replicas)."""

    def on_events(self, events: list[Event]) -> None: ...

    def on_compaction(self, rev: int) -> None: ...

    def on_replaced(self) -> None: ...


class KVStore:
    """etcd's mvcc store over a Backend; see the module docstring."""

    def __init__(
        self, backend: Backend, compaction_batch_limit: int = DEFAULT_COMPACTION_BATCH_LIMIT
    ) -> None:
        self._b = backend
        self._key_db = backend.db(bk.KEY)
        self.compaction_batch_limit = compaction_batch_limit
        self._index = TreeIndex()
        self._current_rev = 1
        self._compact_rev = -1
        self._consistent_index = 0
        self._txn: TxnWrite | None = None
        self._compaction: _Compaction | None = None
        self._broken = False
        self.change_sink: ChangeSink | None = None
        self.counts = MvccCounts()
        # The operations of the transaction being counted (ranges, puts, deletes, bytes put),
        # and how deep in counted_as_one() we are.
        self._tally = [0, 0, 0, 0]
        self._grouped = 0
        self._restore()

    def replace_backend(self, backend: Backend) -> None:
        """Continue on another backend file (a member installing the leader's snapshot): the
        key index and revisions are rebuilt from it. The old backend is the caller's to close."""
        self._b = backend
        self._key_db = backend.db(bk.KEY)
        self._index = TreeIndex()
        self._current_rev = 1
        self._compact_rev = -1
        self._consistent_index = 0
        self._txn = None
        self._compaction = None
        self._broken = False
        self._restore()
        if self.change_sink is not None:
            self.change_sink.on_replaced()

    # -- state ---------------------------------------------------------------------------

    @property
    def current_revision(self) -> int:
        """Revision of the last write transaction that changed something (1 when fresh)."""
        return self._current_rev

    @property
    def compact_revision(self) -> int:
        """Revision of the last compaction; -1 when never compacted (as etcd)."""
        return self._compact_rev

    @property
    def consistent_index(self) -> int:
        """The raft index of the last applied entry, as recorded with the data."""
        return self._consistent_index

    @property
    def backend(self) -> Backend:
        return self._b

    @property
    def index(self) -> TreeIndex:
        return self._index

    def backend_replaced(self) -> None:
        """The backend swapped its file (defragmentation): fetch the bucket handle again."""
        self._key_db = self._b.db(bk.KEY)
        if self.change_sink is not None:
            self.change_sink.on_replaced()

    def _check_usable(self) -> None:
        if self._broken or self._b.closed:
            raise StoreClosedError("mvcc: closed")

    # -- restore -------------------------------------------------------------------------

    def _restore(self) -> None:
        scheduled = 0
        current = 1
        key_indexes: dict[bytes, KeyIndex] = {}
        with self._b.read() as tx:
            raw = tx.get(bk.META, FINISHED_COMPACT_KEY)
            if raw:
                self._compact_rev = decode(raw).main
            raw = tx.get(bk.META, SCHEDULED_COMPACT_KEY)
            if raw:
                scheduled = decode(raw).main
            raw = tx.get(bk.META, CONSISTENT_INDEX_KEY)
            if raw:
                self._consistent_index = _U64.unpack(raw)[0]
            kv = KeyValue()
            parse = kv.ParseFromString
            for k, v in tx.items(bk.KEY):
                main, _, sub = _unpack_rev(k)
                parse(v)
                key = kv.key
                current = main
                ki = key_indexes.get(key)
                if len(k) == MARKED_REV_BYTES_LEN:
                    # A tombstone of a key with no live version here records nothing.
                    if ki is not None and ki.generations[-1].revs:
                        ki.tombstone(main, sub)
                elif ki is not None:
                    ki.put(main, sub)
                else:
                    ki = KeyIndex(key)
                    ki.restore(Revision(kv.create_revision, 0), Revision(main, sub), kv.version)
                    key_indexes[key] = ki
        self._index = TreeIndex.from_key_indexes(key_indexes)
        # A compaction may have removed every revision up to it.
        self._current_rev = max(current, self._compact_rev, scheduled)
        if scheduled > 0 and scheduled > self._compact_rev:
            if self._b.readonly:
                # The writer is still compacting: refuse reads below its revision.
                self._compact_rev = scheduled
            else:
                # The last compaction was cut short by a crash: finish it.
                self.compact(scheduled)

    # -- reads ---------------------------------------------------------------------------

    def range(
        self,
        key: bytes,
        end: bytes | None = None,
        rev: int = 0,
        limit: int = 0,
        count_only: bool = False,
        keys_only: bool = False,
        raw: bool = False,
    ) -> RangeResult:
        """Read ``[key, end)`` as of ``rev`` (0: current); see index.py for ``end``.

        ``raw``: ``kvs`` holds each KeyValue as stored (serialized), not parsed."""
        self._check_usable()
        self._tally[0] += 1
        if not self._grouped:
            self._count()
        return self._range(key, end, rev, self._current_rev, limit, count_only, keys_only, raw)

    @contextmanager
    def counted_as_one(self) -> Iterator[None]:
        """The store operations inside count as one transaction (a Txn request's compares and
        operations, as etcd counts them in one mvcc transaction)."""
        self._grouped += 1
        try:
            yield
        finally:
            self._grouped -= 1
            if not self._grouped:
                self._count()

    def _count(self) -> None:
        tally = self._tally
        if tally[0] or tally[1] or tally[2]:
            self.counts.add(*tally)
            tally[:] = [0, 0, 0, 0]

    def _range(
        self,
        key: bytes,
        end: bytes | None,
        rev: int,
        cur_rev: int,
        limit: int,
        count_only: bool,
        keys_only: bool,
        raw: bool = False,
    ) -> RangeResult:
        if rev > cur_rev:
            raise FutureRevError()
        if rev <= 0:
            rev = cur_rev
        # Reading at the compacted revision itself is fine: compaction keeps what it sees.
        if rev < self._compact_rev:
            raise CompactedError()
        if not end:
            # The hot path: one dict lookup, one LMDB get, one parse.
            found = self._index.find(key, rev)
            if found is None:
                return RangeResult([], 0, cur_rev)
            if count_only:
                return RangeResult([], 1, cur_rev)
            if raw:  # the stored bytes in place of KeyValues (see range)
                return RangeResult(cast(list[KeyValue], [self._get_value(found[0])]), 1, cur_rev)
            kv = _parse_kv(self._get_value(found[0]))
            if keys_only:
                kv.ClearField("value")
            return RangeResult([kv], 1, cur_rev)
        if count_only:
            return RangeResult([], self._index.count(key, end, rev), cur_rev)
        revs, count = self._index.first_revisions(key, end, rev, limit)
        if not revs:
            return RangeResult([], count, cur_rev)
        if raw:  # the stored bytes in place of KeyValues (see range)
            return RangeResult(cast(list[KeyValue], self._get_values(revs)), count, cur_rev)
        kvs = [_parse_kv(v) for v in self._get_values(revs)]
        if keys_only:
            for kv in kvs:
                kv.ClearField("value")
        return RangeResult(kvs, count, cur_rev)

    def _get_value(self, rev: Revision) -> bytes:
        batch = self._b.current_batch
        if batch is not None:
            v = batch.txn.get(_pack_rev(rev[0], b"_", rev[1]), db=self._key_db)
        else:
            txn = self._b.begin_read()
            v = txn.get(_pack_rev(rev[0], b"_", rev[1]), db=self._key_db)
            txn.abort()
        if v is None:
            raise _missing(rev)
        return v

    def _get_values(self, revs: list[Revision]) -> list[bytes]:
        batch = self._b.current_batch
        txn = batch.txn if batch is not None else self._b.begin_read()
        try:
            get = txn.get
            db = self._key_db
            out: list[bytes] = []
            for r in revs:
                v = get(_pack_rev(r[0], b"_", r[1]), db=db)
                if v is None:
                    raise _missing(r)
                out.append(v)
            return out
        finally:
            if batch is None:
                txn.abort()

    def events_since(self, start_rev: int, end_rev: int = 0, limit: int = 0) -> list[Event]:
        """Every change with ``start_rev <= revision < end_rev`` (0: to the current one).

        For watchers catching up from history. A DELETE event's kv holds the key and the
        deletion's mod_revision, as etcd's; events carry no prev_kv. ``limit`` cuts the list
        at a revision boundary once it has at least that many events. Raises CompactedError
        when ``start_rev`` is older than the compaction revision.
        """
        self._check_usable()
        if start_rev < self._compact_rev:
            raise CompactedError()
        stop = _pack_rev(end_rev, b"_", 0) if end_rev > 0 else None
        events: list[Event] = []
        with self._b.read() as tx, tx.txn.cursor(db=self._key_db) as cur:
            self._check_history(tx, start_rev)
            if not cur.set_range(_pack_rev(max(start_rev, 0), b"_", 0)):
                return events
            last_main = -1
            for k, v in cur.iternext():
                if stop is not None and k >= stop:
                    break
                main = _unpack_rev(k)[0]
                if limit and len(events) >= limit and main != last_main:
                    break
                last_main = main
                ev = Event()
                ev.kv.ParseFromString(v)
                if len(k) == MARKED_REV_BYTES_LEN:
                    ev.type = _DELETE
                    ev.kv.mod_revision = main
                events.append(ev)
        return events

    def _check_history(self, tx: Tx, start_rev: int) -> None:
        """Called inside the read of history: raise CompactedError if it is gone (a replica
        may not have heard of a compaction its file already holds)."""

    # -- writes --------------------------------------------------------------------------

    def write(self, consistent_index: int | None = None) -> TxnWrite:
        """Open the write transaction (one at a time); ``with`` it, then call end()."""
        self._check_usable()
        if self._txn is not None:
            raise TxnInProgressError("a write transaction is already open")
        txn = TxnWrite(self, consistent_index)
        self._txn = txn
        return txn

    @contextmanager
    def batch(self) -> Iterator[Tx]:
        """Group every write inside into one backend commit (nests; yields the backend Tx)."""
        self._check_usable()
        start = (self._current_rev, self._compact_rev)
        start_ci = self._consistent_index
        tx = self._b.begin_batch()
        try:
            yield tx
        except BaseException:
            self._b.end_batch(ok=False)
            if (self._current_rev, self._compact_rev) != start:
                # The index holds changes the backend will not have.
                self._broken = True
            self._consistent_index = start_ci
            raise
        try:
            self._b.end_batch()
        except BaseException:
            self._broken = True
            raise

    def set_consistent_index(self, index: int) -> None:
        """Record an applied raft index that changed no key (joins an open batch)."""
        self._check_usable()
        tx = self._b.begin_batch()
        ok = False
        try:
            self._save_consistent_index(tx, index)
            ok = True
        finally:
            self._b.end_batch(ok)

    def _save_consistent_index(self, tx: Tx, index: int) -> None:
        tx.put(bk.META, CONSISTENT_INDEX_KEY, _U64.pack(index))
        self._consistent_index = index

    # -- compaction ----------------------------------------------------------------------

    def compact(self, rev: int) -> None:
        """Forget the history before ``rev``: index at once, backend in chunks."""
        self.begin_compaction(rev)
        while not self.compaction_step():
            pass

    def begin_compaction(self, rev: int) -> None:
        """Check ``rev``, record it as scheduled and compact the index.

        The backend deletions then happen in compaction_step() calls, each its own small
        commit when no batch is open, so the server can interleave them with its work.
        """
        self._check_usable()
        if self._txn is not None:
            raise TxnInProgressError("compact inside a write transaction")
        if rev <= self._compact_rev:
            raise CompactedError()
        if rev > self._current_rev:
            raise FutureRevError()
        while not self.compaction_step():
            pass  # finish the previous one first: its deletions use its own keep set
        self._compact_rev = rev
        with self._b.batch() as tx:
            tx.put(bk.META, SCHEDULED_COMPACT_KEY, encode(rev))
        self._compaction = _Compaction(rev, self._index.compact(rev))
        if self.change_sink is not None:
            self.change_sink.on_compaction(rev)

    @property
    def compaction_pending(self) -> bool:
        return self._compaction is not None

    def compaction_step(self, limit: int = 0) -> bool:
        """Delete up to ``limit`` old revisions from the backend; True once all are gone."""
        c = self._compaction
        if c is None:
            return True
        self._check_usable()
        limit = limit or self.compaction_batch_limit
        keep = c.keep
        with self._b.batch() as tx:
            found = tx.keys(bk.KEY, c.next_key, c.end, limit)
            for k in found:
                if decode(k) not in keep:
                    tx.delete(bk.KEY, k)
            done = len(found) < limit
            if done:
                tx.put(bk.META, FINISHED_COMPACT_KEY, encode(c.rev))
            else:
                last = decode(found[-1])
                c.next_key = _pack_rev(last.main, b"_", last.sub + 1)
        if done:
            self._compaction = None
            if self._b.current_batch is None:
                self._b.sync()
        return done

    # -- hashes --------------------------------------------------------------------------

    def hash_kv(self, rev: int = 0) -> tuple[int, int]:
        """(hash, compact_revision) of the key bucket up to ``rev`` (0: current), as etcd's
        HashByRev computes it: CRC-32C over the bucket's name, then each revision's key and
        value bytes in order (the same bytes etcd stores), so that a member of etcd and one of
        etcdpy holding the same history give the same hash."""
        self._check_usable()
        compact_rev, cur_rev = self._compact_rev, self._current_rev
        if 0 < rev <= compact_rev:
            raise CompactedError()
        if rev > cur_rev:
            raise FutureRevError()
        if rev <= 0:
            rev = cur_rev
        keep = self._index.keep(rev)
        upper = Revision(rev + 1, 0)
        lower = Revision(compact_rev + 1, 0)
        crc = crc32c
        h = crc(bk.KEY)
        with self._b.read() as tx:
            for k, v in tx.items(bk.KEY):
                r = decode(k)
                if r >= upper:
                    break
                # Revisions a pending compaction will delete do not count.
                if r < lower and keep and r not in keep:
                    continue
                h = crc(v, crc(k, h))
        return h, compact_rev

    def hash(self) -> tuple[int, int]:
        """(hash of every bucket but the consistent index, current revision), as etcd's Hash."""
        self._check_usable()
        return self._b.hash(ignore=[(bk.META, CONSISTENT_INDEX_KEY)]), self._current_rev

    # -- leases --------------------------------------------------------------------------

    def lease_keys(self) -> dict[int, list[bytes]]:
        """Live keys attached to a lease, by lease id (for the lessor after a restart)."""
        self._check_usable()
        out: dict[int, list[bytes]] = {}
        for kv in self.range(b"", b"\0").kvs:
            if kv.lease:
                out.setdefault(kv.lease, []).append(kv.key)
        return out

    def close(self) -> None:
        """Finish a pending compaction and close the backend."""
        if not self._broken and not self._b.closed:
            while not self.compaction_step():
                pass
        self._b.close()


class TxnWrite:
    """One write transaction: every change gets the same main revision.

    Reads inside see the transaction's own writes (once it changed something it reads at
    its new revision, as etcd). end() makes the changes visible and returns their events.
    """

    __slots__ = ("_begin_rev", "_changed", "_ci", "_ended", "_events", "_s", "_txn")

    def __init__(self, store: KVStore, consistent_index: int | None) -> None:
        self._s = store
        self._begin_rev = store._current_rev
        self._ci = consistent_index
        self._events: list[Event] = []
        self._changed = False
        self._ended = False
        self._txn = store._b.begin_batch().txn

    def __enter__(self) -> TxnWrite:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ended:
            return
        if exc_type is None:
            self.end()
        else:
            self._fail()

    @property
    def rev(self) -> int:
        """The revision this transaction's changes get (the begin revision if none)."""
        return self._begin_rev + 1 if self._changed else self._begin_rev

    @property
    def events(self) -> list[Event]:
        return self._events

    def range(
        self,
        key: bytes,
        end: bytes | None = None,
        rev: int = 0,
        limit: int = 0,
        count_only: bool = False,
        keys_only: bool = False,
        raw: bool = False,
    ) -> RangeResult:
        self._check_open()
        self._s._tally[0] += 1
        return self._s._range(key, end, rev, self.rev, limit, count_only, keys_only, raw)

    def put(self, key: bytes, value: bytes, lease: int = 0) -> KeyValue | None:
        """Write a new version of ``key``; returns the version it replaces, if any.

        The returned KeyValue belongs to the event (its prev_kv): do not modify it.
        """
        self._check_open()
        s = self._s
        tally = s._tally
        tally[1] += 1
        tally[3] += len(key) + len(value)
        rev = self._begin_rev + 1
        sub = len(self._events)
        db = s._key_db
        txn = self._txn
        ev = Event()
        kv = ev.kv
        prev: KeyValue | None = None
        found = s._index.find(key, rev)
        if found is None:
            kv.create_revision = rev
            kv.version = 1
        else:
            prev_rev, created, ver = found
            prev = ev.prev_kv
            raw = txn.get(_pack_rev(prev_rev[0], b"_", prev_rev[1]), db=db)
            if raw is None:
                raise _missing(prev_rev)
            prev.ParseFromString(raw)
            kv.create_revision = created[0]
            kv.version = ver + 1
        kv.key = key
        kv.mod_revision = rev
        kv.value = value
        if lease:
            kv.lease = lease
        # Revisions only grow, so every key bucket write is an append (LMDB's fast path);
        # put() answers False instead of raising if the order were ever broken.
        if not txn.put(_pack_rev(rev, b"_", sub), kv.SerializeToString(), db=db, append=True):
            raise _out_of_order(rev, sub)
        s._index.put(key, Revision(rev, sub))
        self._events.append(ev)
        self._changed = True
        return prev

    def delete_range(self, key: bytes, end: bytes | None = None) -> list[KeyValue]:
        """Delete the live keys in the range; returns their last versions, in key order."""
        self._check_open()
        s = self._s
        s._tally[2] += 1
        keys, revs = s._index.range(key, end, self.rev)
        if not keys:
            return []
        rev = self._begin_rev + 1
        db = s._key_db
        txn = self._txn
        get = txn.get
        put = txn.put
        index = s._index
        events = self._events
        deleted: list[KeyValue] = []
        for k, r in zip(keys, revs, strict=True):
            sub = len(events)
            ev = Event(type=_DELETE)
            ev.kv.key = k
            ev.kv.mod_revision = rev
            prev = ev.prev_kv
            raw = get(_pack_rev(r[0], b"_", r[1]), db=db)
            if raw is None:
                raise _missing(r)
            prev.ParseFromString(raw)
            # The stored tombstone holds just the key (what restore needs).
            tomb = KeyValue(key=k).SerializeToString()
            if not put(_pack_rev(rev, b"_", sub) + b"t", tomb, db=db, append=True):
                raise _out_of_order(rev, sub)
            index.tombstone(k, Revision(rev, sub))
            events.append(ev)
            deleted.append(prev)
        self._changed = True
        return deleted

    def end(self) -> list[Event]:
        """Publish the changes (one new revision if any) and return their events in order.

        Unlike etcd's store events, these carry ``prev_kv`` whenever there was one (the store
        read it anyway); the watch layer drops it for watchers that did not ask for it.
        """
        if self._ended:
            return self._events
        s = self._s
        try:
            if self._ci is not None:
                tx = s._b.current_batch
                assert tx is not None
                s._save_consistent_index(tx, self._ci)
            if self._changed:
                s._current_rev = self._begin_rev + 1
        except BaseException:
            self._fail()
            raise
        self._ended = True
        s._txn = None
        if not s._grouped:
            s._count()
        try:
            s._b.end_batch()
        except BaseException:
            s._broken = True
            raise
        if self._changed and s.change_sink is not None:
            s.change_sink.on_events(self._events)
        return self._events

    def _fail(self) -> None:
        s = self._s
        self._ended = True
        s._txn = None
        if not s._grouped:
            s._count()
        if self._changed:
            s._broken = True
        s._b.end_batch(ok=not self._changed)

    def _check_open(self) -> None:
        if self._ended:
            raise StoreClosedError("mvcc: write transaction already ended")
