"""Revisions and their on-disk encoding.

Every change to the key space has a revision ``(main, sub)``: ``main`` is shared by all the
changes of one write transaction, ``sub`` numbers the changes inside it. The key bucket of the
backend is keyed by the encoded revision, so its byte order must equal the revision order:

    8 bytes big-endian main | b"_" | 8 bytes big-endian sub [| b"t" for a tombstone]

This is the layout etcd keeps in bbolt, so a dump of either store reads the same.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

REV_BYTES_LEN = 17  # main (8) + "_" + sub (8)
MARKED_REV_BYTES_LEN = REV_BYTES_LEN + 1
TOMBSTONE_MARK = b"t"

_PACK = struct.Struct(">Q1sQ")
_pack = _PACK.pack
_unpack_from = _PACK.unpack_from

# Upper bound of any revision; sorts after every real one (and after its tombstone mark).
MAX_MAIN = 2**63 - 1


class Revision(NamedTuple):
    """A point in the history of the key space; tuple order is revision order."""

    main: int
    sub: int = 0

    def to_bytes(self) -> bytes:
        return _pack(self.main, b"_", self.sub)

    def to_tombstone_bytes(self) -> bytes:
        return _pack(self.main, b"_", self.sub) + TOMBSTONE_MARK


def encode(main: int, sub: int = 0, tombstone: bool = False) -> bytes:
    """Backend key of a revision; ``tombstone`` appends the deletion mark."""
    b = _pack(main, b"_", sub)
    return b + TOMBSTONE_MARK if tombstone else b


def decode(b: bytes) -> Revision:
    """Revision of a backend key (with or without the tombstone mark)."""
    main, _, sub = _unpack_from(b)
    return Revision(main, sub)


def is_tombstone(b: bytes) -> bool:
    """Whether a backend key marks a deletion."""
    return len(b) == MARKED_REV_BYTES_LEN and b[REV_BYTES_LEN] == 0x74  # ord("t")
