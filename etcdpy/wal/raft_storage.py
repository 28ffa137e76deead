"""The durable raft storage of a member: a raft ``MemoryStorage`` kept in step with the WAL and
the snapshot files, laid out as etcd does::

    <data-dir>/member/wal/   segment files (etcdpy.wal.log)
    <data-dir>/member/snap/  snapshot files (etcdpy.wal.snapshotter)

The raft core reads the ``MemoryStorage`` (``durable.storage``); the raft driver hands every
``Ready`` to ``save_ready`` before it sends the Ready's messages. On restart, the newest snapshot
the WAL knows about is loaded, the WAL is replayed from it and the ``MemoryStorage`` rebuilt.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Final

from etcdpy.raft.storage import MemoryStorage
from etcdpy.raft.types import EMPTY_HARD_STATE, ConfState, HardState, Ready, Snapshot
from etcdpy.wal.log import DEFAULT_SEGMENT_SIZE, WAL, WalError, snapshot_markers
from etcdpy.wal.snapshotter import Snapshotter

_METADATA: Final = struct.Struct("<QQ")  # node id, cluster id
DEFAULT_CATCH_UP_ENTRIES: Final = 5000  # etcd's SnapshotCatchUpEntries
DEFAULT_MAX_WAL_FILES: Final = 5
DEFAULT_MAX_SNAP_FILES: Final = 5


class MemberMismatchError(WalError):
    """The data directory belongs to another member or cluster."""


def wal_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "member" / "wal"


def snap_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "member" / "snap"


class DurableRaftStorage:
    """Use ``DurableRaftStorage.open_or_create``; not thread-safe (the raft driver owns it)."""

    def __init__(
        self,
        wal: WAL,
        snapshotter: Snapshotter,
        storage: MemoryStorage,
        node_id: int,
        cluster_id: int,
        snapshot: Snapshot | None,
    ) -> None:
        self.wal = wal
        self.snapshotter = snapshotter
        self.storage = storage  # what raft's Config(storage=...) gets
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.snapshot = snapshot  # the snapshot loaded at start (the state machine restores it)

    @classmethod
    def open_or_create(
        cls,
        data_dir: Path,
        node_id: int,
        cluster_id: int,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        unsafe_no_fsync: bool = False,
    ) -> tuple[DurableRaftStorage, HardState, bool]:
        """Open the member's raft storage, or create it if there is no WAL yet.

        Returns the storage, the persisted hard state and whether it existed. On an existing
        directory the ids recorded in the WAL win; a non-zero ``node_id`` / ``cluster_id`` that
        differs from them raises ``MemberMismatchError``. ``unsafe_no_fsync`` (etcd's
        ``--unsafe-no-fsync``) skips the WAL's fsyncs: for tests and benchmarks only.
        """
        waldir = wal_dir(data_dir)
        snapdir = snap_dir(data_dir)
        snapdir.mkdir(parents=True, exist_ok=True)
        snapshotter = Snapshotter(snapdir)
        if not WAL.exists(waldir):
            wal = WAL.create(waldir, _METADATA.pack(node_id, cluster_id), segment_size=segment_size)
            durable = cls(wal, snapshotter, MemoryStorage(), node_id, cluster_id, None)
            return durable, EMPTY_HARD_STATE, False

        snap = snapshotter.load_newest_available(snapshot_markers(waldir))
        marker = (snap.metadata.index, snap.metadata.term) if snap is not None else None
        wal = WAL.open(waldir, marker, segment_size=segment_size, unsafe_no_fsync=unsafe_no_fsync)
        try:
            metadata, hard_state, entries = wal.read_all()
            stored_node, stored_cluster = _METADATA.unpack(metadata)
            for name, given, stored in (
                ("member", node_id, stored_node),
                ("cluster", cluster_id, stored_cluster),
            ):
                if given and given != stored:
                    raise MemberMismatchError(
                        f"{data_dir} belongs to {name} {stored:x}, not {given:x}"
                    )
        except BaseException:
            wal.close()
            raise
        storage = MemoryStorage()
        if snap is not None:
            storage.apply_snapshot(snap)
        storage.set_hard_state(hard_state)
        storage.append(entries)
        durable = cls(wal, snapshotter, storage, stored_node, stored_cluster, snap)
        return durable, hard_state, True

    def save_ready(self, rd: Ready) -> None:
        """Make a Ready durable, then visible to raft through the MemoryStorage."""
        self.persist(rd)
        self.stage(rd)

    def persist(self, rd: Ready) -> None:
        """The disk half of save_ready; touches no state raft reads, so it may run in a
        worker thread while the raft core takes new proposals.

        Order matters: a snapshot goes to its file and then to the WAL as a marker before
        anything that follows it in the log; the entries and hard state are written in one
        write (fsynced when the Ready says so, and always with a snapshot, before older WAL
        segments are let go)."""
        snap = rd.snapshot
        has_snapshot = snap is not None and not snap.is_empty()
        if has_snapshot:
            assert snap is not None
            self.snapshotter.save(snap)
            self.wal.save_snapshot(snap.metadata.index, snap.metadata.term)
        self.wal.save(rd.hard_state, rd.entries, sync=rd.must_sync or has_snapshot)

    def stage(self, rd: Ready) -> None:
        """The memory half of save_ready: run on the thread that drives the raft core."""
        snap = rd.snapshot
        if snap is not None and not snap.is_empty():
            self.storage.apply_snapshot(snap)
            self.wal.release_lock_to(snap.metadata.index)
        if rd.hard_state is not None:
            self.storage.set_hard_state(rd.hard_state)
        if rd.entries:
            self.storage.append(rd.entries)

    def create_snapshot(
        self,
        index: int,
        conf_state: ConfState | None,
        data: bytes,
        *,
        catch_up_entries: int = DEFAULT_CATCH_UP_ENTRIES,
    ) -> Snapshot:
        """Snapshot the applied state machine at ``index`` (``data`` is its encoding): save it,
        mark it in the WAL, let older WAL segments go, and compact the in-memory log while
        keeping ``catch_up_entries`` entries for slow followers."""
        snap = self.storage.create_snapshot(index, conf_state, data)
        self.snapshotter.save(snap)
        self.wal.save_snapshot(index, snap.metadata.term)
        self.wal.release_lock_to(index)
        compact_to = max(index - catch_up_entries, 1)
        if compact_to >= self.storage.first_index():  # else already compacted further
            self.storage.compact(compact_to)
        return snap

    def purge(
        self,
        max_wal_files: int = DEFAULT_MAX_WAL_FILES,
        max_snap_files: int = DEFAULT_MAX_SNAP_FILES,
    ) -> list[Path]:
        """Delete old snapshot files and released WAL segments beyond the limits (etcd's
        ``--max-wals`` / ``--max-snapshots``); return what was deleted."""
        return [*self.snapshotter.purge(max_snap_files), *self.wal.purge(max_wal_files)]

    def close(self) -> None:
        self.wal.close()
