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
    return limited_slice(entries, 0, len(entries), max_size)


def limited_slice(
    entries: Sequence[Entry], start: int, end: int, max_size: int | None, used: int = 0
) -> list[Entry]:
    """``entries[start:end]`` cut so that ``used`` plus their size stays within ``max_size``.

    Only the entries returned are copied (a lagging follower must not cost a copy of the whole
    log per message). With ``used == 0`` the first entry is always taken.
    """
    if max_size is not None:
        total = used
        for i in range(start, end):
            total += entries[i].size()
            if total > max_size and (i > start or used > 0):
                return list(entries[start:i])
    return list(entries[start:end])


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
