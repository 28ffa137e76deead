"""Small helpers shared by the raft modules."""

from __future__ import annotations

from collections.abc import Sequence

from etcdpy.raft.types import (
    LOCAL_MESSAGES,
    Entry,
    HardState,
    MessageType,
)

NO_LIMIT: int | None = None
"""A ``max_size`` that never cuts a batch of entries."""


def limit_size(entries: Sequence[Entry], max_size: int | None) -> list[Entry]:
    """The longest prefix of ``entries`` whose total size is within ``max_size``.

    The first entry is always kept, so a single oversized entry still makes progress.
    """
    if max_size is None or len(entries) <= 1:
        return list(entries)
    total = entries[0].size()
    cut = 1
    for cut in range(1, len(entries)):
        total += entries[cut].size()
        if total > max_size:
            break
    else:
        cut = len(entries)
    return list(entries[:cut])


def payload_size(entry: Entry) -> int:
    """The bytes an entry counts against ``max_uncommitted_entries_size``."""
    return len(entry.data)


def payloads_size(entries: Sequence[Entry]) -> int:
    return sum(len(e.data) for e in entries)


def is_local_msg(kind: MessageType) -> bool:
    return kind in LOCAL_MESSAGES


_RESPONSES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.UNREACHABLE,
        MessageType.PRE_VOTE_RESP,
    }
)


def is_response_msg(kind: MessageType) -> bool:
    return kind in _RESPONSES


def vote_resp_msg_type(kind: MessageType) -> MessageType:
    if kind == MessageType.VOTE:
        return MessageType.VOTE_RESP
    if kind == MessageType.PRE_VOTE:
        return MessageType.PRE_VOTE_RESP
    raise ValueError(f"not a vote message: {kind!r}")


def must_sync(hs: HardState, prev: HardState, entry_count: int) -> bool:
    """Whether a Ready's writes must be fsynced: new entries, or a changed term or vote."""
    return entry_count != 0 or hs.vote != prev.vote or hs.term != prev.term
