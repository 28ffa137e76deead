"""The write-ahead log of the raft state: entries, hard states and snapshot markers, appended to
a directory of segment files and fsynced before raft may act on them.

Files are named ``<seq>-<index>.wal`` (16 hex digits each): ``seq`` counts segments from 0 and
``index`` is the first entry index the segment may hold, so a reader that starts from a snapshot
at index N only needs the last segment whose index is <= N and the ones after it. Each segment
is preallocated (zeros), starts with a CRC record (the chain value so far), the metadata record
and, for all but the first, the latest hard state. The record format and the rules that tell a
torn tail from corruption are in ``wal_record``.

Lifecycle (as etcd's WAL): ``WAL.create`` a new log, or ``WAL.open`` an existing one at a
snapshot marker and call ``read_all`` once; then ``save`` / ``save_snapshot``; ``release_lock_to``
once a snapshot makes older segments useless and ``purge`` to delete them; ``close``.

One writer only: a WAL object is not thread-safe, and every segment it holds is locked with
``flock`` so that a second process cannot open the same log for writing.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from etcdpy.raft.codec import decode_entry_from, decode_hard_state, encode_hard_state
from etcdpy.raft.types import EMPTY_HARD_STATE, Entry, HardState
from etcdpy.wal.fsync_dir import fsync_dir
from etcdpy.wal.record import (
    SNAPSHOT_MARKER,
    RecordType,
    SegmentDecoder,
    WalCorruptionError,
    WalError,
    frame_crc_record,
    frame_entries,
    frame_record,
)

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "WAL",
    "MetadataConflictError",
    "SliceOutOfRangeError",
    "SnapshotMismatchError",
    "SnapshotNotFoundError",
    "WalCorruptionError",
    "WalError",
    "WalExistsError",
    "WalLockedError",
    "WalNotFoundError",
    "segment_name",
]

DEFAULT_SEGMENT_SIZE: Final = 64 * 1000 * 1000  # etcd's SegmentSizeBytes
SnapshotMarker = tuple[int, int]  # (index, term)

_NAME_RE: Final = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")


class WalExistsError(WalError):
    """``create`` found a log already in the directory."""


class WalNotFoundError(WalError):
    """No usable segment files (missing, or a gap in the sequence numbers)."""


class WalLockedError(WalError):
    """Another process holds a segment of this log."""


class SnapshotNotFoundError(WalError):
    """The log has no marker for the snapshot it was opened at."""


class SnapshotMismatchError(WalError):
    """The log has a marker at the snapshot's index but with another term."""


class MetadataConflictError(WalError):
    """Two segments carry different metadata."""


class SliceOutOfRangeError(WalError):
    """An entry's index leaves a gap after the entries read so far."""


def segment_name(seq: int, index: int) -> str:
    return f"{seq:016x}-{index:016x}.wal"


def _parse_name(name: str) -> tuple[int, int] | None:
    match = _NAME_RE.match(name)
    if match is None:
        return None
    return int(match.group(1), 16), int(match.group(2), 16)


