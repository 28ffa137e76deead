"""A user's key permissions merged into intervals (etcd's unified range permission cache,
auth/range_perm_cache.go), and the check of a request's key or range against them.

An interval is ``(begin, end)`` over byte strings, half open; ``end`` None is "to the end of
the key space". etcd's rules, as stored in a role's ``authpb.Permission``:

- ``range_end`` empty: the single key, i.e. ``[key, key + b"\\0")``;
- ``range_end == b"\\0"``: every key from ``key`` on (etcdctl's ``--from-key``);
- otherwise ``[key, range_end)``.

A request's key (or range) is permitted iff the union of the user's granted intervals of the
asked type covers it; READWRITE counts as both. Merging the intervals once per user and auth
revision turns each check into one binary search.

Where etcd is loose and etcdpy is strict: a grant whose ``range_end`` is not after its key
grants nothing (etcd inserts the inverted interval into its tree, where it matches by accident),
and a request range whose end is not after its key is checked as its first key alone.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from etcdpy.pb.authpb import auth_pb2 as authpb

Interval = tuple[bytes, bytes | None]

READ = authpb.Permission.READ
WRITE = authpb.Permission.WRITE
READWRITE = authpb.Permission.READWRITE

FROM_KEY = b"\0"


def interval(key: bytes, range_end: bytes) -> Interval | None:
    """The interval a (key, range_end) pair names, or None when it names nothing."""
    if not range_end:
        return (key, key + b"\0")
    if range_end == FROM_KEY:
        return (key, None)
    if range_end <= key:
        return None
    return (key, range_end)


def merge(intervals: Iterable[Interval]) -> tuple[list[bytes], list[bytes | None]]:
    """Sorted, disjoint, non-adjacent intervals covering the same keys, as two lists (begins
    and ends) for bisect."""
    begins: list[bytes] = []
    ends: list[bytes | None] = []
    for begin, end in sorted(intervals, key=lambda ivl: ivl[0]):
        if ends:
            last = ends[-1]
            if last is None:
                break  # the last one reaches the end of the key space
            if begin <= last:  # overlapping or adjacent: extend
                if end is None or end > last:
                    ends[-1] = end
                continue
        begins.append(begin)
        ends.append(end)
    return begins, ends


@dataclass(frozen=True, slots=True)
class MergedIntervals:
    begins: list[bytes]
    ends: list[bytes | None]

    @classmethod
    def of(cls, intervals: Iterable[Interval]) -> MergedIntervals:
        return cls(*merge(intervals))

    def covers(self, begin: bytes, end: bytes | None) -> bool:
        at = bisect_right(self.begins, begin) - 1
        if at < 0:
            return False
        covering_end = self.ends[at]
        if covering_end is None:
            return True
        return end is not None and covering_end >= end and covering_end > begin


@dataclass(frozen=True, slots=True)
class UserPerms:
    """One user's merged read and write intervals."""

    read: MergedIntervals
    write: MergedIntervals

    @classmethod
    def of(cls, permissions: Iterable[authpb.Permission]) -> UserPerms:
        reads: list[Interval] = []
        writes: list[Interval] = []
        for perm in permissions:
            ivl = interval(perm.key, perm.range_end)
            if ivl is None:
                continue
            if perm.permType in (READ, READWRITE):
                reads.append(ivl)
            if perm.permType in (WRITE, READWRITE):
                writes.append(ivl)
        return cls(MergedIntervals.of(reads), MergedIntervals.of(writes))

    def permits(self, key: bytes, range_end: bytes, perm_type: int) -> bool:
        asked = interval(key, range_end) or (key, key + b"\0")
        merged = self.read if perm_type == READ else self.write
        return merged.covers(*asked)
