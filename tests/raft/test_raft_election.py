"""Leader election in a cluster: split votes, stale leaders, PreVote, CheckQuorum, the leader
lease, and what happens to proposals without a leader."""

from __future__ import annotations

import pytest

from etcdpy.raft.errors import ProposalDroppedError
from etcdpy.raft.types import Message, MessageType, StateType
from tests.raft.harness import Network, new_raft, read_messages

MT = MessageType


def test_single_election_in_a_cluster() -> None:
    """§5.2: "A candidate wins an election if it receives votes from a majority of the servers in
    the full cluster for the same term ... Once a candidate wins an election, it becomes leader.
    It then sends heartbeat messages to all of the other servers to establish its authority and
    prevent new elections." """
    net = Network([1, 2, 3])
    net.campaign(1)
    assert [net.state(i) for i in (1, 2, 3)] == [
        StateType.LEADER,
        StateType.FOLLOWER,
        StateType.FOLLOWER,
    ]
    assert {net.term(i) for i in (1, 2, 3)} == {1}
    assert net.raft(2).lead == 1 and net.raft(3).lead == 1
    # The leader's empty entry of its term is committed everywhere.
    assert all(net.raft(i).raft_log.committed == 1 for i in (1, 2, 3))


def test_elections_happen_by_timeout_alone() -> None:
    """§5.2: "If a follower receives no communication over a period of time called the election
    timeout, then it assumes there is no viable leader and begins an election." Ticking alone
    elects exactly one leader."""
    net = Network([1, 2, 3, 4, 5])
    for _ in range(30):
        net.tick_all()
        if net.leader() is not None:
            break
    leaders = [i for i in net.nodes if net.state(i) == StateType.LEADER]
    assert len(leaders) == 1
    lead_term = net.term(leaders[0])
    assert all(net.raft(i).lead == leaders[0] for i in net.nodes)
    assert all(net.term(i) == lead_term for i in net.nodes)


def test_split_vote_resolves_with_new_election() -> None:
    """§5.2: "... if many followers become candidates at the same time, votes could be split so
    that no candidate obtains a majority. When this happens, each candidate will time out and
    start a new election by incrementing its term" and randomized timeouts make it end."""
    net = Network([1, 2, 3, 4])
    net.drop = lambda m: m.type == MT.VOTE and (m.from_, m.to) in {(1, 4), (2, 3)}
    net.nodes[1].campaign()
    net.nodes[2].campaign()
    net.stabilize()
    # 1 got {1, 3}, 2 got {2, 4}: neither has 3 of 4.
    assert net.state(1) == StateType.CANDIDATE
    assert net.state(2) == StateType.CANDIDATE
    assert net.term(1) == net.term(2) == 1
    net.recover()
    for _ in range(60):
        net.tick_all()
        if net.leader() is not None:
            break
    leader = net.leader()
    assert leader is not None
    assert net.term(leader) >= 2
    assert sum(net.state(i) == StateType.LEADER for i in net.nodes) == 1


