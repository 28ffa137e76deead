"""KeyIndex: the scenarios of etcd's key_index_test.go, checked on our implementation."""

from __future__ import annotations

import copy

import pytest

from etcdpy.mvcc.errors import RevisionNotFoundError
from etcdpy.mvcc.key_index import KeyIndex
from etcdpy.mvcc.revision import Revision as R

Gens = list[tuple[tuple[int, int], int, list[tuple[int, int]]]]


def shape(ki: KeyIndex) -> Gens:
    """Generations as (created, ver, revs) tuples, including created (unlike __eq__)."""
    return [(tuple(g.created), g.ver, [tuple(r) for r in g.revs]) for g in ki.generations]  # type: ignore[misc]


def three_generations() -> KeyIndex:
    """Key "foo": [2 4 6t] [8 10 12t] [14.0 14.1 16t] [] (etcd's newTestKeyIndex)."""
    ki = KeyIndex(b"foo")
    ki.put(2, 0)
    ki.put(4, 0)
    ki.tombstone(6, 0)
    ki.put(8, 0)
    ki.put(10, 0)
    ki.tombstone(12, 0)
    ki.put(14, 0)
    ki.put(14, 1)
    ki.tombstone(16, 0)
    return ki


def test_docstring_worked_example() -> None:
    ki = KeyIndex(b"k")
    ki.put(2, 0)
    ki.put(3, 0)
    ki.tombstone(4, 0)
    ki.put(6, 0)
    ki.tombstone(7, 0)
    assert ki.find(1) is None
    assert ki.get(3) == (R(3, 0), R(2, 0), 2)
    assert ki.find(5) is None
    assert ki.get(6) == (R(6, 0), R(6, 0), 1)
    assert ki.find(9) is None
    avail: set[R] = set()
    ki.compact(3, avail)
    assert avail == {R(3, 0)}
    assert [[tuple(r) for r in g.revs] for g in ki.generations] == [
        [(3, 0), (4, 0)],
        [(6, 0), (7, 0)],
        [],
    ]
    avail = set()
    ki.compact(4, avail)
    assert avail == set()
    assert [[tuple(r) for r in g.revs] for g in ki.generations] == [[(6, 0), (7, 0)], []]
    avail = set()
    ki.compact(6, avail)
    assert avail == {R(6, 0)}
    avail = set()
    ki.compact(7, avail)
    assert avail == set()
    assert ki.is_empty()


@pytest.mark.parametrize(
    ("rev", "want"),
    [
        (17, None),
        (16, None),
        (15, (R(14, 1), R(14, 0), 2)),
        (14, (R(14, 1), R(14, 0), 2)),
        (13, None),
        (12, None),
        (11, (R(10, 0), R(8, 0), 2)),
        (10, (R(10, 0), R(8, 0), 2)),
        (9, (R(8, 0), R(8, 0), 1)),
        (8, (R(8, 0), R(8, 0), 1)),
        (7, None),
        (6, None),
        (5, (R(4, 0), R(2, 0), 2)),
        (4, (R(4, 0), R(2, 0), 2)),
        (3, None),  # compacted away at 4
        (2, None),
        (1, None),
        (0, None),
    ],
)
def test_get_after_compaction(rev: int, want: tuple[R, R, int] | None) -> None:
    ki = three_generations()
    ki.compact(4, set())
    assert ki.find(rev) == want
    if want is None:
        with pytest.raises(RevisionNotFoundError):
            ki.get(rev)
    else:
        assert ki.get(rev) == want


def test_since() -> None:
    ki = three_generations()
    ki.compact(4, set())
    all_revs = [R(4, 0), R(6, 0), R(8, 0), R(10, 0), R(12, 0), R(14, 1), R(16, 0)]
    cases = {17: 7, 16: 6, 15: 6, 14: 5, 13: 5, 12: 4, 11: 4, 10: 3, 9: 3, 8: 2, 7: 2, 6: 1}
    cases.update({5: 1, 4: 0, 3: 0, 2: 0, 1: 0, 0: 0})
    for rev, start in cases.items():
        assert ki.since(rev) == all_revs[start:], rev


def test_put_and_restore() -> None:
    ki = KeyIndex(b"foo")
    ki.put(5, 0)
    assert shape(ki) == [((5, 0), 1, [(5, 0)])]
    ki.put(7, 0)
    assert shape(ki) == [((5, 0), 2, [(5, 0), (7, 0)])]
    assert ki.modified == R(7, 0)
    with pytest.raises(ValueError):
        ki.put(7, 0)  # not after the last revision

    restored = KeyIndex(b"foo")
    restored.restore(R(5, 0), R(7, 0), 2)
    assert shape(restored) == [((5, 0), 2, [(7, 0)])]
    assert restored.get(7) == (R(7, 0), R(5, 0), 2)


