"""Cluster membership changes (thesis chapter 4): single-server changes, joint consensus,
learners (non-voting members, thesis §4.2.1) and their promotion."""

from __future__ import annotations

from dataclasses import replace

import pytest

from etcdpy.raft.errors import ProposalDroppedError
from etcdpy.raft.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    StateType,
)
from tests.raft.harness import (
    Network,
    become_leader,
    memory_storage,
    new_raft,
    read_messages,
    state_of,
)

MT = MessageType
CT = ConfChangeType


def _cc(
    *changes: tuple[ConfChangeType, int],
    transition: ConfChangeTransition = ConfChangeTransition.AUTO,
) -> ConfChange:
    return ConfChange(
        changes=tuple(ConfChangeSingle(kind, node) for kind, node in changes), transition=transition
    )


def _start_members(net: Network, leader: int, *new_ids: int) -> None:
    """Start empty nodes already added to the configuration. The leader compacts its log first,
    so they start from a snapshot that carries the configuration (as after a compaction)."""
    storage = net.storages[leader]
    applied = net.raft(leader).raft_log.applied
    storage.create_snapshot(applied, net.raft(leader).prs.conf_state(), b"")
    storage.compact(applied)
    for new_id in new_ids:
        net.add_node(new_id, memory_storage())
    net.tick(leader)
    net.stabilize()


def _conf_change_entries(net: Network, node_id: int) -> list[ConfChange]:
    return [
        ConfChange.decode(e.data) for e in net.applied[node_id] if e.type == EntryType.CONF_CHANGE
    ]


# --- learners ----------------------------------------------------------------------------------


def test_learner_receives_log() -> None:
    """Thesis §4.2.1: new servers join "as non-voting members. The leader replicates log entries
    to them, but they are not yet counted towards majorities" (etcd's learners)."""
    net = Network([1, 2, 3], learners=[4])
    net.campaign(1)
    net.nodes[1].propose(b"x")
    net.stabilize()
    assert net.applied_data(4) == [b"x"]
    assert net.raft(4).is_learner


def test_learner_never_campaigns() -> None:
    """Thesis §4.2.1: a non-voting member does not vote, so it never starts an election either,
    however long it goes without hearing from a leader."""
    net = Network([1, 2, 3], learners=[4])
    for _ in range(100):
        net.tick(4)
        net.stabilize()
    assert net.state(4) == StateType.FOLLOWER
    assert net.term(4) == 0
    assert not [m for m in net.delivered if m.from_ == 4]


def test_learner_vote_not_counted() -> None:
    """Thesis §4.2.1: learners "are not yet counted towards majorities": a grant from a learner
    does not help a candidate win."""
    r = new_raft(1, [1, 2, 3], learners=[4])
    r.step(Message(type=MT.HUP, from_=1))
    read_messages(r)
    r.step(Message(type=MT.VOTE_RESP, from_=4, to=1, term=r.term))
    assert r.state == StateType.CANDIDATE
    r.step(Message(type=MT.VOTE_RESP, from_=2, to=1, term=r.term))
    assert state_of(r) == StateType.LEADER


def test_vote_requests_not_sent_to_learners() -> None:
    """Thesis §4.2.1: the candidate asks only the voting members for their votes."""
    r = new_raft(1, [1, 2], learners=[3])
    r.step(Message(type=MT.HUP, from_=1))
    assert [m.to for m in read_messages(r)] == [2]


def test_learner_not_counted_for_commit() -> None:
    """Thesis §4.2.1: learners are "not counted towards majorities" for commitment either."""
    net = Network([1, 2], learners=[3])
    net.campaign(1)
    net.isolate(2)
    net.nodes[1].propose(b"x")
    net.stabilize()
    assert net.raft(3).raft_log.last_index() == net.raft(1).raft_log.last_index()
    assert net.applied_data(1) == []


