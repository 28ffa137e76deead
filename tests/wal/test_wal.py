"""The write-ahead log: round trips, overwrite semantics, torn tails, corruption, segments."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.raft.codec import decode_hard_state
from etcdpy.raft.types import Entry, EntryType, HardState
from etcdpy.wal.log import (
    WAL,
    SliceOutOfRangeError,
    SnapshotMismatchError,
    SnapshotNotFoundError,
    WalCorruptionError,
    WalError,
    WalExistsError,
    WalLockedError,
    WalNotFoundError,
    segment_name,
    snapshot_markers,
)
from etcdpy.wal.record import SECTOR_SIZE, RecordType, SegmentDecoder

SEGMENT = 8192
META = b"node=1 cluster=7"


def entry(index: int, term: int = 1, size: int = 20) -> Entry:
    # Never all zeros: a zero sector inside a record is how a torn write looks.
    data = bytes((index * 7 + i) % 251 + 1 for i in range(size))
    return Entry(term=term, index=index, type=EntryType.NORMAL, data=data)


@pytest.fixture
def wal_dir(tmp_path: Path) -> Path:
    return tmp_path / "member" / "wal"


def create(wal_dir: Path, no_fsync: bool = False) -> WAL:
    return WAL.create(wal_dir, META, segment_size=SEGMENT, unsafe_no_fsync=no_fsync)


def reopen(
    wal_dir: Path, marker: tuple[int, int] | None = None, no_fsync: bool = False
) -> tuple[WAL, bytes, HardState, list[Entry]]:
    wal = WAL.open(wal_dir, marker, segment_size=SEGMENT, unsafe_no_fsync=no_fsync)
    try:
        meta, hs, ents = wal.read_all()
    except BaseException:
        wal.close()
        raise
    return wal, meta, hs, ents


def read_back(
    wal_dir: Path, marker: tuple[int, int] | None = None, no_fsync: bool = False
) -> tuple[HardState, list[Entry]]:
    wal, meta, hs, ents = reopen(wal_dir, marker, no_fsync)
    wal.close()
    assert meta == META
    return hs, ents


def tail_path(wal_dir: Path) -> Path:
    return wal_dir / sorted(p.name for p in wal_dir.glob("*.wal"))[-1]


def test_create_write_reopen_read_back(wal_dir: Path) -> None:
    with create(wal_dir) as wal:
        wal.save(HardState(term=1, vote=1, commit=0), [entry(1), entry(2)], sync=True)
        wal.save(HardState(term=1, vote=1, commit=2), [entry(3)], sync=False)
        wal.save(None, [entry(4)], sync=True)
    hs, ents = read_back(wal_dir)
    assert hs == HardState(term=1, vote=1, commit=2)
    assert ents == [entry(1), entry(2), entry(3), entry(4)]


def test_new_log_reads_empty(wal_dir: Path) -> None:
    create(wal_dir).close()
    assert read_back(wal_dir) == (HardState(), [])
    assert not wal_dir.with_name("wal.tmp").exists()


def test_create_refuses_an_existing_log(wal_dir: Path) -> None:
    create(wal_dir).close()
    with pytest.raises(WalExistsError):
        create(wal_dir)


def test_create_uses_an_empty_directory_but_never_deletes_foreign_files(wal_dir: Path) -> None:
    wal_dir.mkdir(parents=True)
    create(wal_dir).close()
    assert read_back(wal_dir) == (HardState(), [])
    other = wal_dir.parent / "other"
    other.mkdir()
    (other / "keep.txt").write_text("not a wal")
    with pytest.raises(WalError, match="not empty"):
        WAL.create(other, META)
    assert (other / "keep.txt").exists()


def test_open_removes_a_half_made_segment(wal_dir: Path) -> None:
    create(wal_dir).close()
    stale = wal_dir / (segment_name(1, 1) + ".tmp")
    stale.write_bytes(b"partial")
    assert read_back(wal_dir) == (HardState(), [])
    assert not stale.exists()


def test_appending_after_reopen_continues_the_log(wal_dir: Path) -> None:
    with create(wal_dir) as wal:
        wal.save(HardState(1, 1, 1), [entry(1)], sync=True)
    wal, *_ = reopen(wal_dir)
    with wal:
        wal.save(HardState(2, 0, 2), [entry(2, term=2)], sync=True)
    assert read_back(wal_dir) == (HardState(2, 0, 2), [entry(1), entry(2, term=2)])


def test_empty_save_writes_nothing(wal_dir: Path) -> None:
    with create(wal_dir) as wal:
        before = wal.tail_offset
        wal.save(None, [], sync=True)
        wal.save(HardState(), [], sync=True)
        assert wal.tail_offset == before


def test_later_entries_replace_conflicting_ones(wal_dir: Path) -> None:
    # A new leader (term 2) overwrote the uncommitted tail 3..5 of the old one.
    with create(wal_dir) as wal:
        wal.save(None, [entry(i) for i in range(1, 6)], sync=True)
        wal.save(None, [entry(3, term=2), entry(4, term=2)], sync=True)
    _, ents = read_back(wal_dir)
    assert ents == [entry(1), entry(2), entry(3, term=2), entry(4, term=2)]


def test_gap_in_indexes_is_an_error(wal_dir: Path) -> None:
    with create(wal_dir) as wal:
        wal.save(None, [entry(1), entry(3)], sync=True)
    with pytest.raises(SliceOutOfRangeError):
        read_back(wal_dir)


def test_open_at_snapshot_returns_entries_after_it(wal_dir: Path) -> None:
    with create(wal_dir) as wal:
        wal.save(HardState(1, 1, 6), [entry(i) for i in range(1, 11)], sync=True)
        wal.save_snapshot(5, 1)
    hs, ents = read_back(wal_dir, (5, 1))
    assert hs == HardState(1, 1, 6)
    assert ents == [entry(i) for i in range(6, 11)]
    with pytest.raises(SnapshotMismatchError):
        read_back(wal_dir, (5, 2))
    with pytest.raises(SnapshotNotFoundError):
        read_back(wal_dir, (7, 1))


def test_snapshot_markers_are_limited_to_committed_ones(wal_dir: Path) -> None:
    with create(wal_dir) as wal:
        wal.save(HardState(1, 1, 4), [entry(i) for i in range(1, 9)], sync=True)
        wal.save_snapshot(3, 1)
        wal.save_snapshot(6, 1)  # beyond the commit index on disk: not usable
    assert snapshot_markers(wal_dir) == [(0, 0), (3, 1)]


def test_second_writer_is_locked_out(wal_dir: Path) -> None:
    with create(wal_dir), pytest.raises(WalLockedError):
        WAL.open(wal_dir, None)


# -- torn tails --------------------------------------------------------------------------------


def write_three_single_entry_saves(wal_dir: Path, size: int) -> list[int]:
    """Return the tail offsets before and after each save (record boundaries)."""
    with create(wal_dir) as wal:
        offsets = [wal.tail_offset]
        for i in (1, 2, 3):
            wal.save(None, [entry(i, size=size)], sync=True)
            offsets.append(wal.tail_offset)
    return offsets


def test_torn_tail_at_every_byte_is_cut_off(wal_dir: Path) -> None:
    size = 40
    bounds = write_three_single_entry_saves(wal_dir, size)
    path = tail_path(wal_dir)
    pristine = path.read_bytes()
    for cut in range(bounds[1], bounds[3]):
        path.write_bytes(pristine[:cut])  # the file ends inside a record
        wal, _, _, ents = reopen(wal_dir, no_fsync=True)
        expected = [entry(i, size=size) for i in (1, 2, 3) if bounds[i] <= cut]
        assert ents == expected, cut
        # The log goes on from the recovered prefix.
        next_index = len(expected) + 1
        wal.save(None, [entry(next_index, term=2)], sync=True)
        wal.close()
        assert read_back(wal_dir, no_fsync=True)[1] == [*expected, entry(next_index, term=2)], cut


def test_torn_sectors_in_preallocated_space_are_cut_off(wal_dir: Path) -> None:
    # A power loss keeps whole sectors or none: the lost ones read as zeros.
    size = 3 * SECTOR_SIZE
    bounds = write_three_single_entry_saves(wal_dir, size)
    path = tail_path(wal_dir)
    pristine = path.read_bytes()
    first_sector = (bounds[2] // SECTOR_SIZE + 1) * SECTOR_SIZE
    for cut in [bounds[2], *range(first_sector, bounds[3], SECTOR_SIZE)]:
        torn = pristine[:cut] + bytes(len(pristine) - cut)
        assert len(torn) == SEGMENT
        path.write_bytes(torn)
        _, ents = read_back(wal_dir, no_fsync=True)
        assert ents == [entry(1, size=size), entry(2, size=size)], cut


def test_lost_middle_sector_of_an_unsynced_batch_drops_the_rest(wal_dir: Path) -> None:
    # Pages of one write() may reach the disk out of order: a zero sector in the middle of the
    # batch, valid bytes after it. Everything from the torn record on is dropped.
    with create(wal_dir) as wal:
        wal.save(None, [entry(1)], sync=True)
        start = wal.tail_offset
        wal.save(None, [entry(i, size=SECTOR_SIZE) for i in range(2, 7)], sync=False)
    path = tail_path(wal_dir)
    data = bytearray(path.read_bytes())
    hole = (start // SECTOR_SIZE + 2) * SECTOR_SIZE
    data[hole : hole + SECTOR_SIZE] = bytes(SECTOR_SIZE)
    path.write_bytes(bytes(data))
    _, ents = read_back(wal_dir)
    assert 1 <= len(ents) < 6
    assert ents == [entry(1)] + [entry(i, size=SECTOR_SIZE) for i in range(2, len(ents) + 1)]


# -- corruption --------------------------------------------------------------------------------


def flipped(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x40
    return bytes(out)


def test_flipped_byte_in_the_middle_is_an_error(wal_dir: Path) -> None:
    bounds = write_three_single_entry_saves(wal_dir, 40)
    path = tail_path(wal_dir)
    pristine = path.read_bytes()
    for offset in range(0, bounds[2]):  # every byte of every record before the last one
        path.write_bytes(flipped(pristine, offset))
        with pytest.raises(WalCorruptionError):
            read_back(wal_dir, no_fsync=True)
    path.write_bytes(pristine)
    assert len(read_back(wal_dir)[1]) == 3


def cut_segments(wal_dir: Path, count: int) -> WAL:
    wal = create(wal_dir)
    index = 1
    while len(list(wal_dir.glob("*.wal"))) < count:
        wal.save(HardState(1, 1, index), [entry(index, size=300)], sync=False)
        index += 1
    return wal


def test_flipped_byte_in_an_earlier_segment_is_an_error(wal_dir: Path) -> None:
    cut_segments(wal_dir, 3).close()
    first = wal_dir / segment_name(0, 0)
    data = first.read_bytes()
    first.write_bytes(flipped(data, len(data) - 10))  # the last record of a full segment
    with pytest.raises(WalCorruptionError):
        read_back(wal_dir)


def record_ends(path: Path) -> list[tuple[int, int]]:
    """(type, end offset) of every record of a segment file."""
    data = path.read_bytes()
    return [(t, end) for t, _, end in SegmentDecoder().decode(data, path.name, last=True)]


def test_an_earlier_segment_is_never_torn(wal_dir: Path) -> None:
    cut_segments(wal_dir, 3).close()
    first = wal_dir / segment_name(0, 0)
    first.write_bytes(first.read_bytes()[:-1])
    with pytest.raises(WalCorruptionError):
        read_back(wal_dir)


def test_records_lost_at_a_segment_end_break_the_crc_chain(wal_dir: Path) -> None:
    cut_segments(wal_dir, 3).close()
    first = wal_dir / segment_name(0, 0)
    ends = record_ends(first)
    first.write_bytes(first.read_bytes()[: ends[-2][1]])  # a whole record vanished
    with pytest.raises(WalCorruptionError, match="crc mismatch"):
        read_back(wal_dir)


# -- segments ----------------------------------------------------------------------------------


def segment_files(wal_dir: Path) -> list[str]:
    return sorted(p.name for p in wal_dir.glob("*.wal"))


def test_segment_cut_names_and_read_back(wal_dir: Path) -> None:
    wal = cut_segments(wal_dir, 4)
    last = wal.last_index
    wal.close()
    names = segment_files(wal_dir)
    assert [int(n[:16], 16) for n in names] == [0, 1, 2, 3]
    first_indexes = [int(n[17:33], 16) for n in names]
    assert first_indexes[0] == 0
    assert first_indexes == sorted(first_indexes)
    assert all(os.path.getsize(wal_dir / n) <= SEGMENT + 400 for n in names[:-1])
    assert os.path.getsize(wal_dir / names[-1]) == SEGMENT  # the tail stays preallocated
    hs, ents = read_back(wal_dir)
    assert ents == [entry(i, size=300) for i in range(1, last + 1)]
    assert hs == HardState(1, 1, last)


def test_release_and_purge_keep_what_a_snapshot_needs(wal_dir: Path) -> None:
    wal = cut_segments(wal_dir, 4)
    last = wal.last_index
    names = segment_files(wal_dir)
    snap_index = int(names[2][17:33], 16) + 1  # inside the third segment
    wal.save_snapshot(snap_index, 1)
    assert wal.purge(max_files=1) == []  # everything is still held
    wal.release_lock_to(snap_index)
    assert wal.segment_names == names[2:]
    removed = wal.purge(max_files=1)
    assert [p.name for p in removed] == names[:2]
    wal.close()
    assert segment_files(wal_dir) == names[2:]
    hs, ents = read_back(wal_dir, (snap_index, 1))
    assert ents == [entry(i, size=300) for i in range(snap_index + 1, last + 1)]
    assert hs == HardState(1, 1, last)  # the newest hard state survives the purge
    with pytest.raises(WalNotFoundError):
        read_back(wal_dir, (0, 0))  # the segment of the empty marker is gone


def test_missing_middle_segment_is_detected(wal_dir: Path) -> None:
    cut_segments(wal_dir, 3).close()
    (wal_dir / segment_files(wal_dir)[1]).unlink()
    with pytest.raises(WalNotFoundError):
        read_back(wal_dir)


def test_a_new_segment_starts_with_crc_metadata_and_hard_state(wal_dir: Path) -> None:
    wal = cut_segments(wal_dir, 2)
    state = HardState(1, 1, wal.last_index)
    wal.close()
    tail = tail_path(wal_dir)
    assert int(tail.name[17:33], 16) == state.commit + 1
    data = tail.read_bytes()
    records = list(SegmentDecoder().decode(data, tail.name, last=True))
    assert [t for t, _, _ in records] == [
        RecordType.CRC,
        RecordType.METADATA,
        RecordType.HARD_STATE,
    ]
    _, begin, end = records[2]
    assert decode_hard_state(data[begin:end]) == state


@pytest.fixture(autouse=True)
def _no_leaked_fds() -> Iterator[None]:
    before = len(os.listdir("/proc/self/fd"))
    yield
    assert len(os.listdir("/proc/self/fd")) == before
