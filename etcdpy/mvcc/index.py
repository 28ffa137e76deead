"""The in-memory index: every key (sorted) -> its KeyIndex.

Range ends follow etcd's request conventions:

- ``end`` None or ``b""``: the single key ``key``;
- ``end == b"\\0"``: every key ``>= key``;
- otherwise the half-open interval ``[key, end)``.
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedDict

from etcdpy.mvcc.errors import RevisionNotFoundError
from etcdpy.mvcc.key_index import KeyIndex
from etcdpy.mvcc.revision import Revision

ALL_FROM_KEY = b"\0"


class TreeIndex:
    """Sorted map of keys to their generations of revisions."""

    __slots__ = ("_keys", "_tree", "live_keys")

    def __init__(self) -> None:
        self._tree: SortedDict = SortedDict()
        # The plain dict inside SortedDict: point lookups skip a method call.
        self._keys: dict[bytes, KeyIndex] = self._tree
        # Keys whose latest generation is open (etcd's keysGauge, etcd_debugging_mvcc_keys_total).
        self.live_keys = 0

    @classmethod
    def from_key_indexes(cls, key_indexes: dict[bytes, KeyIndex]) -> TreeIndex:
        """Build an index in one sort (used when restoring from the backend)."""
        ti = cls()
        ti._tree.update(key_indexes)
        ti.live_keys = sum(1 for ki in key_indexes.values() if ki.is_live())
        return ti

    def __len__(self) -> int:
        return len(self._tree)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TreeIndex):
            return NotImplemented
        return list(self._tree.items()) == list(other._tree.items())

    __hash__ = None  # type: ignore[assignment]

    def key_index(self, key: bytes) -> KeyIndex | None:
        return self._keys.get(key)

    def insert(self, ki: KeyIndex) -> None:
        old = self._keys.get(ki.key)
        self.live_keys += ki.is_live() - (old is not None and old.is_live())
        self._tree[ki.key] = ki

    def get(self, key: bytes, at_rev: int) -> tuple[Revision, Revision, int]:
        """(modified, created, version) of ``key`` at ``at_rev``; a miss raises."""
        found = self.find(key, at_rev)
        if found is None:
            raise RevisionNotFoundError(key)
        return found

    def find(self, key: bytes, at_rev: int) -> tuple[Revision, Revision, int] | None:
        ki = self._keys.get(key)
        if ki is None:
            return None
        return ki.find(at_rev)

    def _visit(self, key: bytes, end: bytes) -> Iterator[KeyIndex]:
        tree = self._tree
        if end == ALL_FROM_KEY:
            keys = tree.irange(minimum=key)
        elif end <= key:
            return
        else:
            keys = tree.irange(key, end, inclusive=(True, False))
        keys_map = self._keys
        for k in keys:
            yield keys_map[k]

    def range(
        self, key: bytes, end: bytes | None, at_rev: int
    ) -> tuple[list[bytes], list[Revision]]:
        """Keys live at ``at_rev`` in the range, in key order, with their revisions."""
        if not end:
            found = self.find(key, at_rev)
            if found is None:
                return [], []
            return [key], [found[0]]
        keys: list[bytes] = []
        revs: list[Revision] = []
        for ki in self._visit(key, end):
            found = ki.find(at_rev)
            if found is not None:
                keys.append(ki.key)
                revs.append(found[0])
        return keys, revs

    def revisions(self, key: bytes, end: bytes | None, at_rev: int) -> list[Revision]:
        return self.range(key, end, at_rev)[1]

    def first_revisions(
        self, key: bytes, end: bytes, at_rev: int, limit: int
    ) -> tuple[list[Revision], int]:
        """The revisions of the first ``limit`` keys (0: all) of ``[key, end)`` live at
        ``at_rev``, and how many keys of it are live (a page of a list: the rest is only
        counted)."""
        revs: list[Revision] = []
        visits = self._visit(key, end)
        for ki in visits:
            found = ki.find(at_rev)
            if found is not None:
                revs.append(found[0])
                if len(revs) == limit:
                    break
        count = len(revs)
        for ki in visits:
            if ki.live_at(at_rev):
                count += 1
        return revs, count

    def count(self, key: bytes, end: bytes | None, at_rev: int) -> int:
        if not end:
            return 0 if self.find(key, at_rev) is None else 1
        return sum(1 for ki in self._visit(key, end) if ki.live_at(at_rev))

    def range_since(self, key: bytes, end: bytes | None, rev: int) -> list[Revision]:
        """Every revision ``>= rev`` of the keys in the range, in revision order."""
        if not end:
            ki = self._keys.get(key)
            return [] if ki is None else ki.since(rev)
        out: list[Revision] = []
        for ki in self._visit(key, end):
            out.extend(ki.since(rev))
        out.sort()
        return out

    def put(self, key: bytes, rev: Revision) -> None:
        ki = self._keys.get(key)
        if ki is None:
            ki = KeyIndex(key)
            ki.put(rev.main, rev.sub)
            self._tree[key] = ki
            self.live_keys += 1
        else:
            if not ki.is_live():  # a new generation: the key comes back
                self.live_keys += 1
            ki.put(rev.main, rev.sub)

    def tombstone(self, key: bytes, rev: Revision) -> None:
        """Delete ``key`` at ``rev``; RevisionNotFoundError if it is not live."""
        ki = self._keys.get(key)
        if ki is None:
            raise RevisionNotFoundError(key)
        ki.tombstone(rev.main, rev.sub)
        self.live_keys -= 1

    def compact(self, rev: int) -> set[Revision]:
        """Compact every key at ``rev``; returns the revisions the backend must keep."""
        available: set[Revision] = set()
        emptied: list[bytes] = []
        for k, ki in self._tree.items():
            ki.compact(rev, available)
            if ki.is_empty():
                emptied.append(k)
        tree = self._tree
        for k in emptied:
            del tree[k]
        return available

    def keep(self, rev: int) -> set[Revision]:
        """What compact(rev) would return, changing nothing."""
        available: set[Revision] = set()
        for ki in self._tree.values():
            ki.keep(rev, available)
        return available