def test_learner_promotion() -> None:
    """Thesis §4.2.1: "Once the new server's log has caught up ... the reconfiguration can
    proceed" (etcd: ADD_NODE for a learner promotes it to voter); the promoted member can then
    vote and be elected."""
    net = Network([1, 2], learners=[3])
    net.campaign(1)
    net.nodes[1].propose_conf_change(_cc((CT.ADD_NODE, 3)))
    net.stabilize()
    for i in (1, 2, 3):
        assert net.conf_states[i] == ConfState(voters=(1, 2, 3))
    assert not net.raft(3).is_learner
    net.isolate(1)
    net.campaign(3)
    assert net.state(3) == StateType.LEADER


def test_demote_voter_to_learner_is_joint() -> None:
    """Thesis §4.3 ("arbitrary configuration changes ... using joint consensus"): demoting a
    voter to learner goes through a joint configuration (etcd's learners_next)."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].propose_conf_change(
        _cc((CT.ADD_LEARNER_NODE, 3), transition=ConfChangeTransition.JOINT_EXPLICIT)
    )
    net.stabilize()
    assert net.conf_states[1] == ConfState(
        voters=(1, 2), voters_outgoing=(1, 2, 3), learners_next=(3,)
    )
    net.nodes[1].propose_conf_change(ConfChange())
    net.stabilize()
    assert net.conf_states[2] == ConfState(voters=(1, 2), learners=(3,))


# --- single-server changes ---------------------------------------------------------------------


def test_add_node() -> None:
    """Thesis §4.1: "Raft restricts the types of changes that are allowed: only one server can be
    added or removed from the cluster at a time." A new member starts with an empty log and is
    caught up by the leader."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].propose(b"before")
    net.stabilize()
    net.nodes[1].propose_conf_change(_cc((CT.ADD_NODE, 4)))
    net.stabilize()
    _start_members(net, 1, 4)
    net.nodes[1].propose(b"after")
    net.stabilize()
    assert net.conf_states[1] == ConfState(voters=(1, 2, 3, 4))
    assert net.conf_states[4] == ConfState(voters=(1, 2, 3, 4))
    # "before" arrived inside the snapshot, "after" through the log.
    assert net.storages[4].snapshot().metadata.index >= 2
    assert net.applied_data(4) == [b"after"]
    # The quorum is now 3 of 4.
    net.isolate(2)
    net.isolate(3)
    net.nodes[1].propose(b"not committed")
    net.stabilize()
    assert net.applied_data(1) == [b"before", b"after"]


def test_remove_node_shrinks_quorum() -> None:
    """Thesis §4.1: the new configuration "takes effect on each server as soon as it is added to
    that server's log" (here: as soon as it is applied, as in etcd); after removing a member the
    smaller majority commits."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].propose_conf_change(_cc((CT.REMOVE_NODE, 3)))
    net.stabilize()
    assert net.conf_states[1] == ConfState(voters=(1, 2))
    net.isolate(2)
    net.nodes[1].propose(b"needs 2 of 2")
    net.stabilize()
    assert net.applied_data(1) == []
    net.recover()
    net.isolate(3)
    net.tick(1)
    net.stabilize()
    assert net.applied_data(1) == [b"needs 2 of 2"]


def test_only_one_pending_conf_change() -> None:
    """Thesis §4.1: "a leader ... [may not] begin a new configuration change until the previous
    one is committed" (etcd: until applied); a second one proposed meanwhile becomes an empty
    normal entry."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].propose_conf_change(_cc((CT.ADD_LEARNER_NODE, 4)))
    net.nodes[1].propose_conf_change(_cc((CT.ADD_LEARNER_NODE, 5)))
    net.stabilize()
    assert _conf_change_entries(net, 1) == [_cc((CT.ADD_LEARNER_NODE, 4))]
    assert net.conf_states[1] == ConfState(voters=(1, 2, 3), learners=(4,))
    # Once applied, the next change is accepted.
    net.nodes[1].propose_conf_change(_cc((CT.ADD_LEARNER_NODE, 5)))
    net.stabilize()
    assert net.conf_states[1] == ConfState(voters=(1, 2, 3), learners=(4, 5))


