"""The raft log's durable side: the ``Storage`` protocol and an in-memory implementation.

The raft core only reads storage; the application writes to it (``append``, ``set_hard_state``,
``apply_snapshot``) after it has processed a ``Ready``. ``MemoryStorage`` keeps a dummy entry at
position 0 that holds the index and term of the last compacted entry (or of the snapshot), so
``term(first_index() - 1)`` still answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from etcdpy.raft.errors import CompactedError, SnapOutOfDateError, UnavailableError
from etcdpy.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from etcdpy.raft.util import limited_slice


class Storage(Protocol):
    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the configuration of the latest snapshot."""
        ...

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries in ``[lo, hi)``, cut at ``max_size`` bytes but at least one if any."""
        ...

    def term(self, index: int) -> int:
        """The term of the entry at ``index`` (``first_index() - 1`` included)."""
        ...

    def last_index(self) -> int: ...

    def first_index(self) -> int:
        """The index of the first entry still available (the snapshot index + 1)."""
        ...

    def snapshot(self) -> Snapshot: ...


class MemoryStorage:
    """A ``Storage`` kept in memory, with etcd's ``MemoryStorage`` semantics."""

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot = Snapshot()
        # _ents[0] is the dummy entry at the snapshot/compaction point.
        self._ents: list[Entry] = [Entry()]

    # --- Storage protocol ---------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.metadata.conf_state

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise CompactedError()
        if hi > self._last_index() + 1:
            raise ValueError(f"entries' hi({hi}) is out of bound lastindex({self._last_index()})")
        if len(self._ents) == 1:
            raise UnavailableError()
        return limited_slice(self._ents, lo - offset, hi - offset, max_size)

    def term(self, index: int) -> int:
        offset = self._ents[0].index
        if index < offset:
            raise CompactedError()
        if index - offset >= len(self._ents):
            raise UnavailableError()
        return self._ents[index - offset].term

    def last_index(self) -> int:
        return self._last_index()

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # --- writes by the application ------------------------------------------------------------

    def set_hard_state(self, hs: HardState) -> None:
        self._hard_state = hs

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log by ``snap`` (its index must be newer than ours)."""
        if self._snapshot.metadata.index >= snap.metadata.index:
            raise SnapOutOfDateError()
        self._snapshot = snap
        self._ents = [Entry(term=snap.metadata.term, index=snap.metadata.index)]

    def create_snapshot(self, index: int, conf_state: ConfState | None, data: bytes) -> Snapshot:
        """Record a snapshot of the state machine at ``index`` (log entries are kept)."""
        if index <= self._snapshot.metadata.index:
            raise SnapOutOfDateError()
        offset = self._ents[0].index
        if index > self._last_index():
            raise ValueError(f"snapshot {index} is out of bound lastindex({self._last_index()})")
        cs = conf_state if conf_state is not None else self._snapshot.metadata.conf_state
        self._snapshot = Snapshot(
            data=data,
            metadata=SnapshotMetadata(
                conf_state=cs, index=index, term=self._ents[index - offset].term
            ),
        )
        return self._snapshot

    def compact(self, index: int) -> None:
        """Drop the entries up to ``index``; the entry at ``index`` becomes the dummy."""
        offset = self._ents[0].index
        if index <= offset:
            raise CompactedError()
        if index > self._last_index():
            raise ValueError(f"compact {index} is out of bound lastindex({self._last_index()})")
        i = index - offset
        kept = self._ents[i]
        self._ents = [Entry(term=kept.term, index=kept.index), *self._ents[i + 1 :]]

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries, replacing any existing suffix they overlap."""
        if not entries:
            return
        first = self.first_index()
        last = entries[0].index + len(entries) - 1
        if last < first:
            return  # everything is already compacted
        if first > entries[0].index:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._ents[0].index
        if len(self._ents) > offset:
            del self._ents[offset:]
            self._ents.extend(entries)
        elif len(self._ents) == offset:
            self._ents.extend(entries)
        else:
            raise ValueError(
                f"missing log entry [last: {self._last_index()}, append at: {entries[0].index}]"
            )

    def _last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1
