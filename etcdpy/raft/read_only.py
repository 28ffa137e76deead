"""Bookkeeping of linearizable reads on the leader (ReadIndex, thesis §6.4).

A read records the commit index at the time it arrived, then waits until a quorum acknowledges a
heartbeat sent after it. Requests are queued in arrival order, keyed by their context; an
acknowledgement of a heartbeat carrying context ``c`` proves leadership for ``c`` and for every
request queued before it, so one heartbeat round serves a whole batch of reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from etcdpy.raft.types import Message, ReadOnlyOption


@dataclass(slots=True)
class ReadIndexStatus:
    req: Message
    index: int
    acks: dict[int, bool] = field(default_factory=dict)


class ReadOnly:
    __slots__ = ("option", "pending_read_index", "read_index_queue")

    def __init__(self, option: ReadOnlyOption) -> None:
        self.option = option
        self.pending_read_index: dict[bytes, ReadIndexStatus] = {}
        self.read_index_queue: list[bytes] = []

    def add_request(self, index: int, m: Message) -> None:
        """Queue a read that arrived when the commit index was ``index`` (duplicates ignored)."""
        ctx = m.entries[0].data
        if ctx in self.pending_read_index:
            return
        self.pending_read_index[ctx] = ReadIndexStatus(req=m, index=index)
        self.read_index_queue.append(ctx)

    def recv_ack(self, node_id: int, ctx: bytes) -> dict[int, bool] | None:
        """Record that ``node_id`` acknowledged the heartbeat for ``ctx``; returns the acks."""
        status = self.pending_read_index.get(ctx)
        if status is None:
            return None
        status.acks[node_id] = True
        return status.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Release every request queued up to and including ``ctx`` (none if unknown)."""
        try:
            pos = self.read_index_queue.index(ctx)
        except ValueError:
            return []
        released_ctxs = self.read_index_queue[: pos + 1]
        del self.read_index_queue[: pos + 1]
        return [self.pending_read_index.pop(c) for c in released_ctxs]

    def last_pending_request_ctx(self) -> bytes:
        return self.read_index_queue[-1] if self.read_index_queue else b""
