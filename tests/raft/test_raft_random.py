"""Seeded random runs of a small cluster under message loss and partitions, checking the safety
properties of Figure 3 of the paper after every step. (The full simulator lives in
etcdpy.testing.sim; this is the core's own smoke check.)"""

from __future__ import annotations

import random

import pytest

from etcdpy.raft.errors import ProposalDroppedError
from etcdpy.raft.types import EntryType, StateType
from tests.raft.harness import Network, RaftOptions


def _check_safety(net: Network, leaders_by_term: dict[int, int]) -> None:
    # Election Safety: at most one leader can be elected in a given term.
    for i in sorted(net.nodes):
        r = net.raft(i)
        if r.state == StateType.LEADER:
            assert leaders_by_term.setdefault(r.term, i) == i, (r.term, leaders_by_term[r.term], i)
    # State Machine Safety: applied sequences are prefixes of one another.
    logs = sorted((net.applied[i] for i in net.nodes), key=len)
    longest = logs[-1]
    for applied in logs:
        assert applied == longest[: len(applied)]


def _stable_leader(net: Network) -> int | None:
    top = max(net.term(i) for i in net.nodes)
    for i in sorted(net.nodes):
        r = net.raft(i)
        if (
            r.state == StateType.LEADER
            and r.term == top
            and all(net.raft(j).lead == i for j in net.nodes)
        ):
            return i
    return None


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("options", [{}, {"pre_vote": True, "check_quorum": True}])
def test_random_faults_keep_safety(seed: int, options: RaftOptions) -> None:
    """Figure 3: Election Safety ("at most one leader can be elected in a given term") and State
    Machine Safety ("if a server has applied a log entry at a given index to its state machine,
    no other server will ever apply a different log entry for the same index"), under random
    drops and partitions; and, once the faults stop, the cluster makes progress again (§5.2)."""
    rng = random.Random(seed)
    net = Network([1, 2, 3, 4, 5], **options)
    leaders_by_term: dict[int, int] = {}
    proposed = 0
    for step in range(400):
        action = rng.random()
        if action < 0.05:
            net.recover()
            a, b = rng.sample(sorted(net.nodes), 2)
            net.cut(a, b)
        elif action < 0.08:
            net.recover()
            net.isolate(rng.choice(sorted(net.nodes)))
        elif action < 0.12:
            net.recover()
        elif action < 0.45:
            node = rng.choice(sorted(net.nodes))
            try:
                net.nodes[node].propose(b"%d-%d" % (seed, step))
                proposed += 1
            except ProposalDroppedError:
                pass
        loss = rng.random() * 0.3
        net.drop = lambda _m, loss=loss: rng.random() < loss  # type: ignore[misc]
        net.tick_all()
        _check_safety(net, leaders_by_term)

    # Liveness once the network heals: one leader of the newest term, followed by everyone.
    net.recover()
    leader = None
    for _ in range(200):
        net.tick_all()
        leader = _stable_leader(net)
        if leader is not None:
            break
    assert leader is not None
    net.nodes[leader].propose(b"final")
    for _ in range(3):
        net.tick_all()
    _check_safety(net, leaders_by_term)
    for i in net.nodes:
        assert net.applied_data(i)[-1:] == [b"final"], i
    assert all(e.type == EntryType.NORMAL for i in net.nodes for e in net.applied[i] if e.data)
    assert proposed > 0
