"""Throughput of the raft core alone: a 3-member in-memory cluster, no faults, no disk, no network.

For each batch size B, the leader gets B proposals, then every node processes its Ready (persist
to MemoryStorage, deliver messages, apply) until the cluster is idle; repeat. Prints the proposals
committed (and applied on every member) per second of CPU time (steady on a busy machine) and
per second of wall time. All three members run in this one process, so the figure is the
consensus cost of the whole cluster, not of one member.

    .venv/bin/python -m bench.raft_throughput [--proposals N] [--batches 1,64] [--size BYTES]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import deque

from etcdpy.raft.config import Config
from etcdpy.raft.rawnode import RawNode
from etcdpy.raft.storage import MemoryStorage
from etcdpy.raft.types import ConfChange, EntryType, Message, StateType

IDS = (1, 2, 3)


class Cluster:
    def __init__(self) -> None:
        self.storages = {i: MemoryStorage() for i in IDS}
        self.nodes = {
            i: RawNode(Config(id=i, storage=self.storages[i], rand=random.Random(i))) for i in IDS
        }
        for node in self.nodes.values():
            node.bootstrap(IDS)
        self.inbox: deque[Message] = deque()
        self.applied_on = {i: 0 for i in IDS}

    def pump(self) -> None:
        """Run every node until no Ready and no message is left."""
        nodes = self.nodes
        inbox = self.inbox
        while True:
            busy = False
            for i in IDS:
                node = nodes[i]
                if not node.has_ready():
                    continue
                busy = True
                rd = node.ready()
                storage = self.storages[i]
                if rd.snapshot is not None:
                    storage.apply_snapshot(rd.snapshot)
                if rd.entries:
                    storage.append(rd.entries)
                if rd.hard_state is not None:
                    storage.set_hard_state(rd.hard_state)
                inbox.extend(rd.messages)
                applied = 0
                for e in rd.committed_entries:
                    if e.type == EntryType.CONF_CHANGE:
                        node.apply_conf_change(ConfChange.decode(e.data))
                    elif e.data:
                        applied += 1
                self.applied_on[i] += applied
                node.advance(rd)
            while inbox:
                busy = True
                m = inbox.popleft()
                nodes[m.to].step(m)
            if not busy:
                return


def run(batch: int, proposals: int, size: int) -> tuple[float, float]:
    cluster = Cluster()
    leader = cluster.nodes[1]
    cluster.pump()  # apply the bootstrap conf changes first: a node with unapplied ones waits
    leader.campaign()
    cluster.pump()
    assert leader.status().soft_state.raft_state == StateType.LEADER
    payload = b"v" * size
    rounds = proposals // batch
    start_cpu = time.process_time()
    start_wall = time.perf_counter()
    for _ in range(rounds):
        for _ in range(batch):
            leader.propose(payload)
        cluster.pump()
    cpu = time.process_time() - start_cpu
    wall = time.perf_counter() - start_wall
    done = cluster.applied_on[1]
    assert done == rounds * batch, (done, rounds * batch)
    assert all(n == done for n in cluster.applied_on.values())
    return done / cpu, done / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=20_000)
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--size", type=int, default=128, help="bytes per proposal")
    args = parser.parse_args()
    for batch in (int(b) for b in args.batches.split(",")):
        per_cpu_s, per_wall_s = run(batch, args.proposals, args.size)
        print(
            f"batch={batch:>3}  proposals={args.proposals}  size={args.size}B  "
            f"committed per CPU second={per_cpu_s:,.0f}  per wall second={per_wall_s:,.0f}"
        )


if __name__ == "__main__":
    main()
