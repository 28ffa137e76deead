"""Unique request ids, laid out as etcd's: 2 bytes of member id, 5 of milliseconds, 1 counter.

The timestamp part makes ids from before and after a restart distinct, so a stale waiter can
never be resolved by a new request's result.
"""

from __future__ import annotations

_SUFFIX_BITS = 48
_COUNTER_BITS = 8
_TS_BITS = _SUFFIX_BITS - _COUNTER_BITS


class RequestIdGenerator:
    __slots__ = ("_prefix", "_suffix")

    def __init__(self, member_id: int, now_ms: int) -> None:
        self._prefix = (member_id & 0xFFFF) << _SUFFIX_BITS
        self._suffix = (now_ms & ((1 << _TS_BITS) - 1)) << _COUNTER_BITS

    def next(self) -> int:
        self._suffix += 1
        return self._prefix | (self._suffix & ((1 << _SUFFIX_BITS) - 1))
