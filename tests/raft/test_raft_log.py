"""MemoryStorage, the unstable tail and RaftLog: the log's bookkeeping (paper §5.3, §7)."""

from __future__ import annotations

import pytest

from etcdpy.raft.errors import CompactedError, SnapOutOfDateError, UnavailableError
from etcdpy.raft.log import RaftLog
from etcdpy.raft.storage import MemoryStorage
from etcdpy.raft.types import ConfState, Entry, Snapshot, SnapshotMetadata


def _ents(*pairs: tuple[int, int]) -> list[Entry]:
    return [Entry(index=i, term=t) for i, t in pairs]


def _storage(*pairs: tuple[int, int]) -> MemoryStorage:
    """A storage whose dummy entry is the first pair (as after a compaction)."""
    ms = MemoryStorage()
    first = pairs[0]
    ms._ents = _ents(*pairs)
    ms._snapshot = Snapshot(metadata=SnapshotMetadata(index=first[0], term=first[1]))
    return ms


def test_storage_term() -> None:
    """§7: after compaction the storage still knows "the last included index and term" (the
    dummy entry), and refuses older indexes."""
    ms = _storage((3, 3), (4, 4), (5, 5))
    with pytest.raises(CompactedError):
        ms.term(2)
    assert [ms.term(i) for i in (3, 4, 5)] == [3, 4, 5]
    with pytest.raises(UnavailableError):
        ms.term(6)


def test_storage_entries_and_size_limit() -> None:
    """Thesis §10.2.1 (batching): entries travel in batches, here [lo, hi) cut by size, but
    always at least one entry so that progress is possible."""
    ms = _storage((3, 3), (4, 4), (5, 5), (6, 6))
    with pytest.raises(CompactedError):
        ms.entries(3, 5)
    assert ms.entries(4, 7) == _ents((4, 4), (5, 5), (6, 6))
    one = Entry(index=4, term=4).size()
    assert ms.entries(4, 7, 0) == _ents((4, 4))
    assert ms.entries(4, 7, one * 2) == _ents((4, 4), (5, 5))
    assert ms.entries(4, 7, one * 2 + 1) == _ents((4, 4), (5, 5))


def test_storage_compact_and_snapshot() -> None:
    """§7: "the server ... discards all log entries up through the last included index"; the
    snapshot keeps the index, term and configuration."""
    ms = _storage((3, 3), (4, 4), (5, 5))
    cs = ConfState(voters=(1, 2, 3))
    snap = ms.create_snapshot(4, cs, b"data")
    assert snap.metadata == SnapshotMetadata(conf_state=cs, index=4, term=4)
    with pytest.raises(SnapOutOfDateError):
        ms.create_snapshot(4, cs, b"again")
    ms.compact(4)
    assert (ms.first_index(), ms.last_index()) == (5, 5)
    assert ms.term(4) == 4
    with pytest.raises(CompactedError):
        ms.compact(4)


def test_storage_append_truncates_conflicts() -> None:
    """§5.3: new entries replace a conflicting suffix; entries before the first index are
    ignored."""
    ms = _storage((3, 3), (4, 4), (5, 5))
    ms.append(_ents((4, 6), (5, 6)))
    assert ms.entries(4, 6) == _ents((4, 6), (5, 6))
    ms.append(_ents((2, 3), (3, 3), (4, 6), (5, 6), (6, 6)))
    assert ms.last_index() == 6
    ms.append(_ents((7, 7)))
    assert ms.last_index() == 7
    with pytest.raises(ValueError, match="missing log entry"):
        ms.append(_ents((9, 7)))


def test_storage_apply_snapshot() -> None:
    """§7: a received snapshot replaces the whole log; an older one is refused."""
    ms = MemoryStorage()
    snap = Snapshot(metadata=SnapshotMetadata(index=4, term=4, conf_state=ConfState(voters=(1,))))
    ms.apply_snapshot(snap)
    assert (ms.first_index(), ms.last_index(), ms.term(4)) == (5, 4, 4)
    with pytest.raises(SnapOutOfDateError):
        ms.apply_snapshot(Snapshot(metadata=SnapshotMetadata(index=3, term=3)))


