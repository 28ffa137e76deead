"""Log replication beyond the paper's basic rules: repair with fast backtracking, the figure 8
commitment rule, flow control, and the uncommitted-size limit."""

from __future__ import annotations

import pytest

from etcdpy.raft.errors import ProposalDroppedError
from etcdpy.raft.tracker import ProgressState
from etcdpy.raft.types import Entry, HardState, Message, MessageType, StateType
from tests.raft.harness import Network, become_leader, memory_storage, new_raft, read_messages

MT = MessageType


def _log(*runs: tuple[int, int]) -> list[Entry]:
    """Entries from (term, count) runs, indexes from 1."""
    out: list[Entry] = []
    for term, count in runs:
        for _ in range(count):
            out.append(Entry(term=term, index=len(out) + 1))
    return out


def _divergent_network(follower_log: list[Entry], follower_term: int) -> Network:
    leader_log = _log((1, 5), (3, 45))
    net = Network([1, 2, 3])
    for node_id, log, term in (
        (1, leader_log, 3),
        (2, follower_log, follower_term),
        (3, leader_log, 3),
    ):
        net.storages[node_id].append(log)
        net.storages[node_id].set_hard_state(HardState(term=term))
        net.add_node(node_id, net.storages[node_id])
    return net


@pytest.mark.parametrize(
    "follower_log",
    [
        _log((1, 5), (2, 45)),  # a long divergent tail of an older term
        _log((1, 5)),  # a short log
        _log((1, 5), (2, 80)),  # a divergent tail longer than the leader's log
    ],
)
def test_log_repair_with_fast_backtracking(follower_log: list[Entry]) -> None:
    """§5.3: "If desired, the protocol can be optimized to reduce the number of rejected
    AppendEntries RPCs. For example, when rejecting an AppendEntries request, the follower can
    include the term of the conflicting entry and the first index it stores for that term. With
    this information, the leader can decrement nextIndex to bypass all of the conflicting entries
    in that term; one AppendEntries RPC will be required for each term with conflicting entries,
    rather than one RPC per entry." """
    net = _divergent_network(follower_log, 2)
    net.campaign(1)
    assert net.state(1) == StateType.LEADER
    rejections = [m for m in net.delivered if m.type == MT.APP_RESP and m.reject and m.from_ == 2]
    # One rejection per conflicting term, not one per entry (the tails are 45+ entries long).
    assert 1 <= len(rejections) <= 2
    assert net.raft(2).raft_log.all_entries() == net.raft(1).raft_log.all_entries()
    assert net.raft(2).raft_log.committed == net.raft(1).raft_log.last_index()


def test_rejection_hint_points_below_conflicting_term() -> None:
    """§5.3 (the optimization): the follower's rejection names an index at or before which its
    log can match (the last entry whose term is <= the leader's term at the probed index)."""
    s = memory_storage([1, 2], entries=_log((1, 3), (2, 4)))
    r = new_raft(2, [1, 2], storage=s)
    r._become_follower(5, 1)
    r.step(Message(type=MT.APP, from_=1, to=2, term=5, index=7, log_term=4))
    (resp,) = read_messages(r)
    assert resp.reject
    assert (resp.reject_hint, resp.log_term) == (7, 2)
    r.step(Message(type=MT.APP, from_=1, to=2, term=5, index=6, log_term=1))
    (resp,) = read_messages(r)
    assert (resp.reject_hint, resp.log_term) == (3, 1)


