"""Leadership transfer (thesis §3.10)."""

from __future__ import annotations

import pytest

from etcdpy.raft.errors import ProposalDroppedError
from etcdpy.raft.types import NONE, MessageType, StateType
from tests.raft.harness import Network

MT = MessageType


def test_transfer_to_up_to_date_follower() -> None:
    """Thesis §3.10: "the prior leader sends a TimeoutNow request to the target server. This
    request has the same effect as the target server's election timer firing: the target server
    starts a new election (incrementing its term) ... [and] is very likely to [win]"."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].transfer_leader(2)
    net.stabilize()
    assert net.state(2) == StateType.LEADER
    assert net.state(1) == StateType.FOLLOWER
    assert net.term(2) == 2
    assert [m.to for m in net.delivered if m.type == MT.TIMEOUT_NOW] == [2]


def test_transfer_to_lagging_follower_catches_it_up_first() -> None:
    """Thesis §3.10 step 2: "The prior leader transfers its log entries to the target server",
    and only then sends TimeoutNow."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.isolate(3)
    for i in range(5):
        net.nodes[1].propose(b"%d" % i)
    net.stabilize()
    net.recover()
    net.nodes[1].transfer_leader(3)
    net.stabilize()
    assert net.state(3) == StateType.LEADER
    assert net.applied_data(3) == [b"%d" % i for i in range(5)]


def test_transfer_via_follower_request() -> None:
    """Thesis §3.10: the transfer can be asked of any server; a follower passes the request to
    the leader (etcd forwards MsgTransferLeader)."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[3].transfer_leader(3)
    net.stabilize()
    assert net.state(3) == StateType.LEADER


def test_proposals_dropped_during_transfer() -> None:
    """Thesis §3.10 step 1: "The prior leader stops accepting new client requests" while the
    transfer is under way."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.isolate(3)
    net.nodes[1].transfer_leader(3)
    net.stabilize()
    assert net.raft(1).lead_transferee == 3
    with pytest.raises(ProposalDroppedError):
        net.nodes[1].propose(b"x")


def test_transfer_aborted_after_election_timeout() -> None:
    """Thesis §3.10: "If the transfer does not complete within an election timeout, the prior
    leader aborts the transfer and resumes accepting client requests." """
    net = Network([1, 2, 3])
    net.campaign(1)
    net.isolate(3)
    net.nodes[1].transfer_leader(3)
    net.stabilize()
    for _ in range(net.raft(1).election_timeout):
        net.tick(1)
        net.stabilize()
    assert net.raft(1).lead_transferee == NONE
    assert net.state(1) == StateType.LEADER
    net.nodes[1].propose(b"accepted again")
    net.stabilize()
    assert net.applied_data(2) == [b"accepted again"]


def test_transfer_to_learner_is_ignored() -> None:
    """Thesis §4.2.1 with §3.10: a non-voting member cannot be elected, so it is never the target
    of a transfer."""
    net = Network([1, 2], learners=[3])
    net.campaign(1)
    net.nodes[1].transfer_leader(3)
    net.stabilize()
    assert net.raft(1).lead_transferee == NONE
    assert net.state(1) == StateType.LEADER


def test_transfer_overrides_leader_lease() -> None:
    """Thesis §3.10 with §4.2.3: votes for a transfer's election must be granted even though the
    voters heard from the leader recently (the leader itself asked for the election)."""
    net = Network([1, 2, 3], check_quorum=True, pre_vote=True)
    net.campaign(1)
    net.nodes[1].transfer_leader(2)
    net.stabilize()
    assert net.state(2) == StateType.LEADER
    assert net.raft(3).lead == 2


def test_transfer_to_self_is_a_no_op() -> None:
    """Thesis §3.10: transferring to the current leader changes nothing."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].transfer_leader(1)
    net.stabilize()
    assert net.state(1) == StateType.LEADER
    assert net.term(1) == 1
    assert net.raft(1).lead_transferee == NONE
