"""The simulator's checkers, fed hand-made histories: each must flag the broken one."""

from __future__ import annotations

import random

import pytest

from etcdpy.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from etcdpy.testing.checkers import (
    READ,
    WRITE,
    CommitSafety,
    Durability,
    ElectionSafety,
    LeaderCompleteness,
    LogMatching,
    LogView,
    Op,
    StateMachineSafety,
    Violation,
    check_linearizable,
    check_register,
)
from etcdpy.testing.simdisk import AppRecord, CompactionWrite, RaftWrite, SimDisk
from etcdpy.testing.simkv import KVStateMachine, WriteOp
from etcdpy.testing.simnet import NetFaults, SimNetwork

# -- election safety -------------------------------------------------------------------------


def test_election_safety_allows_one_leader_per_term() -> None:
    c = ElectionSafety()
    c.on_leader(1, 2)
    c.on_leader(1, 2)  # the same leader reported twice is fine
    c.on_leader(2, 3)


def test_election_safety_flags_two_leaders_in_a_term() -> None:
    c = ElectionSafety()
    c.on_leader(1, 2)
    with pytest.raises(Violation) as e:
        c.on_leader(3, 2)
    assert e.value.checker == "election-safety"


# -- log matching ----------------------------------------------------------------------------


def _e(index: int, term: int, data: bytes = b"") -> Entry:
    return Entry(term=term, index=index, data=data)


def test_log_matching_accepts_identical_and_diverging_terms() -> None:
    c = LogMatching()
    c.on_persist(1, [_e(1, 1, b"a"), _e(2, 1, b"b")], prev_term=0)
    c.on_persist(2, [_e(1, 1, b"a"), _e(2, 1, b"b")], prev_term=0)
    # A different entry at index 2 is fine in another term (it will be overwritten or not).
    c.on_persist(3, [_e(2, 2, b"x")], prev_term=1)


def test_log_matching_flags_different_entry_with_same_index_and_term() -> None:
    c = LogMatching()
    c.on_persist(1, [_e(1, 1, b"a")], prev_term=0)
    with pytest.raises(Violation) as e:
        c.on_persist(2, [_e(1, 1, b"b")], prev_term=0)
    assert e.value.checker == "log-matching"


def test_log_matching_flags_same_entry_after_a_different_prefix() -> None:
    c = LogMatching()
    c.on_persist(1, [_e(1, 1), _e(2, 2, b"x")], prev_term=0)
    # Node 2 has the same (2, 2) entry but after an entry of term 3 at index 1.
    with pytest.raises(Violation, match="after term"):
        c.on_persist(2, [_e(2, 2, b"x")], prev_term=3)


# -- state machine safety --------------------------------------------------------------------


def test_state_machine_safety_flags_different_entries_applied_at_one_index() -> None:
    c = StateMachineSafety()
    c.on_apply(1, _e(5, 2, b"a"))
    c.on_apply(2, _e(5, 2, b"a"))
    with pytest.raises(Violation) as e:
        c.on_apply(3, _e(5, 3, b"b"))
    assert e.value.checker == "state-machine-safety"


def test_state_machine_safety_flags_different_states_at_one_index() -> None:
    c = StateMachineSafety()
    c.on_state(1, 10, b"h1")
    c.on_state(2, 10, b"h1")
    with pytest.raises(Violation):
        c.on_state(3, 10, b"h2")


# -- durability ------------------------------------------------------------------------------


def test_durability_flags_a_later_leader_without_an_acknowledged_entry() -> None:
    c = Durability()
    c.on_ack(7, 2, bound=3)  # acknowledged by a node in term 3
    log = {5: 2, 6: 2, 7: 2}
    c.on_leader(1, 4, first_index=1, log_term=log.get)
    c.on_leader(2, 5, first_index=9, log_term=lambda i: None)  # compacted past 7
    # A leader of term 3 or older may have won with late votes: not its business.
    c.on_leader(3, 3, first_index=1, log_term={5: 2}.get)
    with pytest.raises(Violation, match="lacks acknowledged entry 7/2"):
        c.on_leader(3, 5, first_index=1, log_term={5: 2, 6: 2, 7: 4}.get)
    with pytest.raises(Violation, match="has nothing"):
        c.on_leader(3, 5, first_index=1, log_term={5: 2}.get)


def test_leader_completeness_flags_a_leader_missing_an_applied_entry() -> None:
    c = LeaderCompleteness()
    c.on_commit(1, 1, bound=2)
    c.on_commit(2, 2, bound=4)
    c.on_commit(2, 2, bound=2)  # another node applied it in an earlier term: tighter bound
    c.on_leader(1, 3, first_index=1, log_term={1: 1, 2: 2}.get)
    with pytest.raises(Violation) as e:
        c.on_leader(2, 3, first_index=1, log_term={1: 1, 2: 3}.get)
    assert e.value.checker == "leader-completeness"
    with pytest.raises(Violation):
        c.on_commit(2, 3, bound=5)  # a different entry committed at the same index


