"""Defragmentation that holds writes only briefly.

etcd copies the whole bbolt file into a new one while holding every write. Here:

1. A compacted copy of the backend is written by LMDB in a worker thread, inside a read
   transaction: writes go on meanwhile (they land in the old file only).
2. Then, on the event loop (which is where applies run, so nothing is applied meanwhile), the
   copy catches up: the key bucket is append-only by revision, so only the revisions after the
   copy's last one are added; the other buckets are small and are copied whole.
3. The file is swapped under the same Backend object (Backend.replace_file); the old file is
   unlinked after the hold (freeing a large file's pages takes a while).

Writes wait only for steps 2 and 3, whose cost follows the writes made during step 1, not the
size of the database. A compaction that runs during step 1 deletes revisions the copy still
has, so the copy is made again after it (or, failing twice, under the hold).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Protocol

import structlog

from etcdpy.mvcc import backend as bk
from etcdpy.mvcc.backend import Backend
from etcdpy.mvcc.watchable_store import WatchableStore
from etcdpy.observability.metrics import ServerMetrics
from etcdpy.wal.fsync_dir import fsync_dir

log = structlog.get_logger(__name__)

COPY_ATTEMPTS = 2


class DefragHost(Protocol):
    """What a defragmentation needs of the member (an EtcdServer): its backend, the store
    on it (told of the swap), and the counters."""

    @property
    def backend(self) -> Backend: ...

    @property
    def kv(self) -> WatchableStore: ...

    @property
    def metrics(self) -> ServerMetrics: ...


def copy_and_sync(backend: Backend, path: Path) -> None:
    """The compacted copy, flushed to disk (so the hold does not wait for its fsync)."""
    backend.copy_to(str(path), True)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _compaction_state(server: DefragHost) -> tuple[int, bool]:
    return server.kv.compact_revision, server.kv.compaction_pending


def catch_up(source: Backend, copy_path: Path) -> int:
    """Brings the copy at ``copy_path`` level with ``source``; returns key entries added."""
    copy = Backend(copy_path, map_size=source.map_size)
    added = 0
    try:
        with source.read() as stx, copy.batch() as ctx:
            key_db = ctx.db(bk.KEY)
            with ctx.txn.cursor(db=key_db) as cur:
                last = cur.key() if cur.last() else b""
            with stx.txn.cursor(db=stx.db(bk.KEY)) as src:
                found = src.set_range(last) if last else src.first()
                if found and src.key() == last:
                    found = src.next()
                while found:
                    ctx.txn.put(src.key(), src.value(), db=key_db, append=True)
                    added += 1
                    found = src.next()
            for bucket in bk.BUCKETS:
                if bucket == bk.KEY:
                    continue
                ctx.txn.drop(ctx.db(bucket), delete=False)
                for k, v in stx.items(bucket):
                    ctx.put(bucket, k, v)
    finally:
        copy.close()
    return added


async def defragment(server: DefragHost, lock: asyncio.Lock) -> tuple[float, float]:
    """Defragments the backend; returns (seconds in all, seconds writes were held)."""
    backend = server.backend
    metrics = server.metrics
    started = time.perf_counter()
    copy_path = Path(backend.path + ".defrag")
    loop = asyncio.get_running_loop()
    async with lock:
        metrics.defrag_inflight = 1
        try:
            size_before = backend.size()
            copied = False
            for _attempt in range(COPY_ATTEMPTS):
                while server.kv.compaction_pending:
                    await asyncio.sleep(0.05)
                before = _compaction_state(server)
                copy_path.unlink(missing_ok=True)
                await loop.run_in_executor(None, copy_and_sync, backend, copy_path)
                if _compaction_state(server) == before:
                    copied = True
                    break
            held_from = time.perf_counter()
            # From here to the swap nothing awaits: no apply, range or compaction runs.
            if not copied:
                copy_path.unlink(missing_ok=True)
                copy_and_sync(backend, copy_path)
            added = catch_up(backend, copy_path)
            old_path = backend.path + ".old"
            backend.replace_file_keeping_old(copy_path, old_path)
            server.kv.backend_replaced()
            held = time.perf_counter() - held_from
            fsync_dir(Path(backend.path).parent)
            await loop.run_in_executor(None, os.unlink, old_path)
        finally:
            metrics.defrag_inflight = 0
            copy_path.unlink(missing_ok=True)
            Path(f"{copy_path}-lock").unlink(missing_ok=True)
    took = time.perf_counter() - started
    metrics.defrag.observe(took)
    log.info(
        "finished defragment",
        took=f"{took:.3f}s",
        writes_held=f"{held * 1000:.1f}ms",
        caught_up_revisions=added,
        db_size_before=size_before,
        db_size_after=backend.size(),
    )
    return took, held
