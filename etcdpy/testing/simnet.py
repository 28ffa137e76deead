"""A simulated network: messages in flight, delays, drops, duplicates and partitions.

Everything random comes from the one ``random.Random`` the simulation owns, so a seed fixes the
fate of every message. Time is an integer number of simulated time units (the simulation decides
how many units make a tick).

A message's fate is decided when it is sent (dropped, delayed, duplicated) and checked again when
it is due (a partition that started while it was in flight also loses it). Lost messages still
come out of :meth:`SimNetwork.pop_due`, flagged as lost, so the sender can learn of the loss the
way a real transport would (e.g. to report a failed snapshot).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from etcdpy.raft.types import Message


@dataclass(slots=True)
class NetFaults:
    """The fault mix of the network; change the fields while a run goes on."""

    drop_rate: float = 0.0
    dup_rate: float = 0.0
    min_delay: int = 1
    max_delay: int = 4
    # A share of messages takes a long detour: this is what reorders them.
    long_delay_rate: float = 0.0
    long_delay_max: int = 60


@dataclass(frozen=True, slots=True)
class Delivery:
    msg: Message
    lost: bool


@dataclass(slots=True)
class NetStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0


class SimNetwork:
    def __init__(self, rand: random.Random, faults: NetFaults | None = None) -> None:
        self._rand = rand
        self.faults = faults if faults is not None else NetFaults()
        # heap of (due time, sequence number, message, lost); the sequence number breaks ties
        # in send order, so equal due times never compare messages.
        self._queue: list[tuple[int, int, Message, bool]] = []
        self._seq = 0
        # Directed links (from, to) that currently lose everything. Only tested for membership.
        self._blocked: set[tuple[int, int]] = set()
        self.stats = NetStats()

    # -- partitions --------------------------------------------------------------------------

    def block(self, src: int, dst: int) -> None:
        """One-way partition: messages from ``src`` to ``dst`` are lost."""
        self._blocked.add((src, dst))

    def partition(self, groups: Sequence[Iterable[int]]) -> None:
        """Symmetric partition: nodes in different groups cannot talk either way."""
        members = [sorted(g) for g in groups]
        for i, group in enumerate(members):
            for j, other in enumerate(members):
                if i == j:
                    continue
                for a in group:
                    for b in other:
                        self._blocked.add((a, b))

    def isolate(self, node: int, others: Iterable[int]) -> None:
        self.partition([[node], [o for o in others if o != node]])

    def heal(self) -> None:
        self._blocked.clear()

    def is_blocked(self, src: int, dst: int) -> bool:
        return (src, dst) in self._blocked

    def blocked_links(self) -> list[tuple[int, int]]:
        return sorted(self._blocked)

    # -- traffic -----------------------------------------------------------------------------

    def send(self, now: int, msg: Message) -> None:
        f = self.faults
        rand = self._rand
        self.stats.sent += 1
        copies = 2 if f.dup_rate and rand.random() < f.dup_rate else 1
        if copies == 2:
            self.stats.duplicated += 1
        for _ in range(copies):
            lost = self.is_blocked(msg.from_, msg.to) or bool(
                f.drop_rate and rand.random() < f.drop_rate
            )
            if f.long_delay_rate and rand.random() < f.long_delay_rate:
                delay = rand.randint(f.max_delay, max(f.max_delay, f.long_delay_max))
            else:
                delay = rand.randint(f.min_delay, f.max_delay)
            self._push(now + delay, msg, lost)

    def _push(self, due: int, msg: Message, lost: bool) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (due, self._seq, msg, lost))

    def next_due(self) -> int | None:
        return self._queue[0][0] if self._queue else None

    def pop_due(self, now: int) -> list[Delivery]:
        """Every message due at or before ``now``, in due order; ``lost`` ones must not arrive."""
        out: list[Delivery] = []
        queue = self._queue
        while queue and queue[0][0] <= now:
            _, _, msg, lost = heapq.heappop(queue)
            lost = lost or self.is_blocked(msg.from_, msg.to)
            if lost:
                self.stats.dropped += 1
            else:
                self.stats.delivered += 1
            out.append(Delivery(msg, lost))
        return out

    def drop_to(self, node: int) -> int:
        """Forget every message in flight to ``node`` (used when a node is removed for good)."""
        before = len(self._queue)
        self._queue = [item for item in self._queue if item[2].to != node]
        heapq.heapify(self._queue)
        return before - len(self._queue)

    def in_flight(self) -> int:
        return len(self._queue)
