"""Test helpers: raft nodes on memory storage, and a tiny in-process network of RawNodes.

The network delivers messages in FIFO order, one Ready at a time per node, and does what an
application does with a Ready (persist, send, apply conf changes, advance). Links can be cut to
make partitions, and a filter can drop messages by type.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TypedDict, Unpack

from etcdpy.raft.config import Config
from etcdpy.raft.errors import StepPeerNotFoundError
from etcdpy.raft.raft import Raft
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
    ReadState,
    Snapshot,
    SnapshotMetadata,
    SnapshotStatus,
    StateType,
)

MT = MessageType


def memory_storage(
    voters: Sequence[int] = (), learners: Sequence[int] = (), entries: Sequence[Entry] = ()
) -> MemoryStorage:
    """A storage whose (empty) snapshot carries a configuration, as a restarted node's would."""
    ms = MemoryStorage()
    ms._snapshot = Snapshot(
        metadata=SnapshotMetadata(
            conf_state=ConfState(voters=tuple(voters), learners=tuple(learners))
        )
    )
    if entries:
        ms.append(list(entries))
    return ms


class RaftOptions(TypedDict, total=False):
    """The fields of etcdpy.raft.config.Config a test may set; the harness fills the rest."""

    applied: int
    max_size_per_msg: int
    max_committed_size_per_ready: int
    max_uncommitted_entries_size: int
    max_inflight_msgs: int
    check_quorum: bool
    pre_vote: bool
    read_only_option: ReadOnlyOption
    disable_proposal_forwarding: bool
    logger: Callable[[str], None] | None


def make_config(
    node_id: int,
    storage: MemoryStorage,
    election: int = 10,
    heartbeat: int = 1,
    seed: int | None = None,
    **kwargs: Unpack[RaftOptions],
) -> Config:
    kwargs.setdefault("check_quorum", False)
    kwargs.setdefault("pre_vote", False)
    return Config(
        id=node_id,
        storage=storage,
        rand=random.Random(node_id if seed is None else seed),
        election_tick=election,
        heartbeat_tick=heartbeat,
        **kwargs,
    )


def new_raft(
    node_id: int,
    voters: Sequence[int],
    election: int = 10,
    heartbeat: int = 1,
    storage: MemoryStorage | None = None,
    learners: Sequence[int] = (),
    seed: int | None = None,
    **kwargs: Unpack[RaftOptions],
) -> Raft:
    """A raft state machine (no RawNode) whose configuration comes from its storage."""
    if storage is None:
        storage = memory_storage(voters, learners)
    return Raft(make_config(node_id, storage, election, heartbeat, seed, **kwargs))


def read_messages(r: Raft) -> list[Message]:
    """Take the messages the state machine queued (as a Ready would)."""
    r.flush()
    msgs = r.msgs
    r.msgs = []
    return msgs


def state_of(r: Raft) -> StateType:
    """``r.state`` read afresh: mypy keeps what an earlier ``assert r.state == ...`` narrowed it
    to across the ``r.step()`` that changes it."""
    return r.state


def become_leader(r: Raft) -> None:
    """Make ``r`` leader of its current term + 1 without any other node (unit-test shortcut)."""
    r._become_candidate()
    r._become_leader()


def commit_noop_entry(r: Raft, storage: MemoryStorage) -> None:
    """Have every follower acknowledge the leader's empty entry, then mark it applied."""
    assert r.state == StateType.LEADER
    r.bcast_append()
    for m in read_messages(r):
        assert m.type == MT.APP and len(m.entries) == 1 and not m.entries[0].data
        r.step(accept_and_reply(m))
    read_messages(r)
    storage.append(r.raft_log.unstable_entries())
    r.raft_log.applied_to(r.raft_log.committed)
    r.raft_log.stable_to(r.raft_log.last_index(), r.raft_log.last_term())


def accept_and_reply(m: Message) -> Message:
    assert m.type == MT.APP
    return Message(
        type=MT.APP_RESP, from_=m.to, to=m.from_, term=m.term, index=m.index + len(m.entries)
    )


