"""DurableRaftStorage: Ready persistence, restart, snapshots received and taken."""

from __future__ import annotations

from pathlib import Path

import pytest

from etcdpy.raft.types import ConfState, Entry, HardState, Ready, Snapshot, SnapshotMetadata
from etcdpy.wal.raft_storage import DurableRaftStorage, MemberMismatchError
from etcdpy.wal.snapshotter import Snapshotter

CS = ConfState(voters=(1, 2, 3))


def ents(lo: int, hi: int, term: int = 1, pad: int = 0) -> tuple[Entry, ...]:
    return tuple(Entry(term=term, index=i, data=b"v%d" % i + b"p" * pad) for i in range(lo, hi + 1))


def open_(
    data_dir: Path, node_id: int = 1, cluster_id: int = 7
) -> tuple[DurableRaftStorage, HardState, bool]:
    return DurableRaftStorage.open_or_create(data_dir, node_id, cluster_id, segment_size=16384)


def test_fresh_directory(tmp_path: Path) -> None:
    durable, hs, existed = open_(tmp_path)
    durable.close()
    assert not existed
    assert hs == HardState()
    assert durable.storage.last_index() == 0
    assert (tmp_path / "member" / "wal").is_dir()
    assert (tmp_path / "member" / "snap").is_dir()


def test_ready_survives_a_restart(tmp_path: Path) -> None:
    durable, _, _ = open_(tmp_path)
    durable.save_ready(Ready(hard_state=HardState(1, 1, 0), entries=ents(1, 3), must_sync=True))
    durable.save_ready(Ready(hard_state=HardState(1, 1, 3), must_sync=False))
    assert durable.storage.entries(1, 4) == list(ents(1, 3))
    assert durable.storage.initial_state()[0] == HardState(1, 1, 3)
    durable.close()

    durable, hs, existed = open_(tmp_path)
    durable.close()
    assert existed
    assert hs == HardState(1, 1, 3)
    assert (durable.node_id, durable.cluster_id) == (1, 7)
    assert durable.storage.initial_state()[0] == hs
    assert durable.storage.entries(1, 4) == list(ents(1, 3))


def test_ids_come_from_the_wal(tmp_path: Path) -> None:
    open_(tmp_path)[0].close()
    durable, _, _ = open_(tmp_path, node_id=0, cluster_id=0)
    durable.close()
    assert (durable.node_id, durable.cluster_id) == (1, 7)
    with pytest.raises(MemberMismatchError, match="member"):
        open_(tmp_path, node_id=2)
    with pytest.raises(MemberMismatchError, match="cluster"):
        open_(tmp_path, cluster_id=8)


def snapshot(index: int, term: int) -> Snapshot:
    return Snapshot(data=b"state@%d" % index, metadata=SnapshotMetadata(CS, index, term))


def test_received_snapshot_replaces_the_log(tmp_path: Path) -> None:
    durable, _, _ = open_(tmp_path)
    durable.save_ready(Ready(hard_state=HardState(1, 0, 2), entries=ents(1, 4), must_sync=True))
    snap = snapshot(10, 2)
    durable.save_ready(
        Ready(hard_state=HardState(2, 0, 10), snapshot=snap, entries=ents(11, 12, term=2))
    )
    assert durable.storage.first_index() == 11
    assert durable.storage.snapshot() == snap
    durable.close()

    durable, hs, _ = open_(tmp_path)
    durable.close()
    assert durable.snapshot == snap
    assert hs == HardState(2, 0, 10)
    assert durable.storage.snapshot() == snap
    assert durable.storage.initial_state()[1] == CS
    assert durable.storage.first_index() == 11
    assert durable.storage.entries(11, 13) == list(ents(11, 12, term=2))


def test_local_snapshot_compacts_and_restarts_from_it(tmp_path: Path) -> None:
    durable, _, _ = open_(tmp_path)
    durable.save_ready(Ready(hard_state=HardState(1, 1, 20), entries=ents(1, 20), must_sync=True))
    snap = durable.create_snapshot(15, CS, b"applied@15", catch_up_entries=5)
    assert snap.metadata == SnapshotMetadata(CS, 15, 1)
    assert durable.storage.first_index() == 11  # 5 entries kept for slow followers
    durable.close()

    durable, hs, _ = open_(tmp_path)
    durable.close()
    assert durable.snapshot == snap
    assert durable.storage.first_index() == 16
    assert durable.storage.entries(16, 21) == list(ents(16, 20))
    assert hs.commit == 20


def test_snapshot_file_without_wal_marker_is_ignored(tmp_path: Path) -> None:
    # A crash after the snapshot file was written but before its WAL marker.
    durable, _, _ = open_(tmp_path)
    durable.save_ready(Ready(hard_state=HardState(1, 1, 8), entries=ents(1, 8), must_sync=True))
    durable.close()
    Snapshotter(tmp_path / "member" / "snap").save(snapshot(8, 1))

    durable, _, _ = open_(tmp_path)
    durable.close()
    assert durable.snapshot is None
    assert durable.storage.entries(1, 9) == list(ents(1, 8))


def test_purge_after_snapshots(tmp_path: Path) -> None:
    durable, _, _ = open_(tmp_path)
    index = 0
    for _ in range(6):
        batch = ents(index + 1, index + 40, pad=200)
        index += 40
        durable.save_ready(Ready(hard_state=HardState(1, 1, index), entries=batch))
        durable.create_snapshot(index, CS, b"s%d" % index, catch_up_entries=10)
    wal_dir = tmp_path / "member" / "wal"
    assert len(list(wal_dir.glob("*.wal"))) > 2
    removed = durable.purge(max_wal_files=1, max_snap_files=2)
    durable.close()
    assert len(list((tmp_path / "member" / "snap").glob("*.snap"))) == 2
    assert any(p.suffix == ".wal" for p in removed)

    durable, hs, _ = open_(tmp_path)
    durable.close()
    assert durable.snapshot is not None and durable.snapshot.metadata.index == index
    assert hs.commit == index