def test_new_leader_treats_uncommitted_tail_as_pending_conf_change() -> None:
    """Thesis §4.1: a conf change in a new leader's unapplied log may be in effect already; the
    new leader refuses another one until it has applied its log."""
    cc = Entry(type=EntryType.CONF_CHANGE, data=_cc((CT.ADD_LEARNER_NODE, 4)).encode())
    s = memory_storage([1, 2, 3], entries=[Entry(term=1, index=1), replace(cc, term=1, index=2)])
    s.set_hard_state(HardState(term=1, commit=1))
    r = new_raft(1, [1, 2, 3], storage=s)
    become_leader(r)
    assert r.pending_conf_index == 2
    r.step(Message(type=MT.PROP, from_=1, entries=(cc,)))
    assert r.raft_log.all_entries()[-1].type == EntryType.NORMAL


def test_two_conf_changes_in_one_proposal() -> None:
    """Thesis §4.1 (one change at a time): of two changes proposed together only the first is
    kept; the second becomes an empty normal entry."""
    r = new_raft(1, [1, 2, 3])
    become_leader(r)
    cc = Entry(type=EntryType.CONF_CHANGE, data=_cc((CT.ADD_LEARNER_NODE, 4)).encode())
    r.step(Message(type=MT.PROP, from_=1, entries=(cc, cc)))
    ents = r.raft_log.all_entries()
    assert [e.type for e in ents[-2:]] == [EntryType.CONF_CHANGE, EntryType.NORMAL]
    assert r.pending_conf_index == ents[-2].index


# --- joint consensus ---------------------------------------------------------------------------


def test_joint_consensus_enter_and_auto_leave() -> None:
    """Thesis §4.3: "the cluster first switches to a transitional configuration we call joint
    consensus; once the joint consensus has been committed, the system then transitions to the
    new configuration" (etcd leaves it automatically with the AUTO transition)."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].propose_conf_change(_cc((CT.ADD_NODE, 4), (CT.REMOVE_NODE, 3)))
    net.stabilize()
    _start_members(net, 1, 4)
    changes = _conf_change_entries(net, 1)
    assert changes == [_cc((CT.ADD_NODE, 4), (CT.REMOVE_NODE, 3)), ConfChange()]
    for i in (1, 2, 4):
        assert net.conf_states[i] == ConfState(voters=(1, 2, 4))
    assert not net.raft(1).prs.config.voters.is_joint()


def test_joint_config_needs_both_majorities() -> None:
    """Thesis §4.3: in joint consensus, "agreement (for elections and entry commitment) requires
    separate majorities from both the old and new configurations"."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].propose_conf_change(
        _cc(
            (CT.ADD_NODE, 4),
            (CT.ADD_NODE, 5),
            (CT.REMOVE_NODE, 2),
            (CT.REMOVE_NODE, 3),
            transition=ConfChangeTransition.JOINT_EXPLICIT,
        )
    )
    net.stabilize()
    _start_members(net, 1, 4, 5)
    assert net.conf_states[1] == ConfState(voters=(1, 4, 5), voters_outgoing=(1, 2, 3))
    assert net.conf_states[4] == net.conf_states[1]
    # Old majority (1, 2, 3) available, new one (1, 4, 5) not: nothing commits.
    net.isolate(4)
    net.isolate(5)
    net.nodes[1].propose(b"old only")
    net.stabilize()
    assert net.applied_data(1) == []
    # New majority available, old one not: still nothing.
    net.recover()
    net.isolate(2)
    net.isolate(3)
    net.nodes[1].propose(b"new only")
    net.stabilize()
    # "old only" now has both majorities (2 and 3 stored it earlier); "new only" has not.
    assert net.applied_data(1) == [b"old only"]
    # Both: everything commits.
    net.recover()
    net.tick(1)
    net.stabilize()
    assert net.applied_data(1) == [b"old only", b"new only"]


