"""Quorum arithmetic: committed indexes and election outcomes for majority and joint configs.

A ``MajorityConfig`` is a set of voter ids; a decision needs ``len // 2 + 1`` of them. A
``JointConfig`` pairs the incoming and the outgoing majority (joint consensus, Raft thesis 4.3):
a decision needs both. The outgoing half is empty outside of a joint configuration, and an
empty majority is neutral: it commits every index and wins every vote, so a joint config with
an empty outgoing half behaves exactly like its incoming half.

Worked example: voters (1 2 3) have acknowledged indexes 12, 5 and 6. Sorted, that is
[5, 6, 12]; the two largest values (a majority) are at least 6, so 6 is committed. A voter
that has not reported counts as index 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeAlias

INFINITE_INDEX = 2**64 - 1
"""The committed index of an empty majority: larger than any real index (etcd's MaxUint64)."""

AckedIndexer: TypeAlias = Mapping[int, int] | Callable[[int], int | None]
"""Where a voter's acknowledged index is looked up: a mapping id -> index, or a function that
returns None for a voter it knows nothing about. Both treat an unknown voter as index 0."""


class VoteResult(IntEnum):
    PENDING = 1  # neither a yes-quorum nor a no-quorum yet
    LOST = 2  # a quorum can no longer say yes
    WON = 3  # a quorum said yes

    def __str__(self) -> str:
        return _VOTE_RESULT_NAMES[self]


_VOTE_RESULT_NAMES = {
    VoteResult.PENDING: "VotePending",
    VoteResult.LOST: "VoteLost",
    VoteResult.WON: "VoteWon",
}


def _lookup(acked: AckedIndexer) -> Callable[[int], int | None]:
    if type(acked) is dict:  # the common case, checked without going through the ABC
        return acked.get
    if isinstance(acked, Mapping):
        return acked.get
    return acked


class MajorityConfig(frozenset[int]):
    """An immutable set of voter ids deciding by simple majority."""

    __slots__ = ()

    def sorted_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self))

    def __str__(self) -> str:
        return "(" + " ".join(map(str, sorted(self))) + ")"

    def committed_index(self, acked: AckedIndexer) -> int:
        """The largest index acknowledged by a majority (INFINITE_INDEX for an empty config)."""
        n = len(self)
        if n == 0:
            return INFINITE_INDEX
        get = _lookup(acked)
        if n == 1:
            (only,) = self
            return get(only) or 0
        indexes: list[int] = []
        append = indexes.append
        for voter in self:  # a plain loop: cheaper than a comprehension for a handful of ids
            append(get(voter) or 0)
        indexes.sort()
        # After sorting ascending, the value n//2+1 positions from the end is held by a majority.
        return indexes[n - (n // 2 + 1)]

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        """WON with a yes-majority, LOST once a yes-majority is impossible, else PENDING."""
        n = len(self)
        if n == 0:
            return VoteResult.WON  # neutral element of joint quorums
        yes = 0
        missing = 0
        get = votes.get
        for voter in self:
            vote = get(voter)
            if vote is None:
                missing += 1
            elif vote:
                yes += 1
        quorum = n // 2 + 1
        if yes >= quorum:
            return VoteResult.WON
        if yes + missing >= quorum:
            return VoteResult.PENDING
        return VoteResult.LOST

    def describe(self, acked: AckedIndexer) -> str:
        """A multi-line picture of the acknowledged indexes, in etcd's format (for tests).

        Each voter gets a bar whose length is its rank among the indexes; '?' marks a voter
        whose index is unknown.
        """
        n = len(self)
        if n == 0:
            return "<empty majority quorum>"
        get = _lookup(acked)
        rows: list[tuple[int, int, bool]] = []  # (index, id, known), ordered by index then id
        for voter in sorted(self):
            index = get(voter)
            rows.append((index or 0, voter, index is not None))
        rows.sort()
        bars = {}
        for rank, (index, voter, _) in enumerate(rows):
            # As etcd does, a voter whose index ties with the previous one gets no bar.
            bars[voter] = rank if rank > 0 and rows[rank - 1][0] < index else 0
        lines = [" " * n + "    idx\n"]
        for index, voter, known in sorted(rows, key=lambda row: row[1]):
            bar = bars[voter]
            prefix = "?" + " " * n if not known else "x" * bar + ">" + " " * (n - bar)
            lines.append(f"{prefix} {index:5d}    (id={voter})\n")
        return "".join(lines)


EMPTY_MAJORITY = MajorityConfig()


def majority(ids: Iterable[int] = ()) -> MajorityConfig:
    """Builds a MajorityConfig (a shared empty one when there are no ids)."""
    config = MajorityConfig(ids)
    return config if config else EMPTY_MAJORITY


@dataclass(frozen=True, slots=True)
class JointConfig:
    """Two majorities that must both agree; ``outgoing`` is empty unless in joint consensus."""

    incoming: MajorityConfig = EMPTY_MAJORITY
    outgoing: MajorityConfig = EMPTY_MAJORITY

    def ids(self) -> frozenset[int]:
        """Every voter of either half."""
        if not self.outgoing:
            return self.incoming
        return self.incoming | self.outgoing

    def is_joint(self) -> bool:
        return bool(self.outgoing)

    def __str__(self) -> str:
        if self.outgoing:
            return f"{self.incoming}&&{self.outgoing}"
        return str(self.incoming)

    def committed_index(self, acked: AckedIndexer) -> int:
        """The largest index committed in both halves."""
        if not self.outgoing:
            return self.incoming.committed_index(acked)
        get = _lookup(acked)
        return min(self.incoming.committed_index(get), self.outgoing.committed_index(get))

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        """WON only if both halves won; LOST if either lost; otherwise PENDING."""
        first = self.incoming.vote_result(votes)
        if not self.outgoing:
            return first
        second = self.outgoing.vote_result(votes)
        if first == second:
            return first
        if first == VoteResult.LOST or second == VoteResult.LOST:
            return VoteResult.LOST
        return VoteResult.PENDING

    def describe(self, acked: AckedIndexer) -> str:
        return MajorityConfig(self.ids()).describe(acked)
