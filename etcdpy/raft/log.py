"""The raft log as the state machine sees it: stable storage plus the unstable tail.

Invariants: ``applied <= committed <= last_index()``; ``first_index() - 1`` is the index of the
snapshot (or compaction point), whose term is still known.
"""

from __future__ import annotations

from collections.abc import Sequence

from etcdpy.raft.errors import CompactedError, UnavailableError
from etcdpy.raft.log_unstable import Unstable
from etcdpy.raft.storage import Storage
from etcdpy.raft.types import Entry, Snapshot
from etcdpy.raft.util import limited_slice


class RaftLog:
    def __init__(self, storage: Storage, max_next_ents_size: int | None = None) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        # Everything before the first index is in a snapshot, hence committed and applied.
        self.committed = first - 1
        self.applied = first - 1
        self.max_next_ents_size = max_next_ents_size

    def __repr__(self) -> str:
        return (
            f"committed={self.committed}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, "
            f"len(unstable.entries)={len(self.unstable.entries)}"
        )

    # --- appending ----------------------------------------------------------------------------

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: Sequence[Entry]
    ) -> int | None:
        """Append entries a leader sent after (index, log_term); None if that does not match.

        Returns the index of the last new entry.
        """
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict != 0:
            if conflict <= self.committed:
                raise AssertionError(
                    f"entry {conflict} conflicts with committed entry [committed({self.committed})]"
                )
            self.append(entries[conflict - (index + 1) :])
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, entries: Sequence[Entry]) -> int:
        if not entries:
            return self.last_index()
        after = entries[0].index - 1
        if after < self.committed:
            raise AssertionError(f"after({after}) is out of range [committed({self.committed})]")
        self.unstable.truncate_and_append(entries)
        return self.last_index()

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """The index of the first entry whose term differs from ours (or is new), else 0."""
        for e in entries:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest index <= ``index`` whose term is <= ``term`` (for fast backtracking).

        Entries in (result, index] all have a term greater than ``term``, so none of them can
        match a log whose entry at ``index`` has ``term``: the leader can skip them at once.
        """
        if index > self.last_index():
            return index
        while True:
            t = self.term_or_zero(index)
            if t <= term:
                return index
            index -= 1

    # --- reading ------------------------------------------------------------------------------

    def unstable_entries(self) -> list[Entry]:
        return self.unstable.entries

    def next_ents(self) -> list[Entry]:
        """Committed entries not yet applied (cut at ``max_next_ents_size``)."""
        off = max(self.applied + 1, self.first_index())
        if self.committed + 1 > off:
            return self.slice(off, self.committed + 1, self.max_next_ents_size)
        return []

    def has_next_ents(self) -> bool:
        if self.committed <= self.applied:
            return False  # the common case, without asking storage
        return self.committed + 1 > max(self.applied + 1, self.first_index())

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def first_index(self) -> int:
        snap = self.unstable.snapshot
        if snap is not None:
            return snap.metadata.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        u = self.unstable
        if u.entries:
            return u.offset + len(u.entries) - 1
        if u.snapshot is not None:
            return u.snapshot.metadata.index
        return self.storage.last_index()

    def last_term(self) -> int:
        return self.term(self.last_index())

    def term(self, index: int) -> int:
        """The term at ``index``; 0 outside ``[first_index() - 1, last_index()]``.

        Raises CompactedError / UnavailableError when storage cannot answer.
        """
        u = self.unstable
        offset = u.offset
        if offset <= index < offset + len(u.entries):
            return u.entries[index - offset].term  # the hot path: the unstable tail
        dummy = self.first_index() - 1
        if index < dummy or index > self.last_index():
            return 0
        t = u.maybe_term(index)
        if t is not None:
            return t
        return self.storage.term(index)

    def term_or_zero(self, index: int) -> int:
        try:
            return self.term(index)
        except (CompactedError, UnavailableError):
            return 0

    def entries(self, lo: int, max_size: int | None) -> list[Entry]:
        """Entries from ``lo`` to the end, cut at ``max_size``; raises CompactedError."""
        if lo > self.last_index():
            return []
        return self.slice(lo, self.last_index() + 1, max_size)

    def all_entries(self) -> list[Entry]:
        return self.entries(self.first_index(), None)

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Whether a log ending at (last_index, term) is at least as up-to-date as ours (§5.4.1)."""
        last_term = self.last_term()
        return term > last_term or (term == last_term and last_index >= self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        try:
            return self.term(index) == term
        except (CompactedError, UnavailableError):
            return False

    def slice(self, lo: int, hi: int, max_size: int | None) -> list[Entry]:
        """Entries in ``[lo, hi)`` from storage and the unstable tail, cut at ``max_size``."""
        self._check_out_of_bounds(lo, hi)
        if lo == hi:
            return []
        ents: list[Entry] = []
        offset = self.unstable.offset
        if lo < offset:
            stored_hi = min(hi, offset)
            try:
                stored = self.storage.entries(lo, stored_hi, max_size)
            except UnavailableError as exc:
                raise AssertionError(
                    f"entries[{lo}:{stored_hi}) is unavailable from storage"
                ) from exc
            if len(stored) < stored_hi - lo:
                return stored  # cut by max_size already
            ents = stored
        if hi > offset:
            u = self.unstable
            u_lo = max(lo, offset)
            if u_lo < u.offset or hi > u.offset + len(u.entries):
                raise IndexError(f"unstable slice [{u_lo},{hi}) out of bound")
            used = sum(e.size() for e in ents) if max_size is not None else 0
            tail = limited_slice(u.entries, u_lo - u.offset, hi - u.offset, max_size, used)
            ents = ents + tail if ents else tail
        return ents

    def _check_out_of_bounds(self, lo: int, hi: int) -> None:
        if lo > hi:
            raise AssertionError(f"invalid slice {lo} > {hi}")
        first = self.first_index()
        if lo < first:
            raise CompactedError()
        if hi > self.last_index() + 1:
            raise AssertionError(f"slice[{lo},{hi}) out of bound [{first},{self.last_index()}]")

    # --- state changes ------------------------------------------------------------------------

    def commit_to(self, to_commit: int) -> None:
        # Never decrease the commit index (a leader may send an older one).
        if self.committed < to_commit:
            if self.last_index() < to_commit:
                raise AssertionError(
                    f"tocommit({to_commit}) is out of range [lastIndex({self.last_index()})]. "
                    "Was the raft log corrupted, truncated, or lost?"
                )
            self.committed = to_commit

    def applied_to(self, index: int) -> None:
        if index == 0:
            return
        if self.committed < index or index < self.applied:
            raise AssertionError(
                f"applied({index}) is out of range [prevApplied({self.applied}), "
                f"committed({self.committed})]"
            )
        self.applied = index

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        self.unstable.stable_snap_to(index)

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit up to ``max_index`` if that entry is of ``term`` (only current-term, §5.4.2)."""
        if max_index > self.committed and self.term_or_zero(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def restore(self, snap: Snapshot) -> None:
        self.committed = snap.metadata.index
        self.unstable.restore(snap)
