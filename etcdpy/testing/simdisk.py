"""A simulated disk per node: writes become durable only when fsynced.

The node driver writes three kinds of records, in the order it produces them:

* :class:`RaftWrite`: what one ``Ready`` asked to persist (snapshot, entries, hard state),
  written as one record, as a WAL writes a Ready in one batch;
* :class:`AppRecord`: the application's applied index with its state, like a backend commit;
* :class:`CompactionWrite`: a snapshot the application made, and the log prefix it drops.

Until :meth:`SimDisk.fsync` the records sit in a page cache. A crash keeps a random *prefix* of
the cached records (the OS may have flushed some, always in order) and loses the rest, so the
node restarts from a state that is at least as old as its last fsync and never a mix that no
order of writes could produce.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from etcdpy.raft.types import (
    EMPTY_HARD_STATE,
    EMPTY_SNAPSHOT,
    ConfState,
    Entry,
    HardState,
    Snapshot,
)


@dataclass(frozen=True, slots=True)
class RaftWrite:
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None


@dataclass(frozen=True, slots=True)
class AppRecord:
    applied: int
    state: bytes
    conf_state: ConfState


@dataclass(frozen=True, slots=True)
class CompactionWrite:
    snapshot: Snapshot
    compact_index: int


Write = RaftWrite | AppRecord | CompactionWrite


@dataclass(slots=True)
class DurableState:
    hard_state: HardState = EMPTY_HARD_STATE
    snapshot: Snapshot = EMPTY_SNAPSHOT
    entries: list[Entry] = field(default_factory=list)  # ascending, contiguous
    app: AppRecord | None = None

    def apply(self, write: Write) -> None:
        if isinstance(write, RaftWrite):
            snap = write.snapshot
            if snap is not None and snap.metadata.index > self.snapshot.metadata.index:
                # A received snapshot replaces the log: what followed was another history.
                self.snapshot = snap
                self.entries = []
            if write.entries:
                self._append(write.entries)
            if write.hard_state is not None:
                self.hard_state = write.hard_state
        elif isinstance(write, AppRecord):
            self.app = write
        else:
            if write.snapshot.metadata.index > self.snapshot.metadata.index:
                self.snapshot = write.snapshot
            self.entries = [e for e in self.entries if e.index > write.compact_index]

    def _append(self, new: tuple[Entry, ...]) -> None:
        floor = self.snapshot.metadata.index
        first = new[0].index
        if self.entries:
            start = self.entries[0].index
            if first <= start:
                self.entries = []
            else:
                del self.entries[first - start :]
        self.entries.extend(e for e in new if e.index > floor)

    def log_after_snapshot(self) -> list[Entry]:
        floor = self.snapshot.metadata.index
        return [e for e in self.entries if e.index > floor]


class SimDisk:
    def __init__(self) -> None:
        self.durable = DurableState()
        self._cache: list[Write] = []
        self.fsyncs = 0

    def write(self, record: Write) -> None:
        self._cache.append(record)

    def unsynced(self) -> int:
        return len(self._cache)

    def fsync(self) -> None:
        if not self._cache:
            return
        for record in self._cache:
            self.durable.apply(record)
        self._cache.clear()
        self.fsyncs += 1

    def crash(self, rand: random.Random) -> int:
        """Lose the page cache except a random prefix; returns how many records were lost."""
        kept = rand.randint(0, len(self._cache)) if self._cache else 0
        for record in self._cache[:kept]:
            self.durable.apply(record)
        lost = len(self._cache) - kept
        self._cache.clear()
        return lost