def test_log_find_conflict() -> None:
    """§5.3: "If an existing entry conflicts with a new one (same index but different terms),
    delete the existing entry and all that follow it" — find_conflict finds that index."""
    log = RaftLog(MemoryStorage())
    log.append(_ents((1, 1), (2, 2), (3, 3)))
    assert log.find_conflict([]) == 0
    assert log.find_conflict(_ents((1, 1), (2, 2), (3, 3))) == 0
    assert log.find_conflict(_ents((2, 2), (3, 3), (4, 4))) == 4
    assert log.find_conflict(_ents((2, 1), (3, 4), (4, 4))) == 2


def test_log_maybe_append_never_truncates_committed() -> None:
    """§5.4 (Leader Completeness): a committed entry is never overwritten."""
    log = RaftLog(MemoryStorage())
    log.append(_ents((1, 1), (2, 2), (3, 3)))
    log.commit_to(2)
    assert log.maybe_append(3, 3, 3, _ents((4, 4))) == 4
    assert log.committed == 3
    assert log.maybe_append(3, 2, 4, _ents((4, 4))) is None  # mismatched previous term
    with pytest.raises(AssertionError):
        log.maybe_append(1, 1, 4, _ents((2, 4)))


def test_log_find_conflict_by_term() -> None:
    """§5.3 (the optimization): the largest index at or below the given one whose term is not
    larger than the given term."""
    log = RaftLog(MemoryStorage())
    log.append(_ents((1, 1), (2, 1), (3, 2), (4, 2), (5, 5)))
    assert log.find_conflict_by_term(5, 4) == 4
    assert log.find_conflict_by_term(5, 1) == 2
    assert log.find_conflict_by_term(5, 0) == 0
    assert log.find_conflict_by_term(9, 1) == 9  # past the end: unchanged


def test_unstable_stable_to_ignores_replaced_entries() -> None:
    """§5.3: "the leader handles inconsistencies by forcing the followers' logs to duplicate its
    own" — entries may be replaced while the application persists the old ones; marking those
    stable must not drop the replacements (their term differs)."""
    log = RaftLog(MemoryStorage())
    log.append(_ents((1, 1), (2, 1)))
    log.append(_ents((2, 2)))
    log.stable_to(2, 1)
    assert log.unstable_entries() == _ents((1, 1), (2, 2))
    log.stable_to(2, 2)
    assert log.unstable_entries() == []


def test_log_next_ents_respects_size_limit() -> None:
    """§5.3: "Once a follower learns that a log entry is committed, it applies the entry to its
    local state machine (in log order)" — here in batches of at most the configured size."""
    ms = MemoryStorage()
    ms.append([Entry(index=i, term=1, data=b"x" * 84) for i in range(1, 11)])
    log = RaftLog(ms, max_next_ents_size=250)
    log.commit_to(10)
    assert [e.index for e in log.next_ents()] == [1, 2]
    log.applied_to(2)
    assert [e.index for e in log.next_ents()] == [3, 4]


def test_log_is_up_to_date() -> None:
    """§5.4.1: later last term wins; with equal last terms, the longer log wins."""
    log = RaftLog(MemoryStorage())
    log.append(_ents((1, 1), (2, 2), (3, 3)))
    assert log.is_up_to_date(2, 4)
    assert not log.is_up_to_date(5, 2)
    assert log.is_up_to_date(3, 3)
    assert not log.is_up_to_date(2, 3)


def test_log_slice_limit_spans_storage_and_unstable() -> None:
    """Thesis §10.2.1 (batching): one AppendEntries carries entries from stable storage and the
    unstable tail together, within one size budget for both."""
    ms = MemoryStorage()
    ms.append([Entry(index=i, term=1) for i in range(1, 4)])
    log = RaftLog(ms)
    log.append([Entry(index=i, term=1) for i in range(4, 7)])
    one = Entry().size()
    assert [e.index for e in log.slice(2, 7, None)] == [2, 3, 4, 5, 6]
    assert [e.index for e in log.slice(2, 7, one * 3)] == [2, 3, 4]
    assert [e.index for e in log.slice(2, 7, one)] == [2]
    assert [e.index for e in log.slice(4, 7, 0)] == [4]
    with pytest.raises(CompactedError):
        log.slice(0, 2, None)
