"""The record framing of the write-ahead log, and the decoder that tells a torn tail from
corruption.

Every record is a 16-byte frame header followed by its body::

    body_len:u32  body_crc:u32  type:u8  pad:3  header_crc:u32     (little-endian)

* ``body_crc`` is chained: CRC-32 of the body, seeded with the ``body_crc`` of the record before
  it (across segment files too), so a lost, reordered or replayed record breaks the chain.
  The chain value at the end of a segment is written as a ``CRC`` record at the start of the
  next one, which lets a reader start at any segment.
* ``header_crc`` is the CRC-32 of the first 12 header bytes. It protects the length on its own:
  a flipped length bit is reported as corruption instead of making the reader swallow the
  following records as one "torn" record.

Torn writes: a crash can leave the last write() partly on disk. Unwritten parts of a
preallocated file read as zeros, in whole sectors (512 bytes); a truncated file just ends.
So a record of the last segment that fails its checks is *torn* when it runs past the end of
the file or one of its sectors is all zeros; the log ends just before it. Any other failure,
and any failure in an earlier segment (those were complete and fsynced before the next one was
created), is corruption and raised, never skipped.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from enum import IntEnum
from typing import Final

from etcdpy.raft.codec import ENTRY_HEADER
from etcdpy.raft.types import Entry


class WalError(Exception):
    """Base of the WAL errors."""


class WalCorruptionError(WalError):
    """A record in the middle of the log fails its checks: the log cannot be trusted."""


class RecordType(IntEnum):
    METADATA = 1  # opaque bytes from the creator (node id, cluster id), at the head of each segment
    ENTRY = 2  # one raft entry (codec encoding)
    HARD_STATE = 3  # a raft HardState (codec encoding)
    CRC = 4  # the chain CRC carried over from the previous segment; first record of a segment
    SNAPSHOT = 5  # a snapshot marker: index, term


FRAME: Final = struct.Struct("<IIB3xI")
_FRAME_HEAD: Final = struct.Struct("<IIB3x")  # the part covered by header_crc
_U32: Final = struct.Struct("<I")
SNAPSHOT_MARKER: Final = struct.Struct("<QQ")  # index, term
SECTOR_SIZE: Final = 512
_ZERO_FRAME: Final = bytes(FRAME.size)
_RECORD_TYPES: Final = frozenset(int(t) for t in RecordType)


def frame_record(parts: list[bytes], record_type: RecordType, body: bytes, crc: int) -> int:
    """Append one framed record to ``parts``; return the new chain CRC."""
    crc = zlib.crc32(body, crc)
    head = _FRAME_HEAD.pack(len(body), crc, record_type)
    parts.append(head)
    parts.append(_U32.pack(zlib.crc32(head)))
    parts.append(body)
    return crc


def frame_crc_record(parts: list[bytes], chain_crc: int) -> None:
    """Append the CRC record that starts a segment; its own CRC is not chained."""
    body = _U32.pack(chain_crc)
    head = _FRAME_HEAD.pack(len(body), zlib.crc32(body), RecordType.CRC)
    parts.append(head)
    parts.append(_U32.pack(zlib.crc32(head)))
    parts.append(body)


def frame_entries(parts: list[bytes], entries: Sequence[Entry], crc: int) -> int:
    """Append one ENTRY record per entry; return the new chain CRC.

    The hot path of the WAL: the entry header and data go into ``parts`` separately, so the data
    is copied once, by the final join.
    """
    pack_entry = ENTRY_HEADER.pack
    pack_head = _FRAME_HEAD.pack
    pack_u32 = _U32.pack
    crc32 = zlib.crc32
    append = parts.append
    entry_type = RecordType.ENTRY
    head_size = ENTRY_HEADER.size
    for entry in entries:
        data = entry.data
        entry_head = pack_entry(entry.term, entry.index, entry.type, len(data))
        crc = crc32(data, crc32(entry_head, crc))
        head = pack_head(head_size + len(data), crc, entry_type)
        append(head)
        append(pack_u32(crc32(head)))
        append(entry_head)
        append(data)
    return crc


def is_torn(buf: bytes, start: int, end: int) -> bool:
    """Whether a failed record spanning file offsets [start, end) looks like an unfinished write."""
    if end > len(buf):
        return True
    pos = start
    while pos < end:
        stop = min(end, (pos // SECTOR_SIZE + 1) * SECTOR_SIZE)
        if buf.count(0, pos, stop) == stop - pos:
            return True
        pos = stop
    return False


class SegmentDecoder:
    """Decodes the records of consecutive segment files, checking the CRC chain across them.

    ``decode`` yields ``(type, body_start, body_end)`` for each valid record of one segment.
    Afterwards ``valid_end`` is the offset just past the last valid record and ``torn`` says
    whether a torn record was found there (only possible in the last segment).
    """

    def __init__(self) -> None:
        self.crc: int | None = None  # None until the first segment's CRC record is read
        self.valid_end = 0
        self.torn = False

    def decode(self, buf: bytes, name: str, *, last: bool) -> Iterator[tuple[int, int, int]]:
        self.valid_end = 0
        self.torn = False
        size = len(buf)
        unpack = FRAME.unpack_from
        head_len = _FRAME_HEAD.size
        frame_len = FRAME.size
        crc32 = zlib.crc32
        offset = 0
        crc = self.crc
        while True:
            if offset + frame_len > size:
                if offset < size and buf.count(0, offset) != size - offset:
                    self._fail(buf, name, offset, offset + frame_len, last, "partial frame")
                break
            body_len, body_crc, record_type, header_crc = unpack(buf, offset)
            if crc32(buf[offset : offset + head_len]) != header_crc:
                if buf[offset : offset + frame_len] == _ZERO_FRAME:
                    break  # the zeros of preallocated space: no more records in this segment
                self._fail(buf, name, offset, offset + frame_len, last, "bad frame header")
                break
            start = offset + frame_len
            end = start + body_len
            if end > size:
                self._fail(buf, name, offset, end, last, "record runs past the end of the file")
                break
            if record_type == RecordType.CRC:
                if offset != 0 or crc32(buf[start:end]) != body_crc or body_len != 4:
                    self._fail(buf, name, offset, end, last, "bad crc record")
                    break
                (carried,) = _U32.unpack_from(buf, start)
                if crc is not None and carried != crc:
                    raise WalCorruptionError(
                        f"wal: crc mismatch: {name} carries {carried:#010x}, "
                        f"the previous segment ended with {crc:#010x}"
                    )
                crc = carried
            else:
                if offset == 0:
                    raise WalCorruptionError(f"wal: {name} does not start with a crc record")
                assert crc is not None
                expected = crc32(buf[start:end], crc)
                if expected != body_crc:
                    self._fail(buf, name, offset, end, last, "crc mismatch")
                    break
                if record_type not in _RECORD_TYPES:
                    raise WalCorruptionError(
                        f"wal: unexpected record type {record_type} in {name} at offset {offset}"
                    )
                crc = expected
            self.crc = crc
            self.valid_end = end
            yield record_type, start, end
            offset = end
        if self.valid_end == 0:
            raise WalCorruptionError(f"wal: {name} has no valid records")

    def _fail(self, buf: bytes, name: str, start: int, end: int, last: bool, what: str) -> None:
        if last and is_torn(buf, start, end):
            self.torn = True
            return
        raise WalCorruptionError(f"wal: {what} in {name} at offset {start}")