class Network:
    """RawNodes wired together; ``stabilize`` runs them until nothing is left to do."""

    def __init__(
        self,
        ids: Sequence[int],
        *,
        learners: Sequence[int] = (),
        election: int = 10,
        heartbeat: int = 1,
        bootstrap: bool = False,
        **kwargs: Unpack[RaftOptions],
    ) -> None:
        """``bootstrap``: start from one ADD_NODE entry per member (RawNode.bootstrap) instead
        of a configuration in the storage's snapshot, so that late joiners can replay it."""
        self.storages: dict[int, MemoryStorage] = {}
        self.nodes: dict[int, RawNode] = {}
        self.applied: dict[int, list[Entry]] = {}
        self.read_states: dict[int, list[ReadState]] = {}
        self.conf_states: dict[int, ConfState] = {}
        self.cut_links: set[tuple[int, int]] = set()
        self.drop: Callable[[Message], bool] | None = None
        # Act like etcd's server and transport: send snapshots merged with the current state
        # and membership, report every snapshot's outcome to its sender, and refuse messages
        # from removed members.
        self.etcd_snapshots = False
        # The members each node has seen removed by the conf changes it applied.
        self.removed: dict[int, set[int]] = {}
        self.queue: deque[Message] = deque()
        self.delivered: list[Message] = []
        self._kwargs = kwargs
        self._election = election
        self._heartbeat = heartbeat
        # What the applied sequence of a node is after installing the snapshot at an index.
        self.snapshot_contents: dict[int, list[Entry]] = {}
        for i in [*ids, *learners]:
            if bootstrap:
                self.add_node(i, MemoryStorage()).bootstrap(ids)
            else:
                self.add_node(i, memory_storage(ids, learners))

    def add_node(self, node_id: int, storage: MemoryStorage, applied: int = 0) -> RawNode:
        """Start (or restart) a node on ``storage``."""
        self.storages[node_id] = storage
        options: RaftOptions = {**self._kwargs, "applied": applied}
        cfg = make_config(node_id, storage, self._election, self._heartbeat, **options)
        node = RawNode(cfg)
        self.nodes[node_id] = node
        self.applied.setdefault(node_id, [])
        self.read_states.setdefault(node_id, [])
        return node

    def raft(self, node_id: int) -> Raft:
        return self.nodes[node_id].raft

    def compact(self, node_id: int) -> int:
        """Snapshot ``node_id`` at its applied index and drop the log before it."""
        storage = self.storages[node_id]
        applied = self.raft(node_id).raft_log.applied
        if applied <= storage.snapshot().metadata.index:
            return 0
        content = self.applied[node_id]
        self.snapshot_contents.setdefault(applied, list(content))
        conf = self.conf_states.get(node_id, self.raft(node_id).prs.conf_state())
        storage.create_snapshot(applied, conf, b"")
        storage.compact(applied)
        return applied

    # --- faults ---------------------------------------------------------------------------------

    def cut(self, a: int, b: int) -> None:
        self.cut_links.add((a, b))
        self.cut_links.add((b, a))

    def isolate(self, node_id: int) -> None:
        for other in self.nodes:
            if other != node_id:
                self.cut(node_id, other)

    def recover(self) -> None:
        self.cut_links.clear()
        self.drop = None

    # --- driving --------------------------------------------------------------------------------

    def tick(self, node_id: int, n: int = 1) -> None:
        for _ in range(n):
            self.nodes[node_id].tick()

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for i in sorted(self.nodes):
                self.nodes[i].tick()
            self.stabilize()

    def campaign(self, node_id: int) -> None:
        self.nodes[node_id].campaign()
        self.stabilize()

    def send(self, msgs: Iterable[Message]) -> None:
        self.queue.extend(msgs)
        self.stabilize()

    def process_ready(self, node_id: int) -> list[Message]:
        """Do what an application does with one Ready of ``node_id``; return its messages."""
        node = self.nodes[node_id]
        storage = self.storages[node_id]
        rd = node.ready()
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            storage.apply_snapshot(rd.snapshot)
            self.conf_states[node_id] = rd.snapshot.metadata.conf_state
            content = self.snapshot_contents.get(rd.snapshot.metadata.index)
            if content is not None:
                self.applied[node_id] = list(content)
        if rd.entries:
            storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        for e in rd.committed_entries:
            self.applied[node_id].append(e)
            if e.type == EntryType.CONF_CHANGE:
                before = _members(self.conf_states.get(node_id))
                self.conf_states[node_id] = node.apply_conf_change(ConfChange.decode(e.data))
                gone = before - _members(self.conf_states[node_id])
                self.removed.setdefault(node_id, set()).update(gone)
        self.read_states[node_id].extend(rd.read_states)
        node.advance(rd)
        if not self.etcd_snapshots:
            return list(rd.messages)
        return [self._merge_snapshot(node_id, m) if m.type == MT.SNAP else m for m in rd.messages]

    def _merge_snapshot(self, node_id: int, m: Message) -> Message:
        """Send the state as of now, with the current membership, as etcd's server does
        (createMergedSnapshotMessage): a stored snapshot may predate the recipient's joining."""
        r = self.raft(node_id)
        applied = r.raft_log.applied
        if m.snapshot is None or applied <= m.snapshot.metadata.index:
            return m
        self.snapshot_contents.setdefault(applied, list(self.applied[node_id]))
        conf = self.conf_states.get(node_id, r.prs.conf_state())
        meta = SnapshotMetadata(conf_state=conf, index=applied, term=r.raft_log.term(applied))
        return replace(m, snapshot=Snapshot(data=m.snapshot.data, metadata=meta))

    def stabilize(self, max_rounds: int = 10_000) -> None:
        for _ in range(max_rounds):
            progressed = False
            for i in sorted(self.nodes):
                if i in self.nodes and self.nodes[i].has_ready():
                    self.queue.extend(self.process_ready(i))
                    progressed = True
            while self.queue:
                progressed = True
                m = self.queue.popleft()
                lost = m.to not in self.nodes or (m.from_, m.to) in self.cut_links
                if not lost and self.drop is not None and self.drop(m):
                    lost = True
                if m.type == MT.SNAP and self.etcd_snapshots and m.from_ in self.nodes:
                    # The transport tells the sender how the snapshot went (as etcd's does).
                    status = SnapshotStatus.FAILURE if lost else SnapshotStatus.FINISH
                    self.nodes[m.from_].report_snapshot(m.to, status)
                if lost:
                    continue
                if self.etcd_snapshots and m.from_ in self.removed.get(m.to, ()):
                    continue  # etcd's transport refuses messages from a removed member
                self.delivered.append(m)
                try:
                    self.nodes[m.to].step(m)
                except StepPeerNotFoundError:
                    continue  # a response from a removed member: an application drops it
                if self.nodes[m.to].has_ready():
                    self.queue.extend(self.process_ready(m.to))
            if not progressed:
                return
        raise AssertionError("network did not stabilize")

    # --- observations ---------------------------------------------------------------------------

    def leader(self) -> int | None:
        leaders = [i for i in sorted(self.nodes) if self.raft(i).state == StateType.LEADER]
        return leaders[-1] if leaders else None

    def state(self, node_id: int) -> StateType:
        return self.raft(node_id).state

    def term(self, node_id: int) -> int:
        return self.raft(node_id).term

    def applied_data(self, node_id: int) -> list[bytes]:
        return [e.data for e in self.applied[node_id] if e.type == EntryType.NORMAL and e.data]

    def hard_state(self, node_id: int) -> HardState:
        return self.raft(node_id).hard_state()


def _members(cs: ConfState | None) -> set[int]:
    if cs is None:
        return set()
    return {*cs.voters, *cs.learners, *cs.voters_outgoing, *cs.learners_next}
