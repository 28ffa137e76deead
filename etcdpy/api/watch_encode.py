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
        self._last_header: tuple[tuple[int, tuple[int, int, int]], bytes] | None = None

    def _fixed(self, r: WatchResponse, fragment: bool = False) -> bytes:
        """Every field but the events. The common case (an event or progress response) is
        spelled out by hand: it is built once per watcher per response."""
        if r.created or r.canceled or r.compact_revision or r.cancel_reason or fragment:
            return self._fixed_pb(r, fragment)
        header = self._header_bytes(r.revision)
        wid = r.watch_id
        if wid == 0:
            return header
        return header + b"\x10" + varint(wid & 0xFFFFFFFFFFFFFFFF)

    def _header_bytes(self, revision: int) -> bytes:
        ids = self._header()
        key = (revision, ids)
        cached = self._last_header
        if cached is not None and cached[0] == key:
            return cached[1]
        h = pb.ResponseHeader(
            cluster_id=ids[0], member_id=ids[1], revision=revision, raft_term=ids[2]
        ).SerializeToString()
        data = b"\x0a" + varint(len(h)) + h
        self._last_header = (key, data)
        return data

    def _fixed_pb(self, r: WatchResponse, fragment: bool) -> bytes:
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

    def encode(self, r: WatchResponse) -> list[bytes]:
        """The messages for one response: one, or its fragments (etcd's sendFragments)."""
        batch = r.batch
        if batch is None or not batch.events:
            return [self._fixed(r)]
        fixed = self._fixed(r)
        enc = encoded_events(batch, r.prev_kv)
        blob, entries = enc.blob, enc.entries
        if not r.fragment or len(entries) < 2 or len(fixed) + len(blob) < self.max_bytes:
            return [fixed + blob]
        head = self._fixed(r, fragment=True)
        out: list[bytes] = []
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
