"""RawNode: the Ready contract (what must be persisted before sending), bootstrap, restart, and
input validation."""

from __future__ import annotations

import random

import pytest

from etcdpy.raft.config import Config
from etcdpy.raft.errors import ConfigError, RaftError, StepLocalMsgError, StepPeerNotFoundError
from etcdpy.raft.rawnode import RawNode
from etcdpy.raft.storage import MemoryStorage
from etcdpy.raft.types import (
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadOnlyOption,
    Ready,
    SoftState,
    StateType,
)
from tests.raft.harness import memory_storage

MT = MessageType


def _node(storage: MemoryStorage, node_id: int = 1, **kwargs: object) -> RawNode:
    return RawNode(
        Config(id=node_id, storage=storage, rand=random.Random(node_id), **kwargs)  # type: ignore[arg-type]
    )


def _handle(node: RawNode, storage: MemoryStorage) -> list[Entry]:
    """Process one Ready as an application would; returns the committed entries."""
    rd = node.ready()
    if rd.entries:
        storage.append(rd.entries)
    if rd.hard_state is not None:
        storage.set_hard_state(rd.hard_state)
    for e in rd.committed_entries:
        if e.type == EntryType.CONF_CHANGE:
            node.apply_conf_change(ConfChange.decode(e.data))
    node.advance(rd)
    return list(rd.committed_entries)


def test_bootstrap_single_node_elects_and_commits() -> None:
    """§5.2 with one server: a single voter is a majority of itself; after the bootstrap entries
    are applied it can campaign, win at once and commit alone (thesis §4.1 bootstraps a cluster
    from one configuration entry per member)."""
    s = MemoryStorage()
    node = _node(s)
    node.bootstrap([1])
    rd = node.ready()
    assert rd.hard_state == HardState(term=1, vote=0, commit=1)
    assert [e.type for e in rd.entries] == [EntryType.CONF_CHANGE]
    assert rd.must_sync
    s.append(rd.entries)
    s.set_hard_state(rd.hard_state)
    for e in rd.committed_entries:
        assert node.apply_conf_change(ConfChange.decode(e.data)) == ConfState(voters=(1,))
    node.advance(rd)
    node.campaign()
    rd = node.ready()
    assert rd.soft_state == SoftState(lead=1, raft_state=StateType.LEADER)
    _apply(node, s, rd)
    node.propose(b"solo")
    committed: list[Entry] = []
    while node.has_ready():
        committed += _handle(node, s)
    assert [e.data for e in committed if e.data] == [b"solo"]
    assert node.status().applied == s.last_index()


def _apply(node: RawNode, s: MemoryStorage, rd: Ready) -> None:
    s.append(rd.entries)
    if rd.hard_state is not None:
        s.set_hard_state(rd.hard_state)
    node.advance(rd)


def test_bootstrap_requires_empty_storage_and_peers() -> None:
    """Thesis §4.1 (bootstrapping): a new cluster starts from an initial configuration; doing so
    on an existing log would overwrite persistent state (Figure 2: "log[]" is persistent)."""
    with pytest.raises(RaftError):
        _node(MemoryStorage()).bootstrap([])
    s = memory_storage([1], entries=[Entry(term=1, index=1)])
    with pytest.raises(RaftError, match="nonempty"):
        _node(s).bootstrap([1])


def test_ready_reports_only_changes() -> None:
    """Figure 2: "Persistent state on all servers: (Updated on stable storage before responding
    to RPCs)" — the Ready carries the hard state when it changed, asks for an fsync before the
    vote request goes out, and is empty once advanced."""
    s = memory_storage([1, 2])
    node = _node(s, pre_vote=False)
    assert not node.has_ready()
    node.campaign()
    assert node.has_ready()
    rd = node.ready()
    assert rd.hard_state == HardState(term=1, vote=1, commit=0)
    assert rd.soft_state == SoftState(lead=0, raft_state=StateType.CANDIDATE)
    assert [(m.type, m.to) for m in rd.messages] == [(MT.VOTE, 2)]
    assert rd.must_sync  # the vote must be durable before the request goes out
    _apply(node, s, rd)
    assert not node.has_ready()
    node.step(Message(type=MT.VOTE_RESP, from_=2, to=1, term=1))
    rd = node.ready()
    assert rd.soft_state == SoftState(lead=1, raft_state=StateType.LEADER)
    assert [e.index for e in rd.entries] == [1]
    assert [(m.type, m.to) for m in rd.messages] == [(MT.APP, 2)]


