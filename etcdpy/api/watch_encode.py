"""Wire encoding of watch responses, with etcd's fragmentation.

A batch of events that goes to many watchers is encoded once: the repeated ``events`` field
(number 11) is kept as bytes on the batch, and each response is its small fixed part
(header, watch_id, flags) followed by those bytes. Protobuf allows fields in any order and
concatenates repeated fields, so this is the same message etcd sends.
"""

from __future__ import annotations

from collections.abc import Callable

from etcdpy.mvcc.watcher import EventBatch, WatchResponse
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.mvccpb.kv_pb2 import Event

_DELETE = Event.DELETE
_EVENTS_TAG = b"\x5a"  # field 11, length-delimited


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _event_bytes(ev: Event, with_prev: bool) -> bytes:
    kv = ev.kv.SerializeToString()
    parts = [b"\x08\x01" if ev.type == _DELETE else b"", b"\x12", varint(len(kv)), kv]
    if with_prev and ev.HasField("prev_kv"):
        prev = ev.prev_kv.SerializeToString()
        parts += [b"\x1a", varint(len(prev)), prev]
    return b"".join(parts)


class _Encoded:
    __slots__ = ("blob", "entries")

    def __init__(self, entries: list[bytes]) -> None:
        self.entries = entries
        self.blob = b"".join(entries)


def encoded_events(batch: EventBatch, with_prev: bool) -> _Encoded:
    """The batch's events as repeated-field entries, cached on the batch."""
    cache = batch.encoded
    if cache is None:
        cache = batch.encoded = {}
    found: _Encoded | None = cache.get(with_prev)
    if found is None:
        entries = []
        for ev in batch.events:
            data = _event_bytes(ev, with_prev)
            entries.append(_EVENTS_TAG + varint(len(data)) + data)
        found = cache[with_prev] = _Encoded(entries)
    return found


class ResponseEncoder:
    """Encodes one stream's responses; ``header`` gives (cluster_id, member_id, raft_term)."""

    def __init__(self, header: Callable[[], tuple[int, int, int]], max_bytes: int) -> None:
        self._header = header
        self.max_bytes = max_bytes  # etcd: --max-request-bytes plus the gRPC overhead

    def _fixed(self, r: WatchResponse, fragment: bool = False) -> bytes:
        cluster_id, member_id, term = self._header()
        msg = pb.WatchResponse(
            watch_id=r.watch_id,
            created=r.created,
            canceled=r.canceled,
            compact_revision=r.compact_revision,
            cancel_reason=r.cancel_reason,
            fragment=fragment,
        )
        h = msg.header
        h.cluster_id = cluster_id
        h.member_id = member_id
        h.revision = r.revision
        h.raft_term = term
        return msg.SerializeToString()

    def encode_coalesced(self, items: list[WatchResponse]) -> list[bytes]:
        """Encode a backlog, merging each watcher's event responses into its first one.

        Only events move, and only earlier: a watcher's events stay in order and before its
        cancel, and a progress notification still follows every event up to its revision.
        """
        merged: list[tuple[WatchResponse, list[WatchResponse]]] = []
        open_slot: dict[int, int] = {}
        for r in items:
            if r.batch is not None and r.batch.events and not r.fragment:
                i = open_slot.get(r.watch_id)
                if i is not None:
                    merged[i][1].append(r)
                    continue
                open_slot[r.watch_id] = len(merged)
            elif r.created or r.canceled:
                open_slot.pop(r.watch_id, None)  # an id can be reused after its cancel
            merged.append((r, [r]))
        out: list[bytes] = []
        for first, group in merged:
            if len(group) == 1:
                out.extend(self.encode(first))
                continue
            last = group[-1]
            blob = b"".join(encoded_events(g.batch, g.prev_kv).blob for g in group if g.batch)
            out.append(self._fixed(last) + blob)
        return out

    def encode(self, r: WatchResponse) -> list[bytes]:
        """The messages for one response: one, or its fragments (etcd's sendFragments)."""
        batch = r.batch
        if batch is None or not batch.events:
            return [self._fixed(r)]
        enc = encoded_events(batch, r.prev_kv)
        fixed = self._fixed(r)
        if not r.fragment or len(enc.entries) < 2 or len(fixed) + len(enc.blob) < self.max_bytes:
            return [fixed + enc.blob]
        head = self._fixed(r, fragment=True)
        out: list[bytes] = []
        entries = enc.entries
        i = 0
        while i < len(entries):
            size = len(head)
            j = i
            while j < len(entries):
                size += len(entries[j])
                if j > i and size >= self.max_bytes:
                    break
                j += 1
            last = j == len(entries)
            out.append((fixed if last else head) + b"".join(entries[i:j]))
            i = j
        return out