def test_durability_quorum_check_at_the_end() -> None:
    c = Durability()
    c.on_ack(3, 1, bound=1)
    held = {(1, 3), (2, 3)}
    c.check_quorum([1, 2, 3], lambda n, i, t: (n, i) in held)
    with pytest.raises(Violation, match="not by a quorum"):
        c.check_quorum([1, 2, 3, 4, 5], lambda n, i, t: (n, i) in held)


def test_durability_flags_two_acks_at_one_index() -> None:
    c = Durability()
    c.on_ack(3, 1, bound=1)
    with pytest.raises(Violation):
        c.on_ack(3, 2, bound=2)


# -- commit safety (Figure 8 of the Raft paper) ---------------------------------------------


def _log(*terms: int) -> LogView:
    """A log whose entry i (from 1) has term terms[i - 1]."""
    by_index = {i + 1: t for i, t in enumerate(terms)}
    return LogView(len(terms), terms[-1] if terms else 0, by_index.get)


def test_commit_safety_accepts_a_commit_by_a_current_term_quorum() -> None:
    # Figure 8 (e): S1 (term 4) has replicated (3, 4) to S2 and S3; S5 holds (2, 3).
    logs = {1: _log(1, 2, 4), 2: _log(1, 2, 4), 3: _log(1, 2, 4), 4: _log(1), 5: _log(1, 3)}
    CommitSafety().on_commit(1, 2, 2, [[1, 2, 3, 4, 5]], logs)


def test_commit_safety_flags_figure_8_c() -> None:
    # Figure 8 (c): S1 (term 4) counts (2, 2) on S1, S2, S3 and commits it. S5, with (2, 3),
    # can still win votes from S2, S3, S4 and itself: the commit is not safe.
    logs = {1: _log(1, 2, 4), 2: _log(1, 2), 3: _log(1, 2), 4: _log(1), 5: _log(1, 3)}
    with pytest.raises(Violation) as e:
        CommitSafety().on_commit(1, 2, 2, [[1, 2, 3, 4, 5]], logs)
    assert e.value.checker == "commit-safety"


def test_commit_safety_needs_both_halves_of_a_joint_config() -> None:
    logs = {1: _log(1, 2, 4), 2: _log(1, 2), 3: _log(1, 3), 4: _log(1, 2, 4), 5: _log(1, 2, 4)}
    # Node 3 disagrees at 2: it wins in {1, 2, 3} (votes of 2 and 3) but not in {3, 4, 5}.
    CommitSafety().on_commit(1, 2, 2, [[1, 2, 3], [3, 4, 5]], logs)
    with pytest.raises(Violation):
        CommitSafety().on_commit(1, 2, 2, [[1, 2, 3]], logs)


# -- linearizability -------------------------------------------------------------------------


def w(client: int, value: int, invoke: int, complete: int | None) -> Op:
    return Op(client, WRITE, 0, value, invoke, complete)


def r(client: int, value: int | None, invoke: int, complete: int) -> Op:
    return Op(client, READ, 0, value, invoke, complete)


def test_linearizable_sequential_history() -> None:
    ops = [w(1, 10, 1, 2), r(2, 10, 3, 4), w(1, 11, 5, 6), r(2, 11, 7, 8)]
    assert check_register(ops) is None


def test_stale_read_is_not_linearizable() -> None:
    # The write of 11 completed before the read started, yet the read saw 10.
    ops = [w(1, 10, 1, 2), w(1, 11, 3, 4), r(2, 10, 5, 6)]
    problem = check_register(ops)
    assert problem is not None and "no linearization" in problem
    with pytest.raises(Violation) as e:
        check_linearizable(ops)
    assert e.value.checker == "linearizability"


def test_concurrent_operations_may_take_either_order() -> None:
    # Both writes overlap both reads: 11 then 10, read in that order, is a linearization.
    ops = [w(1, 10, 1, 8), w(2, 11, 2, 9), r(3, 11, 3, 5), r(3, 10, 6, 7)]
    assert check_register(ops) is None


def test_reads_cannot_go_back_in_time() -> None:
    # r1 saw the new value, r2 started after r1 finished and saw the old one.
    ops = [w(1, 10, 1, 2), w(1, 11, 3, 20), r(2, 11, 4, 5), r(3, 10, 6, 7)]
    assert check_register(ops) is not None


def test_read_of_a_never_written_value_fails() -> None:
    assert check_register([w(1, 10, 1, 2), r(2, 99, 3, 4)]) is not None


def test_read_of_nothing_before_any_write() -> None:
    assert check_register([r(1, None, 1, 2), w(1, 10, 3, 4)]) is None
    assert check_register([w(1, 10, 1, 2), r(1, None, 3, 4)]) is not None


def test_unknown_write_may_take_effect_late_or_never() -> None:
    # The write of 11 timed out (complete=None): a read long after may still see it...
    ops = [w(1, 10, 1, 2), w(2, 11, 3, None), r(3, 10, 4, 5), r(3, 11, 40, 41)]
    assert check_register(ops) is None
    # ...or never see it.
    assert check_register([w(1, 10, 1, 2), w(2, 11, 3, None), r(3, 10, 40, 41)]) is None
    # But not before it was invoked.
    assert check_register([w(1, 10, 1, 2), r(3, 11, 3, 4), w(2, 11, 5, None)]) is not None