def test_tombstone() -> None:
    ki = KeyIndex(b"foo")
    ki.put(5, 0)
    ki.tombstone(7, 0)
    assert shape(ki) == [((5, 0), 2, [(5, 0), (7, 0)]), ((0, 0), 0, [])]
    ki.put(8, 0)
    ki.put(9, 0)
    ki.tombstone(15, 0)
    assert shape(ki) == [
        ((5, 0), 2, [(5, 0), (7, 0)]),
        ((8, 0), 3, [(8, 0), (9, 0), (15, 0)]),
        ((0, 0), 0, []),
    ]
    with pytest.raises(RevisionNotFoundError):
        ki.tombstone(16, 0)  # already deleted


# etcd's TestKeyIndexCompactAndKeep table: compact revision -> (generations, available).
G1 = ((2, 0), 3, [(2, 0), (4, 0), (6, 0)])
G1_4 = ((2, 0), 3, [(4, 0), (6, 0)])
G2 = ((8, 0), 3, [(8, 0), (10, 0), (12, 0)])
G2_10 = ((8, 0), 3, [(10, 0), (12, 0)])
G3 = ((14, 0), 3, [(14, 0), (14, 1), (16, 0)])
G3_14 = ((14, 0), 3, [(14, 1), (16, 0)])
COMPACT_TABLE: list[tuple[int, Gens, set[R]]] = [
    (1, [G1, G2, G3], set()),
    (2, [G1, G2, G3], {R(2, 0)}),
    (3, [G1, G2, G3], {R(2, 0)}),
    (4, [G1_4, G2, G3], {R(4, 0)}),
    (5, [G1_4, G2, G3], {R(4, 0)}),
    (6, [G2, G3], set()),
    (7, [G2, G3], set()),
    (8, [G2, G3], {R(8, 0)}),
    (9, [G2, G3], {R(8, 0)}),
    (10, [G2_10, G3], {R(10, 0)}),
    (11, [G2_10, G3], {R(10, 0)}),
    (12, [G3], set()),
    (13, [G3], set()),
    (14, [G3_14], {R(14, 1)}),
    (15, [G3_14], {R(14, 1)}),
    (16, [], set()),
]


def _check_keep_then_compact(ki: KeyIndex, rev: int, gens: Gens, avail: set[R]) -> None:
    before = copy.deepcopy(shape(ki))
    kept: set[R] = set()
    ki.keep(rev, kept)
    assert shape(ki) == before, "keep() must not change the index"
    assert kept == avail, rev
    got: set[R] = set()
    ki.compact(rev, got)
    assert got == avail, rev
    # Every compaction leaves the trailing empty generation.
    assert shape(ki) == [*gens, ((0, 0), 0, [])], rev


def test_compact_and_keep_continuously() -> None:
    ki = three_generations()
    for rev, gens, avail in COMPACT_TABLE:
        _check_keep_then_compact(ki, rev, gens, avail)
    assert ki.is_empty()


def test_compact_and_keep_jumping() -> None:
    ki = three_generations()
    for i, (rev, gens, avail) in enumerate(COMPACT_TABLE):
        if (i % 2 == 0 and i < 6) or (i % 2 == 1 and i > 6):
            _check_keep_then_compact(ki, rev, gens, avail)


def test_compact_and_keep_once() -> None:
    for rev, gens, avail in COMPACT_TABLE:
        _check_keep_then_compact(three_generations(), rev, gens, avail)


def test_compact_beyond_last_revision_keeps_the_live_version() -> None:
    ki = KeyIndex(b"foo")
    ki.put(1, 0)
    ki.put(2, 0)
    avail: set[R] = set()
    ki.compact(3, avail)
    assert shape(ki) == [((1, 0), 2, [(2, 0)])]
    assert avail == {R(2, 0)}
    # The version counter survives compaction.
    assert ki.get(3) == (R(2, 0), R(1, 0), 2)


def test_is_empty() -> None:
    ki = KeyIndex(b"foo")
    ki.put(1, 0)
    assert not ki.is_empty()
    ki.tombstone(2, 0)
    assert not ki.is_empty()
    ki.compact(2, set())
    assert ki.is_empty()
