"""The leader's view of its followers: per-peer progress, flow control and the active config.

Replication state of one follower (``Progress.state``), as the leader sees it:

    PROBE      the follower's last index is unknown: send one append per heartbeat interval
               and wait for its answer (``probe_sent`` pauses further appends).
    REPLICATE  steady state: send appends eagerly, advancing ``next`` optimistically, limited
               by the ``Inflights`` window.
    SNAPSHOT   the follower needs entries the leader no longer has: a snapshot is on its way,
               nothing else is sent until it is reported done or failed.

Transitions (driven by the raft core):
    PROBE     -> REPLICATE  an append was accepted        (become_replicate)
    PROBE     -> SNAPSHOT   the needed entries are compacted (become_snapshot)
    REPLICATE -> PROBE      an append was rejected, or the peer is unreachable (become_probe)
    SNAPSHOT  -> PROBE      the snapshot was applied or failed (become_probe)
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from etcdpy.raft.quorum import INFINITE_INDEX, JointConfig, MajorityConfig, VoteResult
from etcdpy.raft.types import ConfState

DEFAULT_MAX_INFLIGHT = 256


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2

    def __str__(self) -> str:
        return _STATE_NAMES[self]


_STATE_NAMES = {
    ProgressState.PROBE: "StateProbe",
    ProgressState.REPLICATE: "StateReplicate",
    ProgressState.SNAPSHOT: "StateSnapshot",
}


class Inflights:
    """A bounded window of appends sent to one follower and not yet acknowledged.

    Each slot holds the last log index of one append message. Indexes are added in increasing
    order, so an acknowledgement of index ``i`` frees a prefix of the window, found by
    bisection. The ring buffer has a fixed capacity (the maximum inflight messages) and is
    allocated once.
    """

    __slots__ = ("_buffer", "_count", "_size", "_start")

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"inflights size must be positive, got {size}")
        self._size = size
        self._start = 0
        self._count = 0
        self._buffer = [0] * size

    @property
    def size(self) -> int:
        return self._size

    def count(self) -> int:
        return self._count

    def full(self) -> bool:
        return self._count == self._size

    def add(self, index: int) -> None:
        """Records an append whose last entry is ``index`` (callers check ``full()`` first)."""
        count = self._count
        size = self._size
        if count == size:
            raise RuntimeError("cannot add into a full inflights")
        slot = self._start + count
        if slot >= size:
            slot -= size
        self._buffer[slot] = index
        self._count = count + 1

    def free_le(self, to: int) -> None:
        """Frees every inflight append whose index is <= ``to``."""
        count = self._count
        if count == 0:
            return
        buffer = self._buffer
        start = self._start
        if to < buffer[start]:
            return  # left of the window: a stale acknowledgement
        size = self._size
        end = start + count
        if end <= size:
            freed = bisect_right(buffer, to, start, end) - start
        else:
            first = bisect_right(buffer, to, start, size)
            freed = first - start
            if first == size:
                freed += bisect_right(buffer, to, 0, end - size)
        count -= freed
        self._count = count
        if count == 0:
            self._start = 0  # start over at the front of the buffer
        else:
            start += freed
            self._start = start - size if start >= size else start

    def free_first_one(self) -> None:
        """Frees the oldest inflight append, and any with the same index (no-op when empty)."""
        if self._count:
            self.free_le(self._buffer[self._start])

    def reset(self) -> None:
        self._count = 0
        self._start = 0

    def indexes(self) -> list[int]:
        """The inflight indexes, oldest first (for tests and debugging)."""
        buffer, start, size = self._buffer, self._start, self._size
        return [buffer[(start + i) % size] for i in range(self._count)]

    def clone(self) -> Inflights:
        copy = Inflights(self._size)
        copy._buffer = self._buffer.copy()
        copy._start = self._start
        copy._count = self._count
        return copy

    def __repr__(self) -> str:
        return f"Inflights(size={self._size}, indexes={self.indexes()})"


def _default_inflights() -> Inflights:
    return Inflights(DEFAULT_MAX_INFLIGHT)


@dataclass(slots=True, eq=False)
class Progress:
    """A follower's replication progress, tracked by the leader.

    ``match`` is the highest index known to be in the follower's log; ``next`` is the next
    index to send. Both only describe what the leader knows, never what the follower has lost.
    """

    next: int = 0
    match: int = 0
    state: ProgressState = ProgressState.PROBE
    # In SNAPSHOT: the index of the snapshot on its way; replication waits until it is reported.
    pending_snapshot: int = 0
    # Set by any message from the follower, cleared by the leader every election timeout
    # (CheckQuorum).
    recent_active: bool = False
    # In PROBE: an append is out, wait for its answer (or the next heartbeat) before another.
    probe_sent: bool = False
    inflights: Inflights = field(default_factory=_default_inflights)
    is_learner: bool = False

    def reset_state(self, state: ProgressState) -> None:
        """Moves to ``state``, clearing probe_sent, pending_snapshot and the inflights."""
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def probe_acked(self) -> None:
        """The follower accepted an append: further appends may go out without waiting."""
        self.probe_sent = False

    def become_probe(self) -> None:
        """Back to probing from match+1, or past a snapshot that the follower now has."""
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self.reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self.reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self.reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self.reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, n: int) -> bool:
        """An append response acknowledged index ``n``; False if it told nothing new."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        if self.next <= n:
            self.next = n + 1
        return updated

    def optimistic_update(self, n: int) -> None:
        """Appends up to ``n`` are on their way."""
        self.next = n + 1

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """Reacts to a rejected append of index ``rejected``; ``match_hint`` is the follower's
        hint (its last index). Returns False for a stale rejection, which changes nothing."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # already acknowledged: the rejection is out of date
            self.next = self.match + 1
            return True
        # Probing sends one append at a time, so only a rejection of next-1 is current.
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        """Whether the leader must hold back appends to this follower for now."""
        state = self.state
        if state == ProgressState.PROBE:
            return self.probe_sent
        if state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True  # SNAPSHOT

    def __str__(self) -> str:
        parts = [f"{self.state} match={self.match} next={self.next}"]
        if self.is_learner:
            parts.append(" learner")
        if self.is_paused():
            parts.append(" paused")
        if self.pending_snapshot > 0:
            parts.append(f" pendingSnap={self.pending_snapshot}")
        if not self.recent_active:
            parts.append(" inactive")
        inflight = self.inflights.count()
        if inflight > 0:
            parts.append(f" inflight={inflight}")
            if self.inflights.full():
                parts.append("[full]")
        return "".join(parts)


ProgressMap = dict[int, Progress]


def describe_progress_map(progress: ProgressMap) -> str:
    """One ``id: progress`` line per peer, in id order."""
    return "".join(f"{peer}: {progress[peer]}\n" for peer in sorted(progress))


EMPTY_IDS: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """The active membership.

    Invariants (checked by confchange): learners share no id with either half of ``voters``;
    ``learners_next`` holds voters of the outgoing half that become learners when the joint
    configuration is left (they cannot be learners and voters at once); outside a joint config
    ``learners_next`` is empty and ``auto_leave`` is False.
    """

    voters: JointConfig = field(default_factory=JointConfig)
    learners: frozenset[int] = EMPTY_IDS
    learners_next: frozenset[int] = EMPTY_IDS
    # Joint only: leave the joint configuration automatically once it is committed.
    auto_leave: bool = False

    def __str__(self) -> str:
        text = f"voters={self.voters}"
        if self.learners:
            text += f" learners={MajorityConfig(self.learners)}"
        if self.learners_next:
            text += f" learners_next={MajorityConfig(self.learners_next)}"
        if self.auto_leave:
            text += " autoleave"
        return text


class ProgressTracker:
    """The active configuration, every peer's Progress and the votes of the current election."""

    __slots__ = ("config", "max_inflight", "progress", "votes")

    def __init__(self, max_inflight: int = DEFAULT_MAX_INFLIGHT) -> None:
        self.max_inflight = max_inflight
        self.config = TrackerConfig()
        self.progress: ProgressMap = {}
        self.votes: dict[int, bool] = {}

    # The config, as the raft core reads it.
    @property
    def voters(self) -> JointConfig:
        return self.config.voters

    @property
    def learners(self) -> frozenset[int]:
        return self.config.learners

    @property
    def learners_next(self) -> frozenset[int]:
        return self.config.learners_next

    @property
    def auto_leave(self) -> bool:
        return self.config.auto_leave

    def set_config(self, config: TrackerConfig, progress: ProgressMap) -> None:
        """Installs a configuration and progress map, as produced by confchange."""
        self.config = config
        self.progress = progress

    def conf_state(self) -> ConfState:
        config = self.config
        return ConfState(
            voters=config.voters.incoming.sorted_ids(),
            learners=tuple(sorted(config.learners)),
            voters_outgoing=config.voters.outgoing.sorted_ids(),
            learners_next=tuple(sorted(config.learners_next)),
            auto_leave=config.auto_leave,
        )

    def is_singleton(self) -> bool:
        """Whether there is exactly one voter (the leader) and no joint configuration."""
        voters = self.config.voters
        return len(voters.incoming) == 1 and not voters.outgoing

    def committed(self) -> int:
        """The largest log index acknowledged by a quorum of the voters."""
        voters = self.config.voters
        index = _majority_match(voters.incoming, self.progress)
        if voters.outgoing:
            index = min(index, _majority_match(voters.outgoing, self.progress))
        return index

    def visit(self, fn: Callable[[int, Progress], None]) -> None:
        """Calls ``fn(id, progress)`` for every tracked peer, in increasing id order."""
        progress = self.progress
        for peer in sorted(progress):
            fn(peer, progress[peer])

    def quorum_active(self) -> bool:
        """Whether a quorum of voters was recently active (CheckQuorum)."""
        active = {peer: pr.recent_active for peer, pr in self.progress.items() if not pr.is_learner}
        return self.config.voters.vote_result(active) == VoteResult.WON

    def voter_nodes(self) -> list[int]:
        return sorted(self.config.voters.ids())

    def learner_nodes(self) -> list[int]:
        return sorted(self.config.learners)

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, peer: int, granted: bool) -> None:
        """Records ``peer``'s vote; only its first answer in an election counts."""
        self.votes.setdefault(peer, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        """(granted, rejected, outcome); the counts only include current voters."""
        granted = rejected = 0
        votes = self.votes
        for peer, pr in self.progress.items():
            if pr.is_learner:
                continue
            vote = votes.get(peer)
            if vote is None:
                continue
            if vote:
                granted += 1
            else:
                rejected += 1
        return granted, rejected, self.config.voters.vote_result(votes)


def _majority_match(config: MajorityConfig, progress: ProgressMap) -> int:
    """MajorityConfig.committed_index over the voters' match indexes, inlined for speed: the
    leader runs this on every append response."""
    n = len(config)
    if n == 0:
        return INFINITE_INDEX
    get = progress.get
    matches: list[int] = []
    append = matches.append
    for voter in config:
        pr = get(voter)
        append(0 if pr is None else pr.match)
    matches.sort()
    return matches[n - (n // 2 + 1)]