def test_explicit_joint_must_be_left_before_next_change() -> None:
    """Thesis §4.3: a new configuration change may start only once the joint configuration has
    been replaced by the new one (etcd refuses other changes while joint)."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].propose_conf_change(
        _cc(
            (CT.ADD_LEARNER_NODE, 4),
            (CT.REMOVE_NODE, 3),
            transition=ConfChangeTransition.JOINT_EXPLICIT,
        )
    )
    net.stabilize()
    assert net.raft(1).prs.config.voters.is_joint()
    net.nodes[1].propose_conf_change(_cc((CT.ADD_LEARNER_NODE, 5)))
    net.stabilize()
    assert net.raft(1).prs.config.voters.is_joint()
    assert 5 not in net.raft(1).prs.progress
    net.nodes[1].propose_conf_change(ConfChange())
    net.stabilize()
    assert net.conf_states[1] == ConfState(voters=(1, 2), learners=(4,))


def test_removed_follower_stops_getting_messages() -> None:
    """Thesis §4.2.3 (removed servers): once removed, a server is no longer part of the
    configuration: the leader stops replicating to it."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].propose_conf_change(_cc((CT.REMOVE_NODE, 3)))
    net.stabilize()
    before = len(net.delivered)
    net.nodes[1].propose(b"x")
    net.tick(1)
    net.stabilize()
    assert [m for m in net.delivered[before:] if m.to == 3] == []


def test_removed_leader_hands_over_leadership() -> None:
    """Thesis §4.2.2: "the leader steps down once the C_new entry is committed" when it is not
    part of C_new; it first makes sure a voter of C_new has its log, then hands over (§3.10's
    TimeoutNow), so the cluster does not wait for an election timeout."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].propose(b"before")
    net.stabilize()
    net.nodes[1].propose_conf_change(_cc((CT.REMOVE_NODE, 1)))
    net.stabilize()
    assert net.state(1) == StateType.FOLLOWER
    leader = net.leader()
    assert leader in (2, 3)
    assert [m.from_ for m in net.delivered if m.type == MT.TIMEOUT_NOW] == [1]
    assert net.conf_states[2] == net.conf_states[3] == ConfState(voters=(2, 3))
    net.nodes[leader].propose(b"after")
    net.stabilize()
    assert net.applied_data(2)[-1] == net.applied_data(3)[-1] == b"after"


def test_demoted_leader_hands_over_leadership() -> None:
    """Thesis §4.2.2 (a leader outside C_new steps down) applied to a leader demoted to learner:
    it must not keep leading, since it no longer counts for any quorum."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].propose_conf_change(_cc((CT.ADD_LEARNER_NODE, 1)))
    net.stabilize()
    assert net.conf_states[1] == ConfState(voters=(2, 3), learners=(1,))
    assert net.state(1) == StateType.FOLLOWER
    assert net.raft(1).is_learner
    leader = net.leader()
    assert leader in (2, 3)
    assert net.raft(1).lead == leader


def test_removed_leader_waits_for_transferee_and_retries() -> None:
    """Thesis §3.10: the prior leader first "transfers its log entries to the target server";
    a transfer that does not complete within an election timeout is aborted, and a leader that
    is no longer a voter then tries again."""
    r = new_raft(1, [1, 2, 3])
    become_leader(r)
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=r.term, index=1))
    r._append_entry([Entry(data=b"x")])  # index 2, not on any follower yet
    read_messages(r)
    r.apply_conf_change(_cc((CT.REMOVE_NODE, 1)))
    assert r.state == StateType.LEADER
    assert r.lead_transferee == 2  # the voter with the highest match
    assert MT.TIMEOUT_NOW not in [m.type for m in read_messages(r)]
    with pytest.raises(ProposalDroppedError):
        r.step(Message(type=MT.PROP, from_=1, entries=(Entry(data=b"y"),)))
    for _ in range(r.election_timeout):
        r.tick()
    assert r.state == StateType.LEADER
    assert r.lead_transferee == 2  # aborted, then started again
    read_messages(r)
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=r.term, index=2))
    assert [m.type for m in read_messages(r) if m.to == 2][-1] == MT.TIMEOUT_NOW
    assert state_of(r) == StateType.FOLLOWER