def _segment_names(dir_path: Path) -> list[tuple[int, int, str]]:
    """The segment files of a directory as (seq, index, name), in sequence order."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(dir_path):
            parsed = _parse_name(name)
            if parsed is not None:
                found.append((parsed[0], parsed[1], name))
    found.sort()
    return found


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise WalLockedError(f"wal: {path} is locked by another process") from None


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


@dataclass(slots=True)
class _Segment:
    seq: int
    index: int  # the first entry index this segment may hold
    name: str
    fd: int  # held open (and locked) until released


class WAL:
    """An open write-ahead log. Build it with ``WAL.create`` or ``WAL.open``."""

    def __init__(
        self, dir_path: Path, segments: list[_Segment], segment_size: int, no_fsync: bool
    ) -> None:
        self.dir = dir_path
        self.segment_size = segment_size
        self._no_fsync = no_fsync
        self._segments = segments  # held segments, oldest first; the last one is written
        self._offset = 0  # write offset in the tail segment
        self._crc = 0  # chain CRC after the last record written
        self._metadata = b""
        self._state = EMPTY_HARD_STATE  # last hard state saved (repeated at each segment head)
        self._last_index = 0  # index of the last entry saved (names the next segment)
        self._start: SnapshotMarker = (0, 0)  # where read_all starts
        self._ready = False  # false between open and read_all
        self._failed: BaseException | None = None
        self._closed = False

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        dir_path: Path,
        metadata: bytes,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        unsafe_no_fsync: bool = False,
    ) -> WAL:
        """Create a new log holding ``metadata`` and an empty snapshot marker (0, 0).

        The first segment is written in ``<dir>.tmp`` and the directory renamed into place, so a
        crash never leaves a half-made log behind.
        """
        dir_path = Path(dir_path)
        if _segment_names(dir_path):
            raise WalExistsError(f"wal: {dir_path} already holds a log")
        if dir_path.exists() and any(dir_path.iterdir()):
            raise WalError(f"wal: {dir_path} is not empty; its files are not ours to delete")
        tmp = dir_path.with_name(dir_path.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        name = segment_name(0, 0)
        fd = os.open(tmp / name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        wal = cls(dir_path, [_Segment(0, 0, name, fd)], segment_size, unsafe_no_fsync)
        try:
            _lock(fd, tmp / name)
            os.posix_fallocate(fd, 0, segment_size)
            parts: list[bytes] = []
            frame_crc_record(parts, 0)
            crc = frame_record(parts, RecordType.METADATA, metadata, 0)
            crc = frame_record(parts, RecordType.SNAPSHOT, SNAPSHOT_MARKER.pack(0, 0), crc)
            wal._append(parts, crc, sync=True)
            if dir_path.exists():
                os.rmdir(dir_path)  # empty, checked above
            os.rename(tmp, dir_path)
            wal._fsync_dir(dir_path.parent)
        except BaseException:
            os.close(fd)
            raise
        wal._metadata = metadata
        wal._ready = True
        return wal

    @classmethod
    def open(
        cls,
        dir_path: Path,
        snapshot_marker: SnapshotMarker | None,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        unsafe_no_fsync: bool = False,
    ) -> WAL:
        """Open the log for reading from ``snapshot_marker`` (None: from the beginning), then
        writing. Call ``read_all`` before anything else."""
        dir_path = Path(dir_path)
        start = snapshot_marker or (0, 0)
        names = _select_segments(dir_path, start[0])
        segments: list[_Segment] = []
        try:
            for seq, index, name in names:
                fd = os.open(dir_path / name, os.O_RDWR)
                segments.append(_Segment(seq, index, name, fd))
                _lock(fd, dir_path / name)
        except BaseException:
            for segment in segments:
                os.close(segment.fd)
            raise
        # We hold the locks now, so a *.wal.tmp is a segment a crash left half made.
        for stale in dir_path.glob("*.wal.tmp"):
            stale.unlink(missing_ok=True)
        wal = cls(dir_path, segments, segment_size, unsafe_no_fsync)
        wal._start = start
        return wal

    @staticmethod
    def exists(dir_path: Path) -> bool:
        return bool(_segment_names(Path(dir_path)))

    # -- reading ------------------------------------------------------------------------------

    def read_all(self) -> tuple[bytes, HardState, list[Entry]]:
        """Read every record from the opening snapshot on: the metadata, the last hard state and
        the entries after the snapshot index (a later entry at an index replaces the earlier
        one and everything after it: a new leader overwrote them).

        A torn tail is cut off the last segment; corruption raises ``WalCorruptionError``.
        Afterwards the log is positioned for appending.
        """
        if self._ready:
            raise WalError("wal: read_all called twice or on a created log")
        start_index, start_term = self._start
        metadata: bytes | None = None
        state = EMPTY_HARD_STATE
        entries: list[Entry] = []
        matched = False
        decoder = SegmentDecoder()
        last_index = 0
        buf = b""
        for position, segment in enumerate(self._segments):
            buf = _read_fd(segment.fd)
            last = position == len(self._segments) - 1
            for record_type, begin, end in decoder.decode(buf, segment.name, last=last):
                if record_type == RecordType.ENTRY:
                    entry, entry_end = decode_entry_from(buf, begin)
                    if entry_end != end:
                        raise WalCorruptionError(f"wal: bad entry record in {segment.name}")
                    index = entry.index
                    if index > start_index:
                        keep = index - start_index - 1
                        if keep > len(entries):
                            raise SliceOutOfRangeError(
                                f"wal: entry {index} leaves a gap after index "
                                f"{start_index + len(entries)}"
                            )
                        del entries[keep:]
                        entries.append(entry)
                    last_index = index
                elif record_type == RecordType.HARD_STATE:
                    state = decode_hard_state(buf[begin:end])
                elif record_type == RecordType.METADATA:
                    data = buf[begin:end]
                    if metadata is not None and metadata != data:
                        raise MetadataConflictError("wal: conflicting metadata found")
                    metadata = data
                elif record_type == RecordType.SNAPSHOT:
                    index, term = SNAPSHOT_MARKER.unpack(buf[begin:end])
                    if index == start_index:
                        if term != start_term:
                            raise SnapshotMismatchError(
                                f"wal: snapshot mismatch at index {index}: "
                                f"log has term {term}, expected {start_term}"
                            )
                        matched = True
                    last_index = max(last_index, index)
        if not matched:
            raise SnapshotNotFoundError(f"wal: snapshot not found (index {start_index})")
        assert metadata is not None  # every segment starts with crc + metadata records
        assert decoder.crc is not None
        self._metadata = metadata
        self._state = state
        self._last_index = last_index
        self._crc = decoder.crc
        self._offset = decoder.valid_end
        self._reset_tail(len(buf))
        self._ready = True
        return metadata, state, entries

    def _reset_tail(self, old_size: int) -> None:
        """Zero everything after the last valid record of the tail (torn garbage, if any), so
        that new records are never followed by stale bytes."""
        fd = self._segments[-1].fd
        os.ftruncate(fd, self._offset)
        size = max(old_size, self.segment_size)
        if size > self._offset:
            os.posix_fallocate(fd, self._offset, size - self._offset)
        self._fsync(fd)

    # -- writing ------------------------------------------------------------------------------

    def save(self, hard_state: HardState | None, entries: Sequence[Entry], sync: bool) -> None:
        """Append ``entries`` then ``hard_state`` (if given and not empty) with one write(),
        and one fdatasync when ``sync``: the group commit of everything in one Ready."""
        self._check_writable()
        has_state = hard_state is not None and hard_state != EMPTY_HARD_STATE
        if not entries and not has_state:
            return
        parts: list[bytes] = []
        crc = frame_entries(parts, entries, self._crc)
        if has_state:
            assert hard_state is not None
            crc = frame_record(parts, RecordType.HARD_STATE, encode_hard_state(hard_state), crc)
        self._append(parts, crc, sync)
        if entries:
            self._last_index = entries[-1].index
        if has_state:
            assert hard_state is not None
            self._state = hard_state
        if self._offset >= self.segment_size:
            self._cut()

    def save_snapshot(self, index: int, term: int) -> None:
        """Record that a snapshot at (index, term) was saved; always fsynced."""
        self._check_writable()
        parts: list[bytes] = []
        crc = frame_record(parts, RecordType.SNAPSHOT, SNAPSHOT_MARKER.pack(index, term), self._crc)
        self._append(parts, crc, sync=True)
        self._last_index = max(self._last_index, index)
        if self._offset >= self.segment_size:
            self._cut()

    def sync(self) -> None:
        self._check_writable()
        self._fdatasync(self._segments[-1].fd)

    def _append(self, parts: list[bytes], crc: int, sync: bool) -> None:
        fd = self._segments[-1].fd
        data = b"".join(parts)
        try:
            _write_all(fd, data, self._offset)
            if sync:
                self._fdatasync(fd)
        except BaseException as exc:
            # What reached the file is unknown now; refuse to write after it.
            self._failed = exc
            raise
        self._offset += len(data)
        self._crc = crc

    def _cut(self) -> None:
        """Close the full tail segment and continue in a new one.

        The new file is prepared under a temporary name (CRC, metadata, hard state), fsynced and
        renamed, so that a segment under its final name always starts with a valid head.
        """
        try:
            self._start_next_segment()
        except BaseException as exc:
            self._failed = exc  # the tail may be truncated or the new file half made
            raise

    def _start_next_segment(self) -> None:
        tail = self._segments[-1]
        os.ftruncate(tail.fd, self._offset)
        self._fsync(tail.fd)
        seq = tail.seq + 1
        index = self._last_index + 1
        name = segment_name(seq, index)
        tmp_path = self.dir / (name + ".tmp")
        tmp_path.unlink(missing_ok=True)
        fd = os.open(tmp_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _lock(fd, tmp_path)
            os.posix_fallocate(fd, 0, self.segment_size)
            parts: list[bytes] = []
            frame_crc_record(parts, self._crc)
            crc = frame_record(parts, RecordType.METADATA, self._metadata, self._crc)
            if self._state != EMPTY_HARD_STATE:
                state = encode_hard_state(self._state)
                crc = frame_record(parts, RecordType.HARD_STATE, state, crc)
            data = b"".join(parts)
            _write_all(fd, data, 0)
            self._fdatasync(fd)
            os.rename(tmp_path, self.dir / name)
            self._fsync_dir(self.dir)
        except BaseException:
            os.close(fd)
            raise
        self._segments.append(_Segment(seq, index, name, fd))
        self._offset = len(data)
        self._crc = crc

    # Durability barriers; skipped with unsafe_no_fsync (tests, simulations: never production).
    def _fdatasync(self, fd: int) -> None:
        if not self._no_fsync:
            os.fdatasync(fd)

    def _fsync(self, fd: int) -> None:
        if not self._no_fsync:
            os.fsync(fd)

    def _fsync_dir(self, path: Path) -> None:
        if not self._no_fsync:
            fsync_dir(path)

    def _check_writable(self) -> None:
        if self._closed:
            raise WalError("wal: closed")
        if self._failed is not None:
            raise WalError("wal: an earlier write failed; the log must be reopened") from (
                self._failed
            )
        if not self._ready:
            raise WalError("wal: call read_all before writing")

    # -- releasing old segments ---------------------------------------------------------------

    def release_lock_to(self, index: int) -> None:
        """Stop holding the segments that only hold entries before ``index`` (a snapshot at
        ``index`` covers them); ``purge`` may then delete them. The tail is always kept."""
        first_needed = len(self._segments) - 1
        for position, segment in enumerate(self._segments):
            if segment.index >= index:
                first_needed = position - 1
                break
        for segment in self._segments[: max(first_needed, 0)]:
            os.close(segment.fd)
        del self._segments[: max(first_needed, 0)]

    def purge(self, max_files: int) -> list[Path]:
        """Delete the oldest segment files, down to ``max_files``, but none this log still holds.
        Return the removed paths."""
        held = {segment.name for segment in self._segments}
        names = _segment_names(self.dir)
        removed: list[Path] = []
        for _, _, name in names[: max(len(names) - max_files, 0)]:
            if name in held:
                break
            path = self.dir / name
            path.unlink()
            removed.append(path)
        if removed:
            self._fsync_dir(self.dir)
        return removed

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        if self._segments and self._ready and self._failed is None:
            self._fdatasync(self._segments[-1].fd)
        for segment in self._segments:
            os.close(segment.fd)
        self._segments = []
        self._closed = True

    def __enter__(self) -> WAL:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- introspection (tests, metrics) -------------------------------------------------------

    @property
    def last_index(self) -> int:
        return self._last_index

    @property
    def tail_offset(self) -> int:
        """Bytes used in the segment being written."""
        return self._offset

    @property
    def segment_names(self) -> list[str]:
        """The segments this log holds, oldest first."""
        return [segment.name for segment in self._segments]


def snapshot_markers(dir_path: Path) -> list[SnapshotMarker]:
    """The snapshot markers of the whole log whose index is covered by the last hard state's
    commit (a snapshot can only be of committed entries), oldest first. The caller loads the
    newest snapshot file that matches one of them. Reads without locking or repairing."""
    dir_path = Path(dir_path)
    names = _select_segments(dir_path, None)
    markers: list[SnapshotMarker] = []
    state = EMPTY_HARD_STATE
    decoder = SegmentDecoder()
    for position, (_, _, name) in enumerate(names):
        buf = (dir_path / name).read_bytes()
        last = position == len(names) - 1
        for record_type, begin, end in decoder.decode(buf, name, last=last):
            if record_type == RecordType.SNAPSHOT:
                markers.append(SNAPSHOT_MARKER.unpack(buf[begin:end]))
            elif record_type == RecordType.HARD_STATE:
                state = decode_hard_state(buf[begin:end])
    return [(index, term) for index, term in markers if index <= state.commit]


def _select_segments(dir_path: Path, index: int | None) -> list[tuple[int, int, str]]:
    """The segments to read from ``index`` on (None: all): the last one whose first index is
    <= ``index`` and every later one, which must have consecutive sequence numbers."""
    names = _segment_names(dir_path)
    if not names:
        raise WalNotFoundError(f"wal: no segment files in {dir_path}")
    first = 0
    if index is not None:
        candidates = [i for i, (_, first_index, _) in enumerate(names) if first_index <= index]
        if not candidates:
            raise WalNotFoundError(f"wal: no segment holds index {index} in {dir_path}")
        first = candidates[-1]
    selected = names[first:]
    for (seq, _, _), (next_seq, _, name) in itertools.pairwise(selected):
        if next_seq != seq + 1:
            raise WalNotFoundError(f"wal: segment sequence broken before {name}")
    return selected


def _read_fd(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)
