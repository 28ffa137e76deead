"""The persistent backend: one LMDB environment with etcd's buckets.

LMDB is a copy-on-write B+tree in one memory-mapped file, the same family as etcd's bbolt:
a committed write transaction is atomic, readers never block the writer, and several
processes may read the same file at once (the lock file ``<db>-lock`` coordinates them).

Durability choice. The WAL is the durable source of truth: after a crash the server replays
the WAL from the consistent index recorded in the ``meta`` bucket. So a commit here does not
fsync by default (``sync_each_commit=False`` opens LMDB with ``sync=False, metasync=False``),
and :meth:`Backend.sync` flushes explicitly; the store calls it after a compaction, and the
server calls it before it releases WAL segments (snapshot points) and on close.

What survives what:

- process crash (kill -9): every committed transaction. LMDB has written its pages into the
  OS page cache before ``commit()`` returns, and the kernel writes them out later.
- OS crash / power loss with ``sync_each_commit=False``: the transactions since the last
  :meth:`sync` may be lost, and LMDB gives no ordering guarantee for unsynced pages, so the
  file can be damaged; recover it from a peer's snapshot (or keep the option on).
- with ``sync_each_commit=True`` (``sync=True, metasync=False``): one fdatasync per commit;
  an OS crash can lose the last commit but never damages the file (LMDB's documented ACI
  guarantee for NOMETASYNC).

One write transaction is open at a time: :meth:`Backend.batch` opens it, nested ``batch()``
calls share it, and the outermost exit commits (or aborts when an exception escapes). This
is how one Ready's committed entries cost one LMDB commit.

Other processes may open the same file with ``readonly=True`` (the writer must have created
it): they read committed states without blocking the writer.

Not thread-safe: one thread drives a Backend.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import lmdb
from crc32c import crc32c

KEY = b"key"
META = b"meta"
LEASE = b"lease"
AUTH = b"auth"
AUTH_USERS = b"authUsers"
AUTH_ROLES = b"authRoles"
MEMBERS = b"members"
MEMBERS_REMOVED = b"members_removed"
CLUSTER = b"cluster"
ALARM = b"alarm"

BUCKETS: tuple[bytes, ...] = (
    KEY,
    META,
    LEASE,
    AUTH,
    AUTH_USERS,
    AUTH_ROLES,
    MEMBERS,
    MEMBERS_REMOVED,
    CLUSTER,
    ALARM,
)

# etcd's default storage quota is 2 GiB; the map must be at least as large as the quota.
DEFAULT_MAP_SIZE = 2 * 1024**3 + 512 * 1024**2
DEFAULT_MAX_READERS = 1024
LOCK_SUFFIX = "-lock"  # LMDB's lock file beside the data file (subdir=False)


class Tx:
    """A transaction over the named buckets (read-only or the batch's write transaction)."""

    __slots__ = ("_dbs", "txn")

    def __init__(self, txn: lmdb.Transaction[bytes], dbs: dict[bytes, Any]) -> None:
        self.txn = txn
        self._dbs = dbs

    def db(self, bucket: bytes) -> Any:
        """The LMDB handle of a bucket, for hot paths that call ``txn`` directly."""
        return self._dbs[bucket]

    def get(self, bucket: bytes, key: bytes) -> bytes | None:
        return self.txn.get(key, db=self._dbs[bucket])

    def get_many(self, bucket: bytes, keys: Iterable[bytes]) -> list[bytes | None]:
        get = self.txn.get
        db = self._dbs[bucket]
        return [get(k, db=db) for k in keys]

    def range(
        self, bucket: bytes, start: bytes, end: bytes | None = None, limit: int = 0
    ) -> list[tuple[bytes, bytes]]:
        """Items with ``start <= key < end`` (end None: to the last key), at most ``limit``."""
        out: list[tuple[bytes, bytes]] = []
        with self.txn.cursor(db=self._dbs[bucket]) as cur:
            if not cur.set_range(start):
                return out
            for k, v in cur.iternext():
                if end is not None and k >= end:
                    break
                out.append((k, v))
                if limit and len(out) >= limit:
                    break
        return out

    def keys(self, bucket: bytes, start: bytes, end: bytes, limit: int) -> list[bytes]:
        """Keys with ``start <= key < end``, at most ``limit`` (values are not read)."""
        out: list[bytes] = []
        with self.txn.cursor(db=self._dbs[bucket]) as cur:
            if not cur.set_range(start):
                return out
            for k in cur.iternext(keys=True, values=False):
                if k >= end:
                    break
                out.append(k)
                if len(out) >= limit:
                    break
        return out

    def items(self, bucket: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every item of a bucket in key order (valid while the transaction is open)."""
        with self.txn.cursor(db=self._dbs[bucket]) as cur:
            yield from cur.iternext()

    def put(self, bucket: bytes, key: bytes, value: bytes) -> None:
        self.txn.put(key, value, db=self._dbs[bucket])

    def append(self, bucket: bytes, key: bytes, value: bytes) -> None:
        """Put a key known to sort after every key of the bucket (cheaper in LMDB)."""
        self.txn.put(key, value, db=self._dbs[bucket], append=True)

    def delete(self, bucket: bytes, key: bytes) -> bool:
        return self.txn.delete(key, db=self._dbs[bucket])


def replace_data_file(new: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Move ``new`` over the closed database file at ``path``, with a fresh lock file.

    Readers in other processes may still have the old file open: the lock file records the
    state of the file it was made with, so a new file needs a new lock file (the old one lives
    on, unlinked, for those readers until they reopen by path).
    """
    os.replace(new, path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.fspath(path) + LOCK_SUFFIX)


class Backend:
    """One LMDB file holding etcd's buckets; see the module docstring for durability."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        map_size: int = DEFAULT_MAP_SIZE,
        sync_each_commit: bool = False,
        max_readers: int = DEFAULT_MAX_READERS,
        readonly: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        parent = os.path.dirname(self.path)
        if parent and not readonly:
            os.makedirs(parent, exist_ok=True)
        self.map_size = map_size
        self.readonly = readonly
        self._sync_each_commit = sync_each_commit
        self._max_readers = max_readers
        self._dbs: dict[bytes, Any] = {}
        self.env = self._open_env()
        self._size: int | None = None
        self._in_use: int | None = None
        # Runs each outermost commit (it is handed the commit to call); None: commit directly.
        self.commit_hook: Callable[[Callable[[], None]], None] | None = None
        self._batch: Tx | None = None
        self._depth = 0
        self._failed = False
        self.closed = False

    def _open_env(self) -> lmdb.Environment:
        env = lmdb.open(
            self.path,
            map_size=self.map_size,
            subdir=False,  # the path names the data file itself, as etcd's member/snap/db
            max_dbs=len(BUCKETS) + 2,
            sync=self._sync_each_commit,
            metasync=False,
            lock=True,  # readers in other processes coordinate through <db>-lock
            readahead=False,  # random access over a file that may exceed RAM
            meminit=False,
            max_readers=self._max_readers,
            max_spare_txns=4,
            readonly=self.readonly,
        )
        dbs = self._dbs  # filled in place: replace_file() keeps the same dict
        if self.readonly:
            # Another process reading the file: the writer has made the buckets. (A handle
            # opened inside a read transaction of ours would die with it.)
            for name in BUCKETS:
                dbs[name] = env.open_db(name, create=False)
        else:
            with env.begin(write=True) as txn:
                for name in BUCKETS:
                    dbs[name] = env.open_db(name, txn=txn, create=True)
        return env

    def replace_file(self, path: str | os.PathLike[str]) -> None:
        """Swap the database file for the one at ``path`` (a defragmented copy), in place.

        No transaction may be open, in any thread; handles from ``db()`` must be fetched
        again (KVStore.backend_replaced). Holders of this Backend object need not change.
        """
        if self._batch is not None or self.readonly:
            raise RuntimeError("replace_file() needs a writable backend outside a batch")
        self.env.close()
        replace_data_file(path, self.path)
        self.env = self._open_env()
        self._size = self._in_use = None

    def replace_file_keeping_old(self, path: str | os.PathLike[str], old: str) -> None:
        """replace_file(), but the old file survives as ``old`` (a hard link) for the caller
        to unlink later: freeing a large file's pages can take a good part of a second."""
        if os.path.exists(old):
            os.unlink(old)
        os.link(self.path, old)
        self.replace_file(path)

    # -- transactions --------------------------------------------------------------------

    @property
    def current_batch(self) -> Tx | None:
        """The open write transaction, if any (reads must go through it to see its writes)."""
        return self._batch

    def begin_batch(self) -> Tx:
        """Open (or join) the write transaction; pair every call with end_batch()."""
        if self._batch is None:
            self._batch = Tx(self.env.begin(write=True), self._dbs)
            self._failed = False
        self._depth += 1
        return self._batch

    def end_batch(self, ok: bool = True) -> None:
        """Leave the write transaction; the outermost call commits it.

        A failure anywhere inside (``ok=False``) aborts the whole transaction at the end.
        """
        tx = self._batch
        if tx is None:
            raise RuntimeError("end_batch() without begin_batch()")
        if not ok:
            self._failed = True
        self._depth -= 1
        if self._depth:
            return
        self._batch = None
        if self._failed:
            tx.txn.abort()
        elif self.commit_hook is not None:
            self.commit_hook(tx.txn.commit)  # e.g. timed for etcd_disk_backend_commit_duration
        else:
            tx.txn.commit()
        # the file grows, and pages fill or free, only when a write transaction commits
        self._size = self._in_use = None

    @contextmanager
    def batch(self) -> Iterator[Tx]:
        """The write transaction; nested calls share it, the outermost exit commits."""
        tx = self.begin_batch()
        try:
            yield tx
        except BaseException:
            self.end_batch(ok=False)
            raise
        self.end_batch()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction over the last committed state (or the open batch, to see it)."""
        if self._batch is not None:
            yield self._batch
            return
        txn = self.env.begin()
        try:
            yield Tx(txn, self._dbs)
        finally:
            txn.abort()

    def db(self, bucket: bytes) -> Any:
        return self._dbs[bucket]

    def begin_read(self) -> lmdb.Transaction[bytes]:
        """A raw read transaction for hot paths; the caller must abort() it."""
        return self.env.begin()

    # -- maintenance ---------------------------------------------------------------------

    def sync(self) -> None:
        """Flush every committed transaction to disk."""
        self.env.sync(True)

    def size(self) -> int:
        """Bytes of the data file (etcd's db size); cached between commits, because the quota
        check asks on every write request."""
        size = self._size
        if size is None:
            size = self._size = os.stat(self.path).st_size
        return size

    def size_in_use(self) -> int:
        """Bytes of the pages that hold data (the rest of the file is free pages); cached
        between commits like size()."""
        in_use = self._in_use
        if in_use is None:
            psize, pages = 0, 2  # two meta pages
            with self.env.begin() as txn:
                for stat in [txn.stat(db) for db in self._dbs.values()] + [self.env.stat()]:
                    psize = stat["psize"]
                    pages += stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
            in_use = self._in_use = pages * psize
        return in_use

    def hash(self, ignore: Iterable[tuple[bytes, bytes]] = ()) -> int:
        """Checksum of every bucket (names, keys, values) in byte order: CRC-32C, as etcd's
        Hash. The buckets are etcdpy's, not bbolt's, so it agrees between etcdpy members only."""
        skip = set(ignore)
        h = 0
        with self.read() as tx:
            for name in sorted(BUCKETS):
                h = crc32c(name, h)
                for k, v in tx.items(name):
                    if (name, k) in skip:
                        continue
                    h = crc32c(v, crc32c(k, h))
        return h

    def copy_to(self, path: str | os.PathLike[str], compact: bool = True) -> None:
        """Write a consistent copy of the committed state to ``path`` (a new file).

        ``compact`` leaves the free pages out, so this is also how to defragment: copy, then
        reopen the copy in place of the original. Readers and the writer may go on meanwhile.
        """
        self.env.copy(os.fspath(path), compact=compact)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if not self.readonly:
                self.env.sync(True)
            self.env.close()
