"""TreeIndex: etcd's index_test.go scenarios plus the range-end conventions."""

from __future__ import annotations

import pytest

from etcdpy.mvcc.errors import RevisionNotFoundError
from etcdpy.mvcc.index import TreeIndex
from etcdpy.mvcc.revision import Revision as R


def test_get_across_put_and_tombstone() -> None:
    ti = TreeIndex()
    ti.put(b"foo", R(2))
    ti.put(b"foo", R(4))
    ti.tombstone(b"foo", R(6))
    want = {2: (R(2), R(2), 1), 3: (R(2), R(2), 1), 4: (R(4), R(2), 2), 5: (R(4), R(2), 2)}
    for rev in range(0, 8):
        if rev in want:
            assert ti.get(b"foo", rev) == want[rev]
        else:
            with pytest.raises(RevisionNotFoundError):
                ti.get(b"foo", rev)
    with pytest.raises(RevisionNotFoundError):
        ti.get(b"missing", 5)


def three_keys() -> TreeIndex:
    ti = TreeIndex()
    for i, k in enumerate([b"foo", b"foo1", b"foo2"]):
        ti.put(k, R(i + 1))
    return ti


@pytest.mark.parametrize(
    ("key", "end", "want"),
    [
        (b"bar", None, []),
        (b"foo", None, [b"foo"]),
        (b"foo", b"", [b"foo"]),  # empty end = single key
        (b"foo", b"foo1", [b"foo"]),
        (b"foo", b"foo2", [b"foo", b"foo1"]),
        (b"foo", b"fop", [b"foo", b"foo1", b"foo2"]),
        (b"foo1", b"fop", [b"foo1", b"foo2"]),
        (b"foo2", b"fop", [b"foo2"]),
        (b"foo3", b"fop", []),
        (b"foo1", b"\0", [b"foo1", b"foo2"]),  # "\0" = every key >= key
        (b"", b"\0", [b"foo", b"foo1", b"foo2"]),
        (b"fop", b"foo", []),  # end before key
    ],
)
def test_range(key: bytes, end: bytes | None, want: list[bytes]) -> None:
    ti = three_keys()
    keys, revs = ti.range(key, end, 3)
    assert keys == want
    assert revs == [R({b"foo": 1, b"foo1": 2, b"foo2": 3}[k]) for k in want]
    assert ti.count(key, end, 3) == len(want)
    assert ti.revisions(key, end, 3) == revs


def test_range_at_old_revision_hides_later_keys() -> None:
    ti = three_keys()
    assert ti.range(b"foo", b"fop", 2) == ([b"foo", b"foo1"], [R(1), R(2)])
    ti.tombstone(b"foo1", R(4))
    assert ti.range(b"foo", b"fop", 4)[0] == [b"foo", b"foo2"]
    assert ti.range(b"foo", b"fop", 3)[0] == [b"foo", b"foo1", b"foo2"]


def test_tombstone_of_missing_or_deleted_key() -> None:
    ti = TreeIndex()
    ti.put(b"foo", R(1))
    ti.tombstone(b"foo", R(2))
    assert ti.find(b"foo", 2) is None
    with pytest.raises(RevisionNotFoundError):
        ti.tombstone(b"foo", R(3))
    with pytest.raises(RevisionNotFoundError):
        ti.tombstone(b"nope", R(3))


def test_range_since_orders_by_revision() -> None:
    ti = TreeIndex()
    for i, k in enumerate([b"foo", b"foo1", b"foo2", b"foo2", b"foo1", b"foo"]):
        ti.put(k, R(i + 1))
    assert ti.range_since(b"bar", None, 1) == []
    assert ti.range_since(b"foo", None, 1) == [R(1), R(6)]
    assert ti.range_since(b"foo", b"foo1", 1) == [R(1), R(6)]
    assert ti.range_since(b"foo", b"foo2", 1) == [R(1), R(2), R(5), R(6)]
    assert ti.range_since(b"foo", b"fop", 1) == [R(i) for i in range(1, 7)]
    assert ti.range_since(b"foo1", b"fop", 1) == [R(2), R(3), R(4), R(5)]
    assert ti.range_since(b"foo2", b"fop", 1) == [R(3), R(4)]
    assert ti.range_since(b"foo3", b"fop", 1) == []
    assert ti.range_since(b"foo", b"fop", 4) == [R(4), R(5), R(6)]


def test_compact_removes_emptied_keys_and_keep_matches() -> None:
    _, ti = _replay_and_compact(0)  # etcd's TestIndexCompactAndKeep history, uncompacted
    for rev in range(1, 10):
        # keep() predicts what compact() returns, on an index it leaves alone.
        assert ti.keep(rev) == _replay_and_compact(rev)[0], rev
    assert len(ti) == 3
    # After compaction at 6 the tombstoned foo1 is gone entirely.
    ti.compact(6)
    assert ti.key_index(b"foo1") is None
    assert ti.range(b"", b"\0", 8)[0] == [b"foo", b"foo2"]


def _replay_and_compact(rev: int) -> tuple[set[R], TreeIndex]:
    ti = TreeIndex()
    ti.put(b"foo", R(1))
    ti.put(b"foo1", R(2))
    ti.put(b"foo2", R(3))
    ti.put(b"foo2", R(4))
    ti.tombstone(b"foo", R(5))
    ti.tombstone(b"foo1", R(6))
    ti.put(b"foo", R(7))
    ti.put(b"foo2", R(8))
    return ti.compact(rev), ti


def test_compact_available_sets() -> None:
    cases = {
        1: {R(1)},
        2: {R(1), R(2)},
        3: {R(1), R(2), R(3)},
        4: {R(1), R(2), R(4)},
        5: {R(2), R(4)},
        6: {R(4)},
        7: {R(4), R(7)},
        8: {R(7), R(8)},
    }
    for rev, want in cases.items():
        avail, ti = _replay_and_compact(rev)
        assert avail == want, rev
        # Reads at or after the compaction revision are unchanged.
        _, full = _replay_and_compact(0)
        for at in range(rev, 10):
            assert ti.range(b"", b"\0", at) == full.range(b"", b"\0", at), (rev, at)
