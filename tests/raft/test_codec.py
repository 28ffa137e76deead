"""Round trips and malformed input for etcdpy.raft.codec."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdpy.raft import codec
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

u64 = st.integers(min_value=0, max_value=2**64 - 1)
ids = st.lists(u64, max_size=5).map(tuple)

entries = st.builds(Entry, u64, u64, st.sampled_from(EntryType), st.binary(max_size=64))
hard_states = st.builds(HardState, u64, u64, u64)
conf_states = st.builds(ConfState, ids, ids, ids, ids, st.booleans())
snapshots = st.builds(
    Snapshot,
    st.binary(max_size=200),
    st.builds(SnapshotMetadata, conf_states, u64, u64),
)
messages = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    to=u64,
    from_=u64,
    term=u64,
    log_term=u64,
    index=u64,
    entries=st.lists(entries, max_size=4).map(tuple),
    commit=u64,
    snapshot=st.none() | snapshots,
    reject=st.booleans(),
    reject_hint=u64,
    context=st.binary(max_size=16),
)


@given(entries)
def test_entry_round_trip(entry: Entry) -> None:
    decoded = codec.decode_entry(codec.encode_entry(entry))
    assert decoded == entry
    assert type(decoded.data) is bytes
    assert type(decoded.type) is EntryType


@given(st.lists(entries, max_size=10))
def test_entry_batch_round_trip(batch: list[Entry]) -> None:
    assert codec.decode_entries(codec.encode_entries(batch)) == batch


@given(hard_states)
def test_hard_state_round_trip(hs: HardState) -> None:
    assert codec.decode_hard_state(codec.encode_hard_state(hs)) == hs


@given(conf_states)
def test_conf_state_round_trip(cs: ConfState) -> None:
    assert codec.decode_conf_state(codec.encode_conf_state(cs)) == cs


@given(snapshots)
def test_snapshot_round_trip(snap: Snapshot) -> None:
    assert codec.decode_snapshot(codec.encode_snapshot(snap)) == snap


@given(messages)
def test_message_round_trip(msg: Message) -> None:
    decoded = codec.decode_message(codec.encode_message(msg))
    assert decoded == msg
    assert type(decoded.type) is MessageType


@given(st.lists(messages, max_size=5))
def test_message_batch_round_trip(msgs: list[Message]) -> None:
    assert codec.decode_messages(codec.encode_messages(msgs)) == msgs


@given(messages, st.data())
def test_truncated_message_is_a_codec_error(msg: Message, data: st.DataObject) -> None:
    buf = codec.encode_message(msg)
    cut = data.draw(st.integers(min_value=0, max_value=len(buf) - 1))
    with pytest.raises(codec.CodecError):
        codec.decode_message(buf[:cut])


@given(st.lists(messages, min_size=1, max_size=3), st.data())
def test_truncated_batch_is_a_codec_error(msgs: list[Message], data: st.DataObject) -> None:
    buf = codec.encode_messages(msgs)
    cut = data.draw(st.integers(min_value=0, max_value=len(buf) - 1))
    with pytest.raises(codec.CodecError):
        codec.decode_messages(buf[:cut])


@given(entries, st.data())
def test_truncated_entry_is_a_codec_error(entry: Entry, data: st.DataObject) -> None:
    buf = codec.encode_entry(entry)
    cut = data.draw(st.integers(min_value=0, max_value=len(buf) - 1))
    with pytest.raises(codec.CodecError):
        codec.decode_entry(buf[:cut])


@given(st.binary(max_size=300))
def test_garbage_never_escapes_as_another_exception(buf: bytes) -> None:
    for decode in (
        codec.decode_message,
        codec.decode_messages,
        codec.decode_entry,
        codec.decode_entries,
        codec.decode_snapshot,
        codec.decode_conf_state,
        codec.decode_hard_state,
    ):
        with contextlib.suppress(codec.CodecError):
            decode(buf)


def test_trailing_bytes_are_rejected() -> None:
    buf = codec.encode_entry(Entry(1, 2, EntryType.NORMAL, b"x"))
    with pytest.raises(codec.CodecError, match="trailing"):
        codec.decode_entry(buf + b"\0")


def test_unknown_message_type_is_rejected() -> None:
    buf = bytearray(codec.encode_message(Message(MessageType.APP, to=1)))
    buf[0] = 200
    with pytest.raises(codec.CodecError):
        codec.decode_message(bytes(buf))


def test_unknown_entry_type_is_rejected() -> None:
    buf = bytearray(codec.encode_entry(Entry(1, 2, EntryType.NORMAL, b"x")))
    buf[16] = 1  # EntryType has no value 1
    with pytest.raises(codec.CodecError):
        codec.decode_entry(bytes(buf))


def test_huge_conf_state_count_is_rejected_without_allocating() -> None:
    buf = bytearray(codec.encode_conf_state(ConfState(voters=(1,))))
    buf[0:4] = (2**32 - 1).to_bytes(4, "little")
    with pytest.raises(codec.CodecError, match="truncated"):
        codec.decode_conf_state(bytes(buf))


@pytest.mark.parametrize(
    ("cls", "names"),
    [
        (Entry, ["term", "index", "type", "data"]),
        (HardState, ["term", "vote", "commit"]),
        (ConfState, ["voters", "learners", "voters_outgoing", "learners_next", "auto_leave"]),
        (SnapshotMetadata, ["conf_state", "index", "term"]),
        (Snapshot, ["data", "metadata"]),
        (
            Message,
            [
                "type",
                "to",
                "from_",
                "term",
                "log_term",
                "index",
                "entries",
                "commit",
                "snapshot",
                "reject",
                "reject_hint",
                "context",
            ],
        ),
    ],
)
def test_codec_covers_every_field(cls: type, names: list[str]) -> None:
    # A field added to a raft type must be added to its encoding too; this test is the reminder.
    assert [f.name for f in dataclasses.fields(cls)] == names
