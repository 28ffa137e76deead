"""Snapshot files: round trip, newest valid wins, broken files skipped, purge."""

from __future__ import annotations

from pathlib import Path

import pytest

from etcdpy.raft.types import ConfState, Snapshot, SnapshotMetadata
from etcdpy.wal.snapshotter import (
    SnapshotFileError,
    Snapshotter,
    read_snapshot_file,
    snap_name,
)


def snap(index: int, term: int = 1, data: bytes = b"state") -> Snapshot:
    cs = ConfState(voters=(1, 2, 3), learners=(4,))
    return Snapshot(data=data + bytes([index % 256]), metadata=SnapshotMetadata(cs, index, term))


@pytest.fixture
def snapshotter(tmp_path: Path) -> Snapshotter:
    return Snapshotter(tmp_path)


def test_round_trip(snapshotter: Snapshotter) -> None:
    path = snapshotter.save(snap(10, 2))
    assert (
        path is not None
        and path.name == snap_name(2, 10) == "0000000000000002-000000000000000a.snap"
    )
    assert snapshotter.load() == snap(10, 2)
    assert read_snapshot_file(path) == snap(10, 2)


def test_nothing_saved_loads_none(snapshotter: Snapshotter) -> None:
    assert snapshotter.save(Snapshot()) is None
    assert snapshotter.load() is None
    assert list(snapshotter.dir.iterdir()) == []


def test_newest_wins(snapshotter: Snapshotter) -> None:
    for index, term in [(5, 1), (20, 2), (12, 2)]:
        snapshotter.save(snap(index, term))
    assert snapshotter.load() == snap(20, 2)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_broken_newest_is_skipped_and_renamed(snapshotter: Snapshotter, damage: str) -> None:
    snapshotter.save(snap(5))
    newest = snapshotter.save(snap(9))
    assert newest is not None
    raw = bytearray(newest.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 1
    elif damage == "truncate":
        del raw[-3:]
    else:
        raw.clear()
    newest.write_bytes(bytes(raw))
    with pytest.raises(SnapshotFileError):
        read_snapshot_file(newest)
    assert snapshotter.load() == snap(5)
    assert not newest.exists()
    assert newest.with_name(newest.name + ".broken").exists()


def test_load_newest_available_needs_a_wal_marker(snapshotter: Snapshotter) -> None:
    snapshotter.save(snap(5, 1))
    snapshotter.save(snap(9, 1))  # its WAL marker was lost in a crash
    assert snapshotter.load_newest_available([(0, 0), (5, 1)]) == snap(5, 1)
    assert snapshotter.load_newest_available([(9, 2)]) is None
    assert snapshotter.load_newest_available([(5, 1), (9, 1)]) == snap(9, 1)


def test_purge_keeps_the_newest(snapshotter: Snapshotter) -> None:
    for index in range(1, 7):
        snapshotter.save(snap(index))
    removed = snapshotter.purge(keep=2)
    assert [p.name for p in removed] == [snap_name(1, i) for i in range(1, 5)]
    assert snapshotter.snap_names() == [snap_name(1, 5), snap_name(1, 6)]
    assert snapshotter.purge(keep=2) == []


def test_stale_temp_files_are_removed(snapshotter: Snapshotter) -> None:
    (snapshotter.dir / (snap_name(1, 3) + ".tmp")).write_bytes(b"half")
    assert snapshotter.load() is None
    assert list(snapshotter.dir.iterdir()) == []