def test_figure_8_only_current_term_entries_are_committed_by_counting() -> None:
    """§5.4.2 (figure 8): "a log entry [from an earlier term] is stored on a majority of servers
    ... [and] could still be overwritten by a future leader"; therefore "Raft never commits log
    entries from previous terms by counting replicas. Only log entries from the leader's current
    term are committed by counting replicas; once an entry from the current term has been
    committed in this way, then all prior entries are committed indirectly." """
    ids = [1, 2, 3, 4, 5]
    # S1 led term 1 and put index 2 on S1 and S2; it is now leader again, in term 3.
    s1 = memory_storage(ids, entries=_log((1, 2)))
    s1.set_hard_state(HardState(term=2, commit=1))
    r1 = new_raft(1, ids, storage=s1)
    become_leader(r1)
    assert r1.term == 3
    read_messages(r1)
    # (c) S1 replicates index 2 to S3: a majority (S1, S2, S3) has it, but it is of term 1.
    for follower in (2, 3):
        r1.step(Message(type=MT.APP_RESP, from_=follower, to=1, term=3, index=2))
    assert r1.raft_log.committed == 1

    # (d) Indeed S5, which holds a term-2 entry at index 2, can still win S3's vote...
    s3 = memory_storage(ids, entries=_log((1, 2)))
    s3.set_hard_state(HardState(term=3))
    r3 = new_raft(3, ids, storage=s3)
    r3.step(Message(type=MT.VOTE, from_=5, to=3, term=4, index=2, log_term=2))
    assert [(m.type, m.reject) for m in read_messages(r3)] == [(MT.VOTE_RESP, False)]
    # ... and would overwrite index 2 on S3 as its leader.
    r3.step(
        Message(
            type=MT.APP,
            from_=5,
            to=3,
            term=4,
            index=1,
            log_term=1,
            entries=(Entry(term=2, index=2),),
        )
    )
    assert r3.raft_log.term(2) == 2

    # (e) Once S1's term-3 entry reaches a majority, index 2 is committed with it.
    for follower in (2, 3):
        r1.step(Message(type=MT.APP_RESP, from_=follower, to=1, term=3, index=3))
    assert r1.raft_log.committed == 3


def test_new_leader_commits_previous_terms_entries_through_its_noop() -> None:
    """§8: "a leader must have the latest information on which entries are committed ... Raft
    handles this by having each leader commit a blank no-op entry into the log at the start of
    its term." """
    net = Network([1, 2, 3])
    net.campaign(1)
    net.isolate(1)
    net.cut_links.discard((1, 2))
    net.cut_links.discard((2, 1))
    net.nodes[1].propose(b"old")
    net.stabilize()
    # Replicated on 1 and 2: committed in term 1 by counting (it is the leader's own term).
    assert net.applied_data(1) == [b"old"]
    assert net.raft(2).raft_log.committed < 3  # 2 has not learned it yet
    net.recover()
    net.isolate(1)
    net.campaign(2)
    assert net.state(2) == StateType.LEADER
    # 2's empty entry of term 2 commits the term-1 entry on 2 and 3.
    assert net.applied_data(2) == [b"old"]
    assert net.applied_data(3) == [b"old"]


# --- flow control ------------------------------------------------------------------------------


def test_flow_control_full_window_pauses_replication() -> None:
    """Thesis §10.2.1 (pipelining): the leader sends AppendEntries without waiting for answers,
    but limits the number in flight; when the window is full it pauses until answers arrive."""
    r = new_raft(1, [1, 2], max_inflight_msgs=3)
    become_leader(r)
    read_messages(r)
    pr2 = r.prs.progress[2]
    pr2.become_replicate()
    for i in range(3):
        r.step(Message(type=MT.PROP, from_=1, entries=(Entry(data=b"x"),)))
        msgs = read_messages(r)
        assert [m.type for m in msgs] == [MT.APP], i
    assert pr2.inflights.full()
    for _ in range(5):
        r.step(Message(type=MT.PROP, from_=1, entries=(Entry(data=b"x"),)))
        assert read_messages(r) == []

    # An answer frees the window, and the backlog goes out in one message.
    first_sent_last_index = 2
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=r.term, index=first_sent_last_index))
    msgs = read_messages(r)
    assert len(msgs) == 1 and msgs[0].type == MT.APP
    assert [e.index for e in msgs[0].entries] == list(range(5, 10))


