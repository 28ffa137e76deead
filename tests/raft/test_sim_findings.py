"""Raft-core bugs the simulator found, reduced to a few steps of three RawNodes.

Each test states the correct behaviour; each bug is fixed, so each test guards against its
return.
"""

from __future__ import annotations

import contextlib
import random

from etcdpy.raft.config import Config
from etcdpy.raft.errors import RaftError
from etcdpy.raft.rawnode import RawNode
from etcdpy.raft.storage import MemoryStorage
from etcdpy.raft.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    EntryType,
    Message,
    StateType,
)


class _Cluster:
    """Nodes whose messages wait in inboxes until delivered by hand."""

    def __init__(self, ids: list[int]) -> None:
        self.stores = {i: MemoryStorage() for i in ids}
        self.nodes = {
            i: RawNode(Config(id=i, storage=self.stores[i], rand=random.Random(i))) for i in ids
        }
        for n in self.nodes.values():
            n.bootstrap(ids)
        self.inbox: dict[int, list[Message]] = {i: [] for i in ids}

    def ready(self, i: int) -> None:
        n, store = self.nodes[i], self.stores[i]
        while n.has_ready():
            rd = n.ready()
            store.append(rd.entries)
            if rd.hard_state is not None:
                store.set_hard_state(rd.hard_state)
            for m in rd.messages:
                self.inbox[m.to].append(m)
            for e in rd.committed_entries:
                if e.type == EntryType.CONF_CHANGE:
                    n.apply_conf_change(ConfChange.decode(e.data))
            n.advance(rd)

    def deliver(self, i: int) -> None:
        msgs, self.inbox[i] = self.inbox[i], []
        for m in msgs:
            with contextlib.suppress(RaftError):  # a response from a removed node
                self.nodes[i].step(m)

    def settle(self) -> None:
        for _ in range(10):
            for i in self.nodes:
                self.ready(i)
            for i in self.nodes:
                self.deliver(i)
        for i in self.nodes:
            self.ready(i)


def test_candidate_that_applies_its_own_removal_does_not_become_leader() -> None:
    """Leader 1 transfers leadership to 3 while removing 3. Node 3 steps the append that
    carries the commit index and the TimeoutNow in one batch: it campaigns, then applies its
    own removal (voters 1, 2). Nodes 1 and 2 grant the transfer's votes; 3 tallies them in
    its new configuration and wins, and becoming leader looks up its own progress, which is
    gone (KeyError). etcd 3.4 has the same hole (a nil Progress). A node outside the voters
    must not become leader (nor keep campaigning). Fixed: the winner steps down instead."""
    c = _Cluster([1, 2, 3])
    c.settle()
    c.nodes[1].campaign()
    c.settle()
    remove_3 = ConfChange((ConfChangeSingle(ConfChangeType.REMOVE_NODE, 3),))
    c.nodes[1].propose_conf_change(remove_3)
    c.nodes[1].transfer_leader(3)  # waits until 3 has the whole log
    c.ready(1)
    c.deliver(3)
    c.ready(3)  # 3 appends the removal and acknowledges it
    c.deliver(1)
    c.ready(1)  # 1 commits the removal and sends TimeoutNow to 3
    c.deliver(3)
    c.ready(3)  # 3 campaigns, then applies its removal
    for i in (1, 2):
        c.deliver(i)
        c.ready(i)
    c.deliver(3)  # the votes
    c.ready(3)
    assert c.nodes[3].status().soft_state.raft_state != StateType.LEADER