def test_histories_are_checked_per_key() -> None:
    ops = [Op(1, WRITE, 0, 10, 1, 2), Op(1, WRITE, 1, 20, 3, 4), Op(2, READ, 0, 10, 5, 6)]
    check_linearizable(ops)
    with pytest.raises(Violation):
        check_linearizable([*ops, Op(2, READ, 1, 10, 7, 8)])


def test_larger_random_concurrent_history_is_checked_quickly() -> None:
    # A register history made by a real sequential order with overlapping intervals.
    rand = random.Random(5)
    ops: list[Op] = []
    value: int | None = None
    t = 0
    for i in range(120):
        t += 2
        invoke = t - rand.randint(0, 5)
        complete = t + rand.randint(1, 5)
        if rand.random() < 0.5:
            value = i
            ops.append(Op(i % 4, WRITE, 0, i, invoke, complete))
        else:
            ops.append(Op(i % 4, READ, 0, value, invoke, complete))
    # Event ranks must be distinct: spread them.
    ops = [
        Op(
            o.client,
            o.kind,
            o.key,
            o.value,
            o.invoke * 1000 + n,
            (o.complete or 0) * 1000 + n + 500,
        )
        for n, o in enumerate(ops)
    ]
    assert check_register(ops) is None


# -- the simulated network, disk and state machine -------------------------------------------


def test_network_partitions_drop_and_heal() -> None:
    net = SimNetwork(random.Random(1), NetFaults(min_delay=1, max_delay=1))
    m12 = Message(type=MessageType.HEARTBEAT, from_=1, to=2)
    m21 = Message(type=MessageType.HEARTBEAT, from_=2, to=1)
    net.block(1, 2)  # one way only
    net.send(0, m12)
    net.send(0, m21)
    got = net.pop_due(1)
    assert [(d.msg.from_, d.lost) for d in got] == [(1, True), (2, False)]
    net.heal()
    net.partition([[1], [2, 3]])
    net.send(1, m21)
    assert [d.lost for d in net.pop_due(5)] == [True]


def test_network_duplicates_and_reorders() -> None:
    net = SimNetwork(
        random.Random(3),
        NetFaults(dup_rate=1.0, min_delay=1, max_delay=2, long_delay_rate=0.5, long_delay_max=50),
    )
    for i in range(20):
        net.send(0, Message(type=MessageType.APP, from_=1, to=2, index=i))
    got = net.pop_due(1000)
    indexes = [d.msg.index for d in got]
    assert len(indexes) == 40 and sorted(set(indexes)) == list(range(20))
    assert indexes != sorted(indexes)  # some arrived out of order


def test_disk_crash_keeps_synced_writes_and_a_prefix_of_the_rest() -> None:
    outcomes = set()
    for seed in range(20):
        disk = SimDisk()
        disk.write(RaftWrite(HardState(term=1, vote=1), (_e(1, 1), _e(2, 1)), None))
        disk.fsync()
        disk.write(RaftWrite(HardState(term=2, vote=2, commit=2), (_e(3, 2),), None))
        disk.write(AppRecord(2, b"", ConfState(voters=(1,))))
        lost = disk.crash(random.Random(seed))
        d = disk.durable
        assert disk.unsynced() == 0
        got = (d.hard_state.term, len(d.entries), d.app is not None)
        # Synced: term 1 and two entries. Then, in order: term 2 with entry 3, the app record.
        assert got == [(2, 3, True), (2, 3, False), (1, 2, False)][lost]
        outcomes.add(lost)
    assert outcomes == {0, 1, 2}


def test_disk_entries_truncate_and_compact() -> None:
    disk = SimDisk()
    disk.write(RaftWrite(None, (_e(1, 1), _e(2, 1), _e(3, 1)), None))
    disk.write(RaftWrite(None, (_e(2, 2),), None))  # a new leader overwrote 2 and 3
    snap = Snapshot(b"s", SnapshotMetadata(ConfState(voters=(1,)), 1, 1))
    disk.write(CompactionWrite(snap, 1))
    disk.fsync()
    assert [(e.index, e.term) for e in disk.durable.entries] == [(2, 2)]
    assert disk.durable.snapshot.metadata.index == 1


def test_kv_state_machine_applies_each_request_once() -> None:
    sm = KVStateMachine()
    assert sm.apply(WriteOp(1, 1, 0, 10).encode()) is not None
    assert sm.apply(WriteOp(1, 1, 0, 10).encode()) is None  # a retry
    assert sm.apply(WriteOp(2, 1, 0, 20).encode()) is not None
    again = KVStateMachine.decode(sm.encode())
    assert again.read(0) == 20 and again.digest() == sm.digest()


def test_entry_type_is_part_of_log_identity() -> None:
    c = LogMatching()
    c.on_persist(1, [Entry(1, 1, EntryType.NORMAL, b"")], prev_term=0)
    with pytest.raises(Violation):
        c.on_persist(2, [Entry(1, 1, EntryType.CONF_CHANGE, b"")], prev_term=0)
