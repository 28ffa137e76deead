"""Linearizable reads without log entries: ReadIndex (thesis §6.4) and lease-based reads
(thesis §6.4.1)."""

from __future__ import annotations

from etcdpy.raft.types import Entry, Message, MessageType, ReadOnlyOption, ReadState, StateType
from tests.raft.harness import Network, become_leader, new_raft, read_messages

MT = MessageType


def test_read_index_batches_share_one_heartbeat_round() -> None:
    """Thesis §6.4: "the leader records its current commit index in a local variable readIndex
    ... [then] sends a new round of heartbeats and waits for their acknowledgments from a
    majority"; and §6.4 (batching) "the leader can amortize [this cost] by batching many
    read-only queries" over one round of heartbeats."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].propose(b"w")
    net.stabilize()
    commit = net.raft(1).raft_log.committed
    before = len(net.delivered)
    for ctx in (b"r1", b"r2", b"r3"):
        net.nodes[1].read_index(ctx)
    net.stabilize()
    heartbeats = [m for m in net.delivered[before:] if m.type == MT.HEARTBEAT]
    assert len(heartbeats) == 2  # one per follower, for all three reads
    assert {m.context for m in heartbeats} == {b"r3"}
    assert net.read_states[1] == [
        ReadState(index=commit, request_ctx=b"r1"),
        ReadState(index=commit, request_ctx=b"r2"),
        ReadState(index=commit, request_ctx=b"r3"),
    ]


def test_read_index_needs_quorum_acknowledgement() -> None:
    """Thesis §6.4: the read index may only be used after "a majority of the cluster" has
    acknowledged the heartbeat: without that, the leader might have been deposed."""
    r = new_raft(1, [1, 2, 3, 4, 5])
    become_leader(r)
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=r.term, index=1))
    r.step(Message(type=MT.APP_RESP, from_=3, to=1, term=r.term, index=1))
    assert r.raft_log.committed == 1
    read_messages(r)
    r.step(Message(type=MT.READ_INDEX, entries=(Entry(data=b"ctx"),)))
    hbs = [m for m in read_messages(r) if m.type == MT.HEARTBEAT]
    assert len(hbs) == 4
    r.step(Message(type=MT.HEARTBEAT_RESP, from_=2, to=1, term=r.term, context=b"ctx"))
    assert r.read_states == []  # 2 of 5 acknowledged (with the leader)
    r.step(Message(type=MT.HEARTBEAT_RESP, from_=3, to=1, term=r.term, context=b"ctx"))
    assert r.read_states == [ReadState(index=1, request_ctx=b"ctx")]


def test_read_index_waits_for_an_entry_of_the_leaders_term() -> None:
    """Thesis §6.4 step 1: "If the leader has not yet marked an entry from its current term
    committed, it waits until it has done so" (its commit index may be stale until then)."""
    r = new_raft(1, [1, 2, 3])
    become_leader(r)
    read_messages(r)
    r.step(Message(type=MT.READ_INDEX, entries=(Entry(data=b"early"),)))
    assert [m for m in read_messages(r) if m.type == MT.HEARTBEAT] == []
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=r.term, index=1))
    hbs = [m for m in read_messages(r) if m.type == MT.HEARTBEAT]
    assert {m.context for m in hbs} == {b"early"}
    r.step(Message(type=MT.HEARTBEAT_RESP, from_=2, to=1, term=r.term, context=b"early"))
    assert r.read_states == [ReadState(index=1, request_ctx=b"early")]


def test_follower_read_index_is_forwarded_to_the_leader() -> None:
    """Thesis §6.4: "followers could also help offload the processing of read-only queries ...
    the follower [sends] a request to the leader asking for a current readIndex"."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].propose(b"w")
    net.stabilize()
    net.nodes[3].read_index(b"from-3")
    net.stabilize()
    assert net.read_states[3] == [
        ReadState(index=net.raft(1).raft_log.committed, request_ctx=b"from-3")
    ]
    assert net.read_states[1] == []


def test_read_on_deposed_leader_is_never_served() -> None:
    """Thesis §6.4: "the leader ... must check whether it has been deposed before processing a
    read-only request"; a partitioned old leader cannot gather acknowledgements, and once it
    learns of the new term its pending reads are dropped, not answered with a stale index."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.isolate(1)
    net.nodes[1].read_index(b"stale-read")
    net.stabilize()
    net.campaign(2)
    net.nodes[2].propose(b"newer write")
    net.stabilize()
    net.recover()
    for _ in range(3):
        net.tick(1)
        net.tick(2)
        net.stabilize()
    assert net.state(1) == StateType.FOLLOWER
    assert net.read_states[1] == []
    # A new read through the real leader sees the newer write.
    net.nodes[1].read_index(b"fresh-read")
    net.stabilize()
    (rs,) = net.read_states[1]
    assert rs.request_ctx == b"fresh-read"
    assert rs.index >= net.raft(2).raft_log.committed


def test_lease_based_read_answers_without_heartbeats() -> None:
    """Thesis §6.4.1: with a lease, "the leader [uses] the normal heartbeat mechanism to maintain
    a lease ... [and] would then respond to read-only queries without any additional
    communication" (needs CheckQuorum, which bounds the lease)."""
    net = Network([1, 2, 3], check_quorum=True, read_only_option=ReadOnlyOption.LEASE_BASED)
    net.campaign(1)
    before = len(net.delivered)
    net.nodes[1].read_index(b"lease")
    net.stabilize()
    assert [m for m in net.delivered[before:] if m.type == MT.HEARTBEAT] == []
    assert net.read_states[1] == [ReadState(index=1, request_ctx=b"lease")]


def test_single_voter_read_index_is_immediate() -> None:
    """Thesis §6.4: with one voter the leader's commit index is current by itself (it is the
    whole quorum)."""
    r = new_raft(1, [1])
    r.step(Message(type=MT.HUP, from_=1))
    assert r.state == StateType.LEADER
    r.step(Message(type=MT.READ_INDEX, entries=(Entry(data=b"solo"),)))
    assert r.read_states == [ReadState(index=1, request_ctx=b"solo")]