def test_leader_steps_down_on_higher_term_and_its_entries_are_replaced() -> None:
    """§5.1: "If a candidate or leader discovers that its term is out of date, it immediately
    reverts to follower state." §5.3: the new leader forces the old leader's uncommitted
    entries out ("the leader handles inconsistencies by forcing the followers' logs to duplicate
    its own")."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.isolate(1)
    # The stale leader still accepts a proposal, but can never commit it.
    net.nodes[1].propose(b"lost")
    net.stabilize()
    assert net.raft(1).raft_log.committed == 1
    net.campaign(2)
    assert net.state(2) == StateType.LEADER
    net.nodes[2].propose(b"kept")
    net.stabilize()
    net.recover()
    # The next heartbeat of the new leader carries a higher term.
    net.tick(2)
    net.stabilize()
    assert net.state(1) == StateType.FOLLOWER
    assert net.term(1) == net.term(2) == 2
    assert net.applied_data(1) == [b"kept"]
    assert net.raft(1).raft_log.all_entries() == net.raft(2).raft_log.all_entries()


def test_stale_leader_proposal_never_committed_by_stale_followers() -> None:
    """§5.4.2 / §5.1: a leader of an older term cannot get entries committed: servers that know a
    newer term reject its AppendEntries ("If a server receives a request with a stale term number,
    it rejects the request")."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.cut(1, 2)
    net.cut(1, 3)
    net.campaign(2)
    # Node 1 still believes it leads term 1; reconnect only its link to 3.
    net.cut_links.discard((1, 3))
    net.cut_links.discard((3, 1))
    net.nodes[1].propose(b"stale")
    net.stabilize()
    assert all(b"stale" not in net.applied_data(i) for i in (1, 2, 3))
    assert net.raft(3).raft_log.committed == net.raft(2).raft_log.committed


# --- PreVote (thesis §9.6) ---------------------------------------------------------------------


def test_prevote_partitioned_node_does_not_inflate_its_term() -> None:
    """Thesis §9.6: "In the PreVote algorithm, a candidate only increments its term if it first
    learns from a majority of the cluster that they would be willing to grant the candidate their
    votes." A partitioned node keeps its term however often it times out."""
    net = Network([1, 2, 3], pre_vote=True)
    net.campaign(1)
    net.isolate(3)
    for _ in range(100):
        net.tick(3)
        net.stabilize()
    assert net.term(3) == 1
    assert net.state(3) == StateType.PRE_CANDIDATE


def test_prevote_rejoining_node_does_not_disrupt_leader() -> None:
    """Thesis §9.6: PreVote "solves the issue of a partitioned server disrupting the cluster
    when it rejoins": the leader keeps its term and role when the isolated node comes back."""
    net = Network([1, 2, 3], pre_vote=True)
    net.campaign(1)
    net.isolate(3)
    for _ in range(50):
        net.tick(3)
        net.stabilize()
    net.recover()
    net.tick(1)  # a heartbeat reaches node 3
    net.stabilize()
    assert net.state(1) == StateType.LEADER
    assert net.term(1) == 1
    assert net.state(3) == StateType.FOLLOWER
    assert net.raft(3).lead == 1


def test_without_prevote_rejoining_node_disrupts_leader() -> None:
    """The contrast case of thesis §9.6: without PreVote, a partitioned server "will time out
    and start a new election", increasing its term, and its higher term deposes the leader when
    it rejoins."""
    net = Network([1, 2, 3], pre_vote=False)
    net.campaign(1)
    net.isolate(3)
    for _ in range(50):
        net.tick(3)
        net.stabilize()
    assert net.term(3) > 1
    net.recover()
    # Its next vote request, at its inflated term, forces the leader out of term 1.
    for _ in range(2 * net.raft(3).election_timeout):
        net.tick(3)
        net.stabilize()
    assert net.term(1) > 1
    assert net.term(1) == net.term(3)


def test_prevote_rejected_for_stale_log() -> None:
    """Thesis §9.6: a pre-vote is granted only "if the candidate's log is at least as
    up-to-date" (the rule of §5.4.1 applied to the pre-election)."""
    net = Network([1, 2, 3], pre_vote=True)
    net.campaign(1)
    net.isolate(3)
    net.nodes[1].propose(b"x")
    net.stabilize()
    net.isolate(1)
    net.cut_links.discard((2, 3))
    net.cut_links.discard((3, 2))
    # 3 (behind) tries first: 2 refuses the pre-vote, so 3 stays at term 1.
    net.nodes[3].campaign()
    net.stabilize()
    assert net.state(3) != StateType.LEADER
    assert net.term(3) == 1
    # 2 (up to date) wins: 3 grants its pre-vote and its vote.
    net.nodes[2].campaign()
    net.stabilize()
    assert net.state(2) == StateType.LEADER
    assert net.term(2) == 2


def test_prevote_does_not_change_voter_term() -> None:
    """Thesis §9.6: the pre-election "does not increase its term"; neither do the servers that
    answer it."""
    r = new_raft(1, [1, 2, 3], pre_vote=True)
    r.step(Message(type=MT.PRE_VOTE, from_=2, to=1, term=5, index=0, log_term=0))
    assert r.term == 0
    msgs = read_messages(r)
    assert [(m.type, m.term, m.reject) for m in msgs] == [(MT.PRE_VOTE_RESP, 5, False)]
    assert r.vote == 0


# --- CheckQuorum and the leader lease (thesis §6.2, §4.2.3) -------------------------------------


def test_check_quorum_leader_steps_down_when_partitioned() -> None:
    """Thesis §6.2: "a leader steps down if an election timeout elapses without a successful
    round of heartbeats to a majority of its cluster"."""
    net = Network([1, 2, 3], check_quorum=True)
    net.campaign(1)
    net.isolate(1)
    et = net.raft(1).election_timeout
    # The followers answered during the first window (the election), so the first check passes;
    # the second window has heard nobody.
    for _ in range(et):
        net.tick(1)
        net.stabilize()
    assert net.state(1) == StateType.LEADER
    for _ in range(et):
        net.tick(1)
        net.stabilize()
    assert net.state(1) == StateType.FOLLOWER
    assert net.term(1) == 1


def test_check_quorum_leader_stays_with_quorum() -> None:
    """Thesis §6.2 (converse): with a majority answering heartbeats the leader keeps leading."""
    net = Network([1, 2, 3], check_quorum=True)
    net.campaign(1)
    net.isolate(3)
    for _ in range(3 * net.raft(1).election_timeout):
        net.tick(1)
        net.stabilize()
    assert net.state(1) == StateType.LEADER


def test_leader_lease_ignores_disruptive_vote() -> None:
    """Thesis §4.2.3: "if a server receives a RequestVote request within the minimum election
    timeout of hearing from a current leader, it does not update its term or grant its vote"."""
    r = new_raft(2, [1, 2, 3], check_quorum=True)
    r._become_follower(1, 1)
    r.step(Message(type=MT.VOTE, from_=3, to=2, term=2, index=5, log_term=2))
    assert r.term == 1
    assert read_messages(r) == []
    # Once the lease is over, the same request is granted.
    r.election_elapsed = r.election_timeout
    r.step(Message(type=MT.VOTE, from_=3, to=2, term=2, index=5, log_term=2))
    assert r.term == 2
    assert [(m.type, m.reject) for m in read_messages(r)] == [(MT.VOTE_RESP, False)]


def test_check_quorum_stale_leader_learns_new_term_from_app_resp() -> None:
    """§5.1: "Current terms are exchanged whenever servers communicate"; with CheckQuorum, a
    follower answers a stale leader's heartbeat so that the stale leader learns the newer term
    (otherwise the lease would silence the vote requests that would have told it)."""
    r = new_raft(2, [1, 2, 3], check_quorum=True)
    r._become_follower(3, 3)
    r.step(Message(type=MT.HEARTBEAT, from_=1, to=2, term=1))
    msgs = read_messages(r)
    assert [(m.type, m.to, m.term) for m in msgs] == [(MT.APP_RESP, 1, 3)]


# --- proposals -----------------------------------------------------------------------------------


def test_proposal_dropped_without_leader() -> None:
    """§8: "Clients of Raft send all of their requests to the leader"; with no known leader there
    is nobody to send a proposal to, so it is dropped with an error the client can retry on."""
    net = Network([1, 2, 3])
    with pytest.raises(ProposalDroppedError):
        net.nodes[1].propose(b"x")
    net.nodes[1].campaign()  # candidate, not yet leader: still no leader to take it
    with pytest.raises(ProposalDroppedError):
        net.nodes[1].propose(b"x")


def test_proposal_forwarded_to_leader() -> None:
    """§8: "If the client's first choice is not the leader, that server will reject the client's
    request and supply information about the most recent leader it has heard from" (here the
    follower forwards the proposal to that leader, as etcd does)."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[3].propose(b"via follower")
    net.stabilize()
    assert all(net.applied_data(i) == [b"via follower"] for i in (1, 2, 3))


def test_proposal_forwarding_disabled() -> None:
    """The etcd option disable_proposal_forwarding makes a follower drop proposals instead of
    forwarding them (§8's "reject the client's request")."""
    net = Network([1, 2, 3], disable_proposal_forwarding=True)
    net.campaign(1)
    with pytest.raises(ProposalDroppedError):
        net.nodes[2].propose(b"x")
