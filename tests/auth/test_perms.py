"""The merged permission intervals against a plain model of etcd's rules: a key or range is
permitted iff the union of the granted intervals of its type covers it (readwrite counts for
both)."""

from __future__ import annotations

from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from etcdpy.auth.perms import READ, READWRITE, WRITE, UserPerms, interval, merge
from etcdpy.pb.authpb import auth_pb2 as authpb

# A small alphabet, so that intervals overlap, touch and nest often.
KEYS = st.binary(min_size=1, max_size=3).map(lambda b: bytes(c % 4 + 0x61 for c in b))
RANGE_ENDS = st.one_of(st.just(b""), st.just(b"\0"), KEYS)
TYPES = st.sampled_from([READ, WRITE, READWRITE])
PERMS = st.lists(st.tuples(TYPES, KEYS, RANGE_ENDS), max_size=8)


def _keys_of(key: bytes, range_end: bytes) -> tuple[bytes, bytes | None]:
    ivl = interval(key, range_end)
    return ivl if ivl is not None else (key, key + b"\0")


def model_permits(
    grants: list[tuple[int, bytes, bytes]], key: bytes, end: bytes, kind: int
) -> bool:
    """Covered by the union, checked on every boundary point of the asked interval: between
    two consecutive boundaries the coverage cannot change."""
    granted = [
        ivl
        for perm_type, gkey, gend in grants
        if perm_type in (kind, READWRITE) and (ivl := interval(gkey, gend)) is not None
    ]
    begin, stop = _keys_of(key, end)

    def covered(point: bytes) -> bool:
        return any(b <= point and (e is None or point < e) for b, e in granted)

    points = {begin} | {b for b, _ in granted} | {e for _, e in granted if e is not None}
    inside = [p for p in points if p >= begin and (stop is None or p < stop)]
    if not all(covered(p) for p in inside):
        return False
    if stop is None:  # to the end of the key space: some interval must reach it
        return any(e is None for _, e in granted) and covered(max(inside))
    return True


def _user(grants: list[tuple[int, bytes, bytes]]) -> UserPerms:
    return UserPerms.of(
        authpb.Permission(permType=cast(Any, t), key=k, range_end=e) for t, k, e in grants
    )


@settings(max_examples=400, deadline=None)
@given(PERMS, KEYS, RANGE_ENDS, st.sampled_from([READ, WRITE]))
def test_merged_intervals_agree_with_the_model(
    grants: list[tuple[int, bytes, bytes]], key: bytes, end: bytes, kind: int
) -> None:
    assert _user(grants).permits(key, end, kind) == model_permits(grants, key, end, kind)


@given(st.lists(st.tuples(KEYS, st.one_of(st.none(), KEYS)), max_size=10))
def test_merge_gives_sorted_disjoint_non_adjacent_intervals(
    raw: list[tuple[bytes, bytes | None]],
) -> None:
    intervals = [(b, e) for b, e in raw if e is None or e > b]
    begins, ends = merge(intervals)
    for i in range(1, len(begins)):
        previous = ends[i - 1]
        assert previous is not None and previous < begins[i]


def test_etcd_examples() -> None:
    # etcd's range_perm_cache_test.go: [a, c) and [c, e) together cover [a, e)
    user = _user([(READ, b"a", b"c"), (READ, b"c", b"e"), (WRITE, b"x", b"\0")])
    assert user.permits(b"a", b"e", READ)
    assert user.permits(b"b", b"", READ)
    assert not user.permits(b"a", b"f", READ)
    assert not user.permits(b"a", b"", WRITE)
    assert user.permits(b"x", b"\0", WRITE)  # from key
    assert user.permits(b"zzz", b"", WRITE)
    assert not user.permits(b"w", b"\0", WRITE)


def test_a_point_grant_covers_the_key_alone() -> None:
    user = _user([(READWRITE, b"foo", b"")])
    assert user.permits(b"foo", b"", READ) and user.permits(b"foo", b"", WRITE)
    assert user.permits(b"foo", b"foo\0", READ)
    assert not user.permits(b"foo", b"fop", READ)
    assert not user.permits(b"foo0", b"", READ)


def test_an_inverted_grant_grants_nothing() -> None:
    assert not _user([(READ, b"c", b"a")]).permits(b"b", b"", READ)