def test_flow_control_heartbeat_response_frees_one_slot() -> None:
    """Thesis §10.2.1: a full window might hide a lost message; a heartbeat answer frees one slot
    so that replication resumes (etcd's behaviour)."""
    r = new_raft(1, [1, 2], max_inflight_msgs=2)
    become_leader(r)
    read_messages(r)
    pr2 = r.prs.progress[2]
    pr2.become_replicate()
    for _ in range(4):
        r.step(Message(type=MT.PROP, from_=1, entries=(Entry(data=b"x"),)))
        read_messages(r)  # one Ready per proposal
    assert pr2.inflights.full()
    r.step(Message(type=MT.HEARTBEAT_RESP, from_=2, to=1, term=r.term))
    # The oldest slot (entry 2) was freed and reused for the backlog (entries 4 and 5).
    msgs = read_messages(r)
    assert [(m.type, [e.index for e in m.entries]) for m in msgs] == [(MT.APP, [4, 5])]
    assert pr2.inflights.indexes() == [3, 5]


def test_probe_state_sends_one_append_at_a_time() -> None:
    """§5.3: while the leader searches for the point where the follower's log matches, it sends
    one AppendEntries and waits for the answer (etcd's probe state); a heartbeat answer lets it
    probe again."""
    r = new_raft(1, [1, 2])
    become_leader(r)
    read_messages(r)
    assert r.prs.progress[2].state == ProgressState.PROBE
    r.bcast_append()
    assert [m.type for m in read_messages(r)] == [MT.APP]
    for _ in range(3):
        r.step(Message(type=MT.PROP, from_=1, entries=(Entry(data=b"x"),)))
    assert read_messages(r) == []
    r.step(Message(type=MT.HEARTBEAT_RESP, from_=2, to=1, term=r.term))
    assert [m.type for m in read_messages(r)] == [MT.APP]


def test_max_size_per_msg_limits_append() -> None:
    """Thesis §10.2.1 (batching): AppendEntries carry many entries, but no more than
    max_size_per_msg bytes (at least one entry, so a large entry still goes through)."""
    r = new_raft(1, [1, 2], max_size_per_msg=100)
    become_leader(r)
    read_messages(r)
    for _ in range(10):
        r._append_entry([Entry(data=b"y" * 34)])  # 50 bytes each with the 16-byte overhead
    r.prs.progress[2].become_replicate()
    r.send_append(2)
    (m,) = read_messages(r)
    assert len(m.entries) == 2


def test_max_uncommitted_entries_size_drops_proposals() -> None:
    """etcd's max_uncommitted_entries_size (a guard for thesis §10.2's batching): a leader that
    cannot commit stops accepting proposals once its uncommitted tail is too large, and accepts
    them again once entries commit."""
    net = Network([1, 2, 3], max_uncommitted_entries_size=1000)
    net.campaign(1)
    net.isolate(1)
    for _ in range(10):
        net.nodes[1].propose(b"z" * 100)
    net.stabilize()
    with pytest.raises(ProposalDroppedError):
        net.nodes[1].propose(b"z" * 100)
    net.recover()
    net.tick(1)
    net.stabilize()
    assert len(net.applied_data(1)) == 10
    net.nodes[1].propose(b"z" * 100)
    net.stabilize()
    assert len(net.applied_data(2)) == 11


def test_single_large_proposal_is_accepted_when_nothing_is_uncommitted() -> None:
    """§5.3: "the leader appends the command to its log as a new entry" — etcd's uncommitted
    limit (a guard not in the paper) never blocks a proposal when nothing is uncommitted, so a
    single large command always gets through."""
    net = Network([1, 2, 3], max_uncommitted_entries_size=10)
    net.campaign(1)
    net.nodes[1].propose(b"z" * 100)
    net.stabilize()
    assert net.applied_data(3) == [b"z" * 100]
