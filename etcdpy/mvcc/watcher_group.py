"""A set of watchers indexed for fan-out: by exact key, and by (key, end) range.

Watchers of the same range share one entry, so a thousand watchers of one prefix cost one
range test per event, and the events they get are collected once (``batches``).

Watchers are kept in dicts (insertion ordered), never sets: the order in which watchers
get their responses must not depend on hashing.
"""

from __future__ import annotations

from collections.abc import Iterator

from etcdpy.mvcc.watcher import EventBatch, Watcher
from etcdpy.pb.mvccpb.kv_pb2 import Event

WatcherSet = dict[Watcher, None]


class WatcherGroup:
    def __init__(self) -> None:
        self.watchers: WatcherSet = {}
        self._by_key: dict[bytes, WatcherSet] = {}
        self._by_range: dict[tuple[bytes, bytes], WatcherSet] = {}

    def __len__(self) -> int:
        return len(self.watchers)

    def __contains__(self, w: Watcher) -> bool:
        return w in self.watchers

    def __iter__(self) -> Iterator[Watcher]:
        return iter(self.watchers)

    def add(self, w: Watcher) -> None:
        if w in self.watchers:
            raise AssertionError(f"{w} added twice")
        self.watchers[w] = None
        if w.end is None:
            self._by_key.setdefault(w.key, {})[w] = None
        else:
            self._by_range.setdefault((w.key, w.end), {})[w] = None

    def delete(self, w: Watcher) -> bool:
        if w not in self.watchers:
            return False
        del self.watchers[w]
        if w.end is None:
            index: dict[bytes, WatcherSet] | dict[tuple[bytes, bytes], WatcherSet] = self._by_key
            slot: bytes | tuple[bytes, bytes] = w.key
        else:
            index, slot = self._by_range, (w.key, w.end)
        members = index[slot]  # type: ignore[index]
        del members[w]
        if not members:
            del index[slot]  # type: ignore[arg-type]
        return True

    def contains_key(self, key: bytes) -> bool:
        if key in self._by_key:
            return True
        return any(k <= key and (not e or key < e) for k, e in self._by_range)

    def batches(self, events: list[Event]) -> list[tuple[WatcherSet, EventBatch]]:
        """For each group of watchers of the same key or range, the events it matches.

        ``events`` are in revision order; each batch keeps that order. Groups with no
        matching event are left out. The caller still checks each watcher's min_rev.
        """
        out: list[tuple[WatcherSet, EventBatch]] = []
        by_key = self._by_key
        if by_key:
            per_key: dict[bytes, list[Event]] = {}
            for ev in events:
                k = ev.kv.key
                if k in by_key:
                    per_key.setdefault(k, []).append(ev)
            for k, evs in per_key.items():
                out.append((by_key[k], EventBatch(evs)))
        for (start, end), members in self._by_range.items():
            if end:
                evs = [ev for ev in events if start <= ev.kv.key < end]
            else:
                evs = [ev for ev in events if start <= ev.kv.key]
            if evs:
                out.append((members, EventBatch(evs)))
        return out
