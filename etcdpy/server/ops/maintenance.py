"""The server side of the Maintenance service: hashes, alarms and the quota, snapshots.

Attached to EtcdServer as ``server.maintenance``; the API layer calls only this object. What it
needs of the member is ``MaintenanceHost``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import structlog

from etcdpy import errors
from etcdpy.config import ServerConfig
from etcdpy.mvcc.errors import CompactedError, FutureRevError
from etcdpy.pb.etcdserverpb import raft_internal_pb2 as internalpb
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.ops.alarms import ACTIVATE, NOSPACE, AlarmStore
from etcdpy.server.ops.defrag import DefragHost, defragment

log = structlog.get_logger(__name__)

# etcd's snapshotSendBufferSize: the blob size of each Snapshot response.
SNAPSHOT_CHUNK_BYTES = 32 * 1024
# The data file may reach this many times --quota-backend-bytes before NOSPACE, while the pages
# in use stay under the quota (see over_quota; the LMDB map is 2 x the quota: room is left).
DISK_SLACK = 1.5


class MaintenanceHost(DefragHost, Protocol):
    """What maintenance needs of the member (an EtcdServer), beyond a defragmentation's: its
    identity and limits, its data directory (snapshot files), and the log (alarms)."""

    @property
    def config(self) -> ServerConfig: ...

    @property
    def member_id(self) -> int: ...

    @property
    def data_dir(self) -> Path: ...

    async def propose(self, req: internalpb.InternalRaftRequest) -> Any: ...


class Maintenance:
    def __init__(self, server: MaintenanceHost) -> None:
        self._server = server
        self.alarms = AlarmStore(server.backend)
        server.backend.commit_hook = server.metrics.timed_commit
        self._raising_nospace: asyncio.Future[None] | None = None
        # Copies of the backend file (snapshot, defrag) one at a time: a defrag swaps the file.
        self.backend_lock = asyncio.Lock()

    def backend_replaced(self) -> None:
        """The server swapped in another backend file (a snapshot from the leader): its alarm
        bucket is the truth now, and its commits are timed too."""
        server = self._server
        self.alarms.rebind(server.backend)
        server.backend.commit_hook = server.metrics.timed_commit

    # -- hashes --------------------------------------------------------------------------

    def hash(self) -> tuple[int, int]:
        """(hash of the whole backend but the consistent index, current revision)."""
        started = time.perf_counter()
        try:
            return self._server.kv.hash()
        finally:
            self._server.metrics.hash.observe(time.perf_counter() - started)

    def hash_kv(self, revision: int) -> tuple[int, int, int]:
        """(hash of the key space up to ``revision``, that revision, compact revision).

        Members at the same revision and compaction agree; a differing hash means divergence.
        """
        kv = self._server.kv
        started = time.perf_counter()
        try:
            h, compact_rev = kv.hash_kv(revision)
        except CompactedError:  # etcdpy.server.applier.mvcc_error's mapping
            raise errors.Compacted() from None
        except FutureRevError:
            raise errors.FutureRev() from None
        finally:
            self._server.metrics.hash_rev.observe(time.perf_counter() - started)
        return h, revision if revision > 0 else kv.current_revision, compact_rev

    # -- alarms and the quota ------------------------------------------------------------

    async def alarm(self, req: pb.AlarmRequest) -> pb.AlarmResponse:
        resp: pb.AlarmResponse = await self._server.propose(
            internalpb.InternalRaftRequest(alarm=req)
        )
        return resp

    def over_quota(self, cost: int) -> bool:
        """etcd's backendQuota.Available, negated: would ``cost`` more bytes pass the quota?

        etcd counts bbolt's pages up to the high-water mark; an empty etcd holds ~5 pages, an
        empty LMDB file ~14 (copy-on-write leaves freed pages behind that LMDB reuses later),
        so the file's size would eat a small quota before the first write. The quota counts
        the pages that hold data instead (``size_in_use``: an empty store is 6 pages), and,
        so that the disk stays bounded when freed pages cannot be reused yet (a long reader),
        the file itself may grow to DISK_SLACK x the quota."""
        quota = self._server.config.quota_bytes
        if quota is None or cost == 0:
            return False
        backend = self._server.backend
        return backend.size_in_use() + cost >= quota or backend.size() + cost >= DISK_SLACK * quota

    async def raise_nospace(self) -> None:
        """Raise NOSPACE for this member through the log (once, however many writers ask)."""
        if self.alarms.active(NOSPACE):
            return
        pending = self._raising_nospace
        if pending is not None:
            await asyncio.shield(pending)
            return
        loop = asyncio.get_running_loop()
        self._raising_nospace = loop.create_future()
        try:
            req = pb.AlarmRequest(
                action=ACTIVATE,  # type: ignore[arg-type]
                memberID=self._server.member_id,
                alarm=NOSPACE,  # type: ignore[arg-type]
            )
            await self.alarm(req)
        except errors.EtcdError as exc:
            log.warning("cannot raise the NOSPACE alarm", error=exc.message)
        finally:
            self._raising_nospace.set_result(None)
            self._raising_nospace = None

    # -- defragmentation -----------------------------------------------------------------

    async def defragment(self) -> tuple[float, float]:
        """(seconds in all, seconds writes were held); see etcdpy.server.ops.defrag."""
        log.info("starting defragment")
        return await defragment(self._server, self.backend_lock)

    # -- snapshots -----------------------------------------------------------------------

    async def snapshot_chunks(self) -> AsyncIterator[pb.SnapshotResponse]:
        """The backend as etcd streams it: 32 KiB blobs with the bytes remaining, then one
        more response whose blob is the SHA-256 of everything before it."""
        server = self._server
        started = time.perf_counter()
        fd, name = tempfile.mkstemp(prefix=".snapshot-", dir=server.data_dir)
        os.close(fd)
        path = Path(name)
        path.unlink()  # LMDB's copy wants to create the file itself
        try:
            # A read transaction in a worker thread: writers go on meanwhile.
            async with self.backend_lock:
                await asyncio.get_running_loop().run_in_executor(
                    None, server.backend.copy_to, str(path), True
                )
            total = path.stat().st_size
            log.info("sending database snapshot to client", total_bytes=total)
            digest = hashlib.sha256()
            sent = 0
            with path.open("rb") as f:
                while sent < total:
                    blob = f.read(SNAPSHOT_CHUNK_BYTES)
                    if not blob:
                        raise errors.EtcdError("etcdserver: snapshot file shrank while sent")
                    sent += len(blob)
                    digest.update(blob)
                    yield pb.SnapshotResponse(remaining_bytes=total - sent, blob=blob)
            yield pb.SnapshotResponse(remaining_bytes=0, blob=digest.digest())
            took = time.perf_counter() - started
            server.metrics.snapshot.observe(took)
            log.info(
                "successfully sent database snapshot to client",
                total_bytes=total,
                took=f"{took:.3f}s",
            )
        finally:
            path.unlink(missing_ok=True)
