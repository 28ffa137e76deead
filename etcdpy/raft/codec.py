"""Compact binary encoding of the raft data types, for the WAL, the snapshot files and the peer
transport.

The layout is our own (etcdpy talks raft only to etcdpy), little-endian, built from precompiled
``struct.Struct`` objects. It was measured against protobuf (upb backend) on this machine and is
several times faster to encode and about 1.3x faster to decode, because most of the time in
Python goes into building objects, not into parsing bytes.

Layouts (integers are unsigned, ``u64`` unless said otherwise):

    Entry            term, index, type:u8, len:u32, data
    HardState        term, vote, commit
    ConfState        n_voters:u32, n_learners:u32, n_outgoing:u32, n_next:u32, auto_leave:u8,
                     then the four id lists
    Snapshot         index, term, ConfState, len, data
    Message          type:u8, to, from, term, log_term, index, commit, reject:u8, reject_hint,
                     n_entries:u32, len_context:u32, has_snapshot:u8,
                     then the entries, the context, the snapshot (if any)
    message batch    count:u32, then the messages back to back

Decoding never trusts its input: truncated or malformed bytes raise ``CodecError`` (a
``ValueError``), never ``struct.error`` or ``IndexError``. This module does no I/O.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Sequence
from typing import Final

from etcdpy.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)


class CodecError(ValueError):
    """The bytes are not a valid encoding (truncated, trailing garbage or unknown enum value)."""


ENTRY_HEADER: Final = struct.Struct("<QQBI")
"""term, index, type, data length: the head of an encoded entry (the data follows it)."""
_ENTRY: Final = ENTRY_HEADER
_HARD_STATE: Final = struct.Struct("<QQQ")
_CONF_STATE: Final = struct.Struct("<IIIIB")
_SNAPSHOT_HEAD: Final = struct.Struct("<QQ")
_SNAPSHOT_DATA_LEN: Final = struct.Struct("<Q")
_MESSAGE: Final = struct.Struct("<BQQQQQQBQIIB")
_COUNT: Final = struct.Struct("<I")

ENTRY_HEADER_SIZE: Final = _ENTRY.size
HARD_STATE_SIZE: Final = _HARD_STATE.size

# Lookups by wire value; a missing key means an unknown value (KeyError -> CodecError).
_ENTRY_TYPES: Final = {t.value: t for t in EntryType}
_MESSAGE_TYPES: Final = {t.value: t for t in MessageType}

# Entries are decoded by the thousand (WAL replay, append messages): building them through the
# frozen dataclass __init__ costs about twice as much as setting the slots directly. Entry has
# no __post_init__, so both paths give equal objects.
_new = object.__new__
if tuple(f.name for f in dataclasses.fields(Entry)) != ("term", "index", "type", "data"):
    # A new field would be left unset by the fast path below: update it with the field.
    raise ImportError("etcdpy.raft.codec: Entry's fields changed; update its codec")


def _slot_setter(name: str) -> Callable[[Entry, object], None]:
    setter: Callable[[Entry, object], None] = Entry.__dict__[name].__set__
    return setter


_set_term = _slot_setter("term")
_set_index = _slot_setter("index")
_set_type = _slot_setter("type")
_set_data = _slot_setter("data")


def _make_entry(term: int, index: int, entry_type: EntryType, data: bytes) -> Entry:
    entry: Entry = _new(Entry)
    _set_term(entry, term)
    _set_index(entry, index)
    _set_type(entry, entry_type)
    _set_data(entry, data)
    return entry


# ---------------------------------------------------------------------------------------------
# Entry


def encode_entry(entry: Entry) -> bytes:
    data = entry.data
    return _ENTRY.pack(entry.term, entry.index, entry.type, len(data)) + data


def encode_entries(entries: Sequence[Entry]) -> bytes:
    """Many entries in one buffer: count, then the entries back to back."""
    parts = [_COUNT.pack(len(entries))]
    _append_entries(parts, entries)
    return b"".join(parts)


def _append_entries(parts: list[bytes], entries: Sequence[Entry]) -> None:
    pack = _ENTRY.pack
    append = parts.append
    for entry in entries:
        data = entry.data
        append(pack(entry.term, entry.index, entry.type, len(data)))
        append(data)


def decode_entry(buf: bytes) -> Entry:
    entry, end = decode_entry_from(buf, 0)
    _expect_end(buf, end)
    return entry


def decode_entry_from(buf: bytes, offset: int) -> tuple[Entry, int]:
    """Decode one entry at ``offset``; return it and the offset just after it."""
    try:
        term, index, kind, size = _ENTRY.unpack_from(buf, offset)
        start = offset + _ENTRY.size
        end = start + size
        if end > len(buf):
            raise CodecError("truncated entry data")
        return _make_entry(term, index, _ENTRY_TYPES[kind], buf[start:end]), end
    except (struct.error, KeyError) as exc:
        raise CodecError(f"bad entry: {exc}") from None


def decode_entries(buf: bytes) -> list[Entry]:
    try:
        (count,) = _COUNT.unpack_from(buf, 0)
    except struct.error as exc:
        raise CodecError(f"bad entry batch: {exc}") from None
    entries, end = _decode_entries_from(buf, _COUNT.size, count)
    _expect_end(buf, end)
    return entries


def _decode_entries_from(buf: bytes, offset: int, count: int) -> tuple[list[Entry], int]:
    unpack = _ENTRY.unpack_from
    head = _ENTRY.size
    types = _ENTRY_TYPES
    entries: list[Entry] = []
    append = entries.append
    try:
        for _ in range(count):
            term, index, kind, size = unpack(buf, offset)
            offset += head
            entry: Entry = _new(Entry)
            _set_term(entry, term)
            _set_index(entry, index)
            _set_type(entry, types[kind])
            _set_data(entry, buf[offset : offset + size])
            append(entry)
            offset += size
    except (struct.error, KeyError) as exc:
        raise CodecError(f"bad entry: {exc}") from None
    # A short data slice cannot be seen inside the loop; the running offset tells.
    if offset > len(buf):
        raise CodecError("truncated entry data")
    return entries, offset


# ---------------------------------------------------------------------------------------------
# HardState


def encode_hard_state(hs: HardState) -> bytes:
    return _HARD_STATE.pack(hs.term, hs.vote, hs.commit)


def decode_hard_state(buf: bytes) -> HardState:
    if len(buf) != _HARD_STATE.size:
        raise CodecError(f"hard state must be {_HARD_STATE.size} bytes, got {len(buf)}")
    term, vote, commit = _HARD_STATE.unpack(buf)
    return HardState(term=term, vote=vote, commit=commit)


# ---------------------------------------------------------------------------------------------
# ConfState, Snapshot


def _append_conf_state(parts: list[bytes], cs: ConfState) -> None:
    lists = (cs.voters, cs.learners, cs.voters_outgoing, cs.learners_next)
    parts.append(_CONF_STATE.pack(*(len(ids) for ids in lists), cs.auto_leave))
    for ids in lists:
        if ids:
            parts.append(struct.pack(f"<{len(ids)}Q", *ids))


def _decode_conf_state_from(buf: bytes, offset: int) -> tuple[ConfState, int]:
    *counts, auto_leave = _CONF_STATE.unpack_from(buf, offset)
    offset += _CONF_STATE.size
    if auto_leave > 1:
        raise CodecError("bad auto_leave flag")
    if offset + 8 * sum(counts) > len(buf):
        raise CodecError("truncated conf state")
    lists: list[tuple[int, ...]] = []
    for count in counts:
        lists.append(struct.unpack_from(f"<{count}Q", buf, offset))
        offset += 8 * count
    voters, learners, outgoing, learners_next = lists
    cs = ConfState(
        voters=voters,
        learners=learners,
        voters_outgoing=outgoing,
        learners_next=learners_next,
        auto_leave=bool(auto_leave),
    )
    return cs, offset


def encode_conf_state(cs: ConfState) -> bytes:
    parts: list[bytes] = []
    _append_conf_state(parts, cs)
    return b"".join(parts)


def decode_conf_state(buf: bytes) -> ConfState:
    try:
        cs, end = _decode_conf_state_from(buf, 0)
    except struct.error as exc:
        raise CodecError(f"bad conf state: {exc}") from None
    _expect_end(buf, end)
    return cs


def _append_snapshot(parts: list[bytes], snap: Snapshot) -> None:
    meta = snap.metadata
    parts.append(_SNAPSHOT_HEAD.pack(meta.index, meta.term))
    _append_conf_state(parts, meta.conf_state)
    parts.append(_SNAPSHOT_DATA_LEN.pack(len(snap.data)))
    parts.append(snap.data)


def _decode_snapshot_from(buf: bytes, offset: int) -> tuple[Snapshot, int]:
    index, term = _SNAPSHOT_HEAD.unpack_from(buf, offset)
    cs, offset = _decode_conf_state_from(buf, offset + _SNAPSHOT_HEAD.size)
    (size,) = _SNAPSHOT_DATA_LEN.unpack_from(buf, offset)
    offset += _SNAPSHOT_DATA_LEN.size
    end = offset + size
    if end > len(buf):
        raise CodecError("truncated snapshot data")
    meta = SnapshotMetadata(conf_state=cs, index=index, term=term)
    return Snapshot(data=buf[offset:end], metadata=meta), end


def encode_snapshot(snap: Snapshot) -> bytes:
    parts: list[bytes] = []
    _append_snapshot(parts, snap)
    return b"".join(parts)


def decode_snapshot(buf: bytes) -> Snapshot:
    try:
        snap, end = _decode_snapshot_from(buf, 0)
    except struct.error as exc:
        raise CodecError(f"bad snapshot: {exc}") from None
    _expect_end(buf, end)
    return snap


# ---------------------------------------------------------------------------------------------
# Message


def _append_message(parts: list[bytes], msg: Message) -> None:
    snap = msg.snapshot
    parts.append(
        _MESSAGE.pack(
            msg.type,
            msg.to,
            msg.from_,
            msg.term,
            msg.log_term,
            msg.index,
            msg.commit,
            msg.reject,
            msg.reject_hint,
            len(msg.entries),
            len(msg.context),
            snap is not None,
        )
    )
    if msg.entries:
        _append_entries(parts, msg.entries)
    if msg.context:
        parts.append(msg.context)
    if snap is not None:
        _append_snapshot(parts, snap)


def decode_message_from(buf: bytes, offset: int) -> tuple[Message, int]:
    """Decode one message at ``offset``; return it and the offset just after it."""
    try:
        (
            kind,
            to,
            from_,
            term,
            log_term,
            index,
            commit,
            reject,
            reject_hint,
            n_entries,
            context_len,
            has_snapshot,
        ) = _MESSAGE.unpack_from(buf, offset)
        offset += _MESSAGE.size
        if reject > 1 or has_snapshot > 1:
            raise CodecError("bad message flag")
        entries: list[Entry] = []
        if n_entries:
            entries, offset = _decode_entries_from(buf, offset, n_entries)
        context = b""
        if context_len:
            context = buf[offset : offset + context_len]
            offset += context_len
            if offset > len(buf):
                raise CodecError("truncated message context")
        snapshot = None
        if has_snapshot:
            snapshot, offset = _decode_snapshot_from(buf, offset)
        # Positional arguments: measurably faster than keywords for this 12-field dataclass.
        msg = Message(
            _MESSAGE_TYPES[kind],
            to,
            from_,
            term,
            log_term,
            index,
            tuple(entries),
            commit,
            snapshot,
            bool(reject),
            reject_hint,
            context,
        )
    except (struct.error, KeyError) as exc:
        raise CodecError(f"bad message: {exc}") from None
    return msg, offset


def encode_message(msg: Message) -> bytes:
    parts: list[bytes] = []
    _append_message(parts, msg)
    return b"".join(parts)


def decode_message(buf: bytes) -> Message:
    msg, end = decode_message_from(buf, 0)
    _expect_end(buf, end)
    return msg


def encode_messages(msgs: Sequence[Message]) -> bytes:
    """Many messages in one buffer (one frame for the transport): count, then the messages."""
    parts = [_COUNT.pack(len(msgs))]
    for msg in msgs:
        _append_message(parts, msg)
    return b"".join(parts)


def decode_messages(buf: bytes) -> list[Message]:
    try:
        (count,) = _COUNT.unpack_from(buf, 0)
    except struct.error as exc:
        raise CodecError(f"bad message batch: {exc}") from None
    offset = _COUNT.size
    msgs: list[Message] = []
    for _ in range(count):
        msg, offset = decode_message_from(buf, offset)
        msgs.append(msg)
    _expect_end(buf, offset)
    return msgs


def _expect_end(buf: bytes, end: int) -> None:
    if end != len(buf):
        raise CodecError(f"{len(buf) - end} trailing bytes")