def test_restart_does_not_reapply() -> None:
    """Figure 2: currentTerm, votedFor and log[] are persistent, lastApplied is volatile — a
    restarted node gets them back from storage, and with Config.applied only the committed
    entries after it are delivered again."""
    s = memory_storage([1], entries=[Entry(term=1, index=i, data=b"%d" % i) for i in (1, 2, 3)])
    s.set_hard_state(HardState(term=1, vote=1, commit=3))
    node = _node(s, applied=2)
    rd = node.ready()
    assert rd.hard_state is None
    assert [e.index for e in rd.committed_entries] == [3]
    assert node.status().hard_state == HardState(term=1, vote=1, commit=3)


def test_step_rejects_local_messages_and_unknown_peers() -> None:
    """Thesis §4.2.3: a server outside the configuration must not affect the cluster — a
    response from such a node is refused (etcd's ErrStepPeerNotFound), and local-only messages
    never come from the network (ErrStepLocalMsg)."""
    node = _node(memory_storage([1, 2]))
    with pytest.raises(StepLocalMsgError):
        node.step(Message(type=MT.HUP))
    with pytest.raises(StepPeerNotFoundError):
        node.step(Message(type=MT.APP_RESP, from_=9, to=1, term=1))


def test_forwarded_proposal_without_leader_is_dropped_silently() -> None:
    """§8: "If the leader crashes ... the client will retry the command with a new leader" — a
    proposal forwarded to a node that lost the leadership meanwhile is dropped silently (the
    client retries); it is not an error of the receiving application."""
    node = _node(memory_storage([1, 2]))
    node.step(Message(type=MT.PROP, from_=2, to=1, entries=(Entry(data=b"x"),)))
    assert not node.has_ready()


def test_config_validation() -> None:
    """Lease-based reads are only safe with CheckQuorum bounding the lease (thesis §6.4.1)."""
    with pytest.raises(ConfigError):
        _node(
            memory_storage([1]),
            check_quorum=False,
            read_only_option=ReadOnlyOption.LEASE_BASED,
        )
    with pytest.raises(ConfigError):
        _node(memory_storage([1]), election_tick=1, heartbeat_tick=1)


def test_status_of_leader_has_progress() -> None:
    """Figure 2: "Volatile state on leaders: nextIndex[] ... matchIndex[]" — the status shows the
    leader's view of every member's replication."""
    s = memory_storage([1, 2])
    node = _node(s, pre_vote=False)
    node.campaign()
    _apply(node, s, node.ready())
    node.step(Message(type=MT.VOTE_RESP, from_=2, to=1, term=1))
    _apply(node, s, node.ready())
    node.step(Message(type=MT.APP_RESP, from_=2, to=1, term=1, index=1))
    st = node.status()
    assert st.soft_state.raft_state == StateType.LEADER
    assert sorted(st.progress) == [1, 2]
    assert (st.progress[2].match, st.progress[2].next) == (1, 2)
    assert st.conf_state == ConfState(voters=(1, 2))


def test_logger_receives_trace() -> None:
    """§5.2 role changes ("it becomes leader") are reported to the optional trace sink (used by
    the simulator's --verbose)."""
    lines: list[str] = []
    node = _node(memory_storage([1]), logger=lines.append)
    node.campaign()
    assert any("became leader at term 1" in line for line in lines)
