"""A deterministic simulation of a raft cluster: nodes, network, clock, clients and faults.

One run has two phases (as in TigerBeetle's VOPR):

* the **safety phase**: clients read and write while the fault injector crashes and restarts
  nodes, partitions the network (symmetric and one-way), transfers leadership and changes the
  membership; the checkers of :mod:`etcdpy.testing.checkers` watch every step;
* the **liveness phase**: every fault heals (the network is perfect again, every crashed member
  restarts); a leader must be elected and a fresh proposal must commit within
  ``Scenario.liveness_bound`` ticks.

Then the end checks run: acknowledged writes are held by a quorum of the voters, and the client
history is linearizable.

Everything random comes from one ``random.Random(seed)`` (the scenario mix from a second one,
also derived from the seed), events at the same instant run in a fixed order, and nothing
iterates a set or dict whose order could depend on ``PYTHONHASHSEED``: a seed replays exactly.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from etcdpy.raft.errors import RaftError
from etcdpy.raft.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfState,
    Entry,
    Message,
    MessageType,
    SnapshotStatus,
)
from etcdpy.testing.checkers import READ, WRITE, Op, Violation, check_linearizable
from etcdpy.testing.scenario import TICK, Scenario
from etcdpy.testing.simkv import WriteOp
from etcdpy.testing.simnet import NetFaults, SimNetwork
from etcdpy.testing.simnode import Checkers, NodeOptions, ReadCtx, SimNode

PROBE_CLIENT = 0  # the liveness probe writes as this client; workload clients are 1..n
PROBE_KEY = 255  # outside the keys the workload uses


def conf_members(cs: ConfState) -> list[int]:
    return sorted({*cs.voters, *cs.learners, *cs.voters_outgoing, *cs.learners_next})


@dataclass(slots=True)
class ClientOp:
    kind: str
    key: int
    request: int
    value: int | None
    invoke: int  # rank in the history's event order
    invoke_time: int
    attempt: int = 0
    node: int = 0


@dataclass(slots=True)
class SimClient:
    id: int
    next_request: int = 1
    op: ClientOp | None = None
    leader_hint: int = 0


@dataclass(slots=True)
class RunStats:
    leaders: int = 0
    crashes: int = 0
    partitions: int = 0
    transfers: int = 0
    conf_changes: int = 0
    acked_writes: int = 0
    reads: int = 0
    unknown_writes: int = 0
    snapshots_sent: int = 0
    liveness_ticks: float = -1.0  # from healing to the probe applied on a quorum
    first_leader_ticks: int = -1


@dataclass(slots=True)
class RunResult:
    seed: int
    scenario: Scenario
    violation: Violation | None
    stats: RunStats
    trace_hash: str
    end_tick: int
    history: list[Op] = field(default_factory=list)


class Simulation:
    def __init__(
        self,
        seed: int,
        scenario: Scenario | None = None,
        trace: Callable[[str], None] | None = None,
        hash_trace: bool = False,
    ) -> None:
        self.seed = seed
        self.scenario = scenario if scenario is not None else Scenario.from_seed(seed)
        self.rand = random.Random(seed)
        self.now = 0
        self._events: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self._hasher = hashlib.sha256() if (hash_trace or trace is not None) else None
        self._sink = trace
        self.tracing = self._hasher is not None
        sc = self.scenario
        self.net = SimNetwork(self.rand, _copy_faults(sc.net))
        self.checkers = Checkers.new()
        self.options = NodeOptions(
            election_tick=sc.election_tick,
            snapshot_every=sc.snapshot_every,
            max_size_per_msg=sc.max_size_per_msg,
            max_inflight_msgs=sc.max_inflight_msgs,
            pre_vote=sc.pre_vote,
            check_quorum=sc.check_quorum,
            unsafe_send_before_persist=sc.unsafe_send_before_persist,
        )
        self.nodes: dict[int, SimNode] = {}
        self.conf = ConfState()
        self.conf_index = 0
        self.joined: set[int] = set()
        self.clients = [SimClient(i + 1) for i in range(sc.clients)]
        self.history: list[Op] = []
        self._rank = 0
        self.stats = RunStats()
        self._dirty: set[int] = set()
        self._healed_at: int | None = None
        self._probe_request = 0
        self._probe_index: int | None = None  # where the first liveness probe committed
        self._probe_done_at: int | None = None  # when a quorum of the voters applied it
        self._cc_pending_until = 0
        self._restart_token: dict[int, int] = {}
        self._next_id = sc.size + 1

    # -- tracing -----------------------------------------------------------------------------

    def log(self, text: str) -> None:
        if self._hasher is None:
            return
        line = f"{self.now / TICK:8.1f} {text}"
        self._hasher.update(line.encode())
        self._hasher.update(b"\n")
        if self._sink is not None:
            self._sink(line)

    def _node_trace(self) -> Callable[[str], None] | None:
        return self.log if self._hasher is not None else None

    # -- events ------------------------------------------------------------------------------

    def at(self, time: int, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._events, (time, self._seq, action))

    def after_ticks(self, ticks: float, action: Callable[[], None]) -> None:
        self.at(self.now + max(1, int(ticks * TICK)), action)

    def _rank_next(self) -> int:
        self._rank += 1
        return self._rank

    # -- the node host interface -------------------------------------------------------------

    def send(self, msg: Message) -> None:
        if self.tracing:
            self.log(_describe(msg))
        self.net.send(self.now, msg)

    def on_leader(self, node: SimNode) -> None:
        self.stats.leaders += 1
        if self.stats.first_leader_ticks < 0:
            self.stats.first_leader_ticks = self.now // TICK
        self.log(f"LEADER n{node.id} term {node.term}")
        churn = self.scenario.leader_churn
        if churn and self._healed_at is None and self.rand.random() < churn:
            # A flapping leader: crash or cut it off before it has replicated much (a cut
            # also loses what is in flight). Leaders that come and go with half-replicated
            # logs are what §5.4.2 (Figure 8) is about.
            def flap() -> None:
                if not node.alive or self._healed_at is not None:
                    return
                if self.rand.random() < 0.5:
                    self._crash(node, self.rand.randint(1, 20))
                else:
                    ids = [n.id for n in self._sorted_nodes() if not n.removed]
                    self._cut(
                        f"isolate new leader n{node.id}", lambda: self.net.isolate(node.id, ids), 20
                    )

            self.after_ticks(self.rand.uniform(0.0, 0.5), flap)

    def on_write_applied(self, node: SimNode, op: WriteOp, entry: Entry) -> None:
        if op.client == PROBE_CLIENT:
            if self._probe_index is None:
                self._probe_index = entry.index
                self.checkers.durability.on_ack(entry.index, entry.term, node.term)
                self.log(f"liveness probe committed at {entry.index} (n{node.id})")
            return
        client = self.clients[op.client - 1]
        cur = client.op
        if cur is None or cur.kind != WRITE or cur.request != op.request:
            return
        self.checkers.durability.on_ack(entry.index, entry.term, node.term)
        self.history.append(self._op(client, cur, cur.value, done=True))
        self.stats.acked_writes += 1
        self.log(f"client {client.id} write k{cur.key}={cur.value} ok at {entry.index}")
        self._client_done(client)

    def on_read_served(self, node: SimNode, ctx: ReadCtx, value: int | None) -> None:
        client = self.clients[ctx.client - 1]
        cur = client.op
        if cur is None or cur.kind != READ or cur.request != ctx.request:
            return
        self.history.append(self._op(client, cur, value, done=True))
        self.stats.reads += 1
        self.log(f"client {client.id} read k{cur.key} -> {value} (n{node.id})")
        self._client_done(client)

    def on_first_commit(self, node: SimNode, entries: list[Entry], conf: ConfState) -> None:
        voter_sets = [list(conf.voters), list(conf.voters_outgoing)]
        logs = {n.id: n.log_view() for n in self._sorted_nodes() if not n.removed}
        check = self.checkers.commit.on_commit
        for e in entries:
            check(node.id, e.index, e.term, voter_sets, logs)

    def on_conf_applied(self, node: SimNode, entry: Entry, cs: ConfState) -> None:
        if entry.index <= self.conf_index:
            return
        self.conf_index = entry.index
        self.conf = cs
        self._cc_pending_until = 0
        self.stats.conf_changes += 1
        self.log(
            f"conf at {entry.index}: voters {list(cs.voters)} learners {list(cs.learners)}"
            + (f" outgoing {list(cs.voters_outgoing)}" if cs.voters_outgoing else "")
        )
        members = conf_members(cs)
        self.joined.update(members)
        for nid in sorted(self.joined):
            n = self.nodes.get(nid)
            if n is not None and nid not in members and not n.removed and not n.leaving:
                # As etcd's server: a removed member stops a second (10 ticks) later, which
                # lets a removed leader tell the others that its removal is committed.
                n.leaving = True
                self.log(f"n{nid} removed from the cluster, stops in 10 ticks")
                self.after_ticks(10, self._stop_node(n))

    def _stop_node(self, node: SimNode) -> Callable[[], None]:
        def stop() -> None:
            self.log(f"n{node.id} stops")
            node.stop()
            self.net.drop_to(node.id)

        return stop

    # -- set-up ------------------------------------------------------------------------------

    def _new_node(self, nid: int, peers: tuple[int, ...]) -> SimNode:
        node = SimNode(nid, self, self.checkers, self.rand, self.options, peers, self._node_trace())
        self.nodes[nid] = node
        node.start()
        self._schedule_tick(node)
        self._dirty.add(nid)
        return node

    def _schedule_tick(self, node: SimNode) -> None:
        jitter = self.scenario.tick_jitter
        delay = TICK + (self.rand.randint(-jitter, jitter) if jitter else 0)
        self.at(self.now + delay, lambda: self._tick(node))

    def _tick(self, node: SimNode) -> None:
        if node.removed:
            return
        self._schedule_tick(node)
        if not node.alive:
            return
        node.tick()
        if self.rand.random() < self.scenario.flush_rate:
            node.disk.fsync()
        self._dirty.add(node.id)

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> RunResult:
        violation: Violation | None = None
        try:
            self._run()
        except Violation as v:
            violation = v
            self.log(f"VIOLATION {v}")
        except Exception as e:  # a crash of the raft core (or the driver) is a finding too
            where = traceback.extract_tb(e.__traceback__)[-1]
            violation = Violation(
                "exception",
                f"{type(e).__name__}: {e} (at {where.filename}:{where.lineno} {where.name})",
            )
            self.log(f"VIOLATION {violation}")
        return RunResult(
            self.seed,
            self.scenario,
            violation,
            self.stats,
            self._hasher.hexdigest() if self._hasher is not None else "",
            self.now // TICK,
            self.history,
        )

    def start_cluster(self) -> None:
        """Boot the initial members, start the clients and the fault injector."""
        sc = self.scenario
        peers = tuple(range(1, sc.size + 1))
        self.joined.update(peers)
        self.log(f"seed {self.seed}: {sc}")
        for nid in peers:
            self._new_node(nid, peers)
        for client in self.clients:
            self.after_ticks(self.rand.uniform(0, sc.think_ticks), self._client_step(client))
        self._schedule_faults()

    def _run(self) -> None:
        sc = self.scenario
        self.start_cluster()
        heal_at = sc.safety_ticks * TICK
        self.at(heal_at, self._heal)
        deadline = heal_at + sc.liveness_bound * TICK
        settle = sc.settle_ticks * TICK
        while True:
            self.step()
            if self._probe_index is not None and self._probe_done_at is None:
                self._check_probe_applied(self._probe_index)
            if self._probe_done_at is not None and self.now >= self._probe_done_at + settle:
                break
            if self.now > deadline:
                lead = [n.id for n in self._sorted_nodes() if n.is_leader()]
                raise Violation(
                    "liveness",
                    f"no committed proposal {sc.liveness_bound} ticks after healing "
                    f"(leaders now: {lead}, conf voters {list(self.conf.voters)})",
                )
        assert self._healed_at is not None and self._probe_done_at is not None
        self.stats.liveness_ticks = (self._probe_done_at - self._healed_at) / TICK
        self._final_checks()

    def _check_probe_applied(self, index: int) -> None:
        """Liveness is reached when a quorum of the current configuration applied the probe
        (a commit in the configuration the cluster is leaving would not show it can go on)."""
        applied = [n.id for n in self._sorted_nodes() if n.alive and n.applied >= index]
        for voters in (self.conf.voters, self.conf.voters_outgoing):
            if voters and sum(1 for v in voters if v in applied) <= len(voters) // 2:
                return
        self._probe_done_at = self.now
        self.log(f"liveness: probe applied by {applied}")

    def step(self) -> None:
        """Advance to the next instant and run everything due then."""
        nxt = self._events[0][0] if self._events else None
        due = self.net.next_due()
        if due is not None and (nxt is None or due < nxt):
            nxt = due
        assert nxt is not None, "the simulation ran out of events"
        self.now = nxt
        for d in self.net.pop_due(nxt):
            self._deliver(d.msg, d.lost)
        while self._events and self._events[0][0] <= nxt:
            _, _, action = heapq.heappop(self._events)
            action()
        while self._dirty:
            for nid in sorted(self._dirty):
                self._dirty.discard(nid)
                node = self.nodes[nid]
                if node.alive:
                    node.process_ready()

    def _deliver(self, msg: Message, lost: bool) -> None:
        node = self.nodes.get(msg.to)
        arrived = not lost and node is not None and node.alive
        if msg.type == MessageType.SNAP:
            self.stats.snapshots_sent += 1
            sender = self.nodes.get(msg.from_)
            if sender is not None and sender.raft is not None:
                status = SnapshotStatus.FINISH if arrived else SnapshotStatus.FAILURE
                sender.raft.report_snapshot(msg.to, status)
                self._dirty.add(sender.id)
        if not arrived or node is None:
            if self.tracing:
                self.log(f"lost {_describe(msg)}")
            return
        node.step(msg)
        self._dirty.add(node.id)

    def _sorted_nodes(self) -> list[SimNode]:
        return [self.nodes[nid] for nid in sorted(self.nodes)]

    def _member_nodes(self) -> list[SimNode]:
        members = conf_members(self.conf) if self.conf_index else sorted(self.nodes)
        return [self.nodes[m] for m in members if m in self.nodes]

    def leader(self) -> SimNode | None:
        """The live node that leads in the highest term, if any."""
        best: SimNode | None = None
        for n in self._sorted_nodes():
            if n.is_leader() and (best is None or n.term > best.term):
                best = n
        return best

    # -- clients -----------------------------------------------------------------------------

    def _client_step(self, client: SimClient) -> Callable[[], None]:
        return lambda: self._client_start(client)

    def _client_start(self, client: SimClient) -> None:
        if client.op is not None:
            return
        sc = self.scenario
        request = client.next_request
        client.next_request += 1
        key = self.rand.randrange(sc.keys)
        if self.rand.random() < sc.write_ratio:
            op = ClientOp(WRITE, key, request, client.id * 1_000_000 + request, 0, self.now)
        else:
            op = ClientOp(READ, key, request, None, 0, self.now)
        op.invoke = self._rank_next()
        client.op = op
        self._client_submit(client)

    def _op(self, client: SimClient, op: ClientOp, value: int | None, done: bool) -> Op:
        return Op(
            client.id,
            op.kind,
            op.key,
            value,
            op.invoke,
            self._rank_next() if done else None,
            op.invoke_time / TICK,
            self.now / TICK if done else None,
        )

    def _client_done(self, client: SimClient) -> None:
        client.op = None
        self.after_ticks(self.rand.uniform(0, self.scenario.think_ticks), self._client_step(client))

    def _client_submit(self, client: SimClient) -> None:
        op = client.op
        if op is None:
            return
        sc = self.scenario
        if self.now - op.invoke_time >= sc.give_up_ticks * TICK:
            if op.kind == WRITE:
                # The write may or may not take effect, at any time from now on.
                self.history.append(self._op(client, op, op.value, done=False))
                self.stats.unknown_writes += 1
            self.log(f"client {client.id} gives up on request {op.request}")
            self._client_done(client)
            return
        op.attempt += 1
        node = self._pick_node(client)
        attempt = op.attempt
        retry_ticks: float = sc.attempt_ticks
        if node is None or node.raft is None or node.lead == 0:
            retry_ticks = 1  # nobody to talk to, or no leader known there: try elsewhere soon
            client.leader_hint = 0
        else:
            op.node = node.id
            client.leader_hint = node.lead
            try:
                if op.kind == WRITE:
                    assert op.value is not None
                    node.raft.propose(WriteOp(client.id, op.request, op.key, op.value).encode())
                else:
                    node.raft.read_index(ReadCtx(client.id, op.request, attempt, op.key).encode())
            except RaftError:
                retry_ticks = 1
            self._dirty.add(node.id)
            if self.tracing:
                self.log(f"client {client.id} {op.kind} k{op.key} req {op.request} -> n{node.id}")

        def retry() -> None:
            if client.op is op and op.attempt == attempt:
                self._client_submit(client)

        self.after_ticks(retry_ticks, retry)

    def _pick_node(self, client: SimClient) -> SimNode | None:
        hint = self.nodes.get(client.leader_hint)
        if hint is not None and hint.alive and self.rand.random() < 0.8:
            return hint
        live = [n for n in self._member_nodes() if n.alive]
        return self.rand.choice(live) if live else None

    # -- faults ------------------------------------------------------------------------------

    def _schedule_faults(self) -> None:
        sc = self.scenario
        kinds: list[tuple[int, Callable[[], None]]] = [
            (sc.crash_every, self._crash_some),
            (sc.partition_every, self._partition_some),
            (sc.transfer_every, self._transfer_some),
            (sc.membership_every, self._change_membership),
        ]
        for every, action in kinds:
            if every > 0:
                self._repeat(every, action)

    def _repeat(self, every: int, action: Callable[[], None]) -> None:
        def fire() -> None:
            if self._healed_at is not None:
                return
            action()
            self.after_ticks(self.rand.uniform(0.5, 1.5) * every, fire)

        self.after_ticks(self.rand.uniform(0.2, 1.5) * every, fire)

    def _crash_some(self) -> None:
        live = [n for n in self._sorted_nodes() if n.alive]
        if not live:
            return
        lead = self.leader()
        node = lead if lead is not None and self.rand.random() < 0.3 else self.rand.choice(live)
        self._crash(node, self.rand.randint(1, self.scenario.max_down_ticks))

    def _crash(self, node: SimNode, down_ticks: int) -> None:
        lost = node.crash()
        self.stats.crashes += 1
        self.log(f"CRASH n{node.id} (lost {lost} unsynced disk records)")
        token = self._restart_token.get(node.id, 0) + 1
        self._restart_token[node.id] = token

        def restart() -> None:
            if self._restart_token.get(node.id) == token:
                self._restart(node)

        self.after_ticks(down_ticks, restart)

    def _restart(self, node: SimNode) -> None:
        if node.alive or node.removed:
            return
        node.start()
        self._dirty.add(node.id)
        self.log(f"RESTART n{node.id} (term {node.term}, applied {node.applied})")

    def _partition_some(self) -> None:
        ids = [n.id for n in self._sorted_nodes() if not n.removed]
        if len(ids) < 2:
            return
        kind = self.rand.randrange(4)
        net = self.net
        net.heal()  # a new partition replaces the previous one
        if kind == 0:
            victim = self.rand.choice(ids)
            net.isolate(victim, ids)
            what = f"isolate n{victim}"
        elif kind == 1:
            lead = self.leader()
            victim = lead.id if lead is not None else self.rand.choice(ids)
            net.isolate(victim, ids)
            what = f"isolate leader n{victim}"
        elif kind == 2:
            shuffled = ids[:]
            self.rand.shuffle(shuffled)
            cut = self.rand.randint(1, len(ids) - 1)
            a, b = sorted(shuffled[:cut]), sorted(shuffled[cut:])
            net.partition([a, b])
            what = f"split {a} | {b}"
        else:
            links = []
            for _ in range(self.rand.randint(1, len(ids))):
                src, dst = self.rand.sample(ids, 2)
                net.block(src, dst)
                links.append(f"n{src}->n{dst}")
            what = "one-way " + " ".join(links)
        self.stats.partitions += 1
        self.log(f"PARTITION {what}")
        self._schedule_heal(self.scenario.max_partition_ticks)

    def _cut(self, what: str, apply: Callable[[], None], max_ticks: int) -> None:
        self.net.heal()
        apply()
        self.stats.partitions += 1
        self.log(f"PARTITION {what}")
        self._schedule_heal(max_ticks)

    def _schedule_heal(self, max_ticks: int) -> None:
        token = self.stats.partitions

        def heal() -> None:
            if self.stats.partitions == token and self._healed_at is None:
                self.net.heal()
                self.log("network healed")

        self.after_ticks(self.rand.randint(5, max_ticks), heal)

    def _transfer_some(self) -> None:
        lead = self.leader()
        if lead is None or lead.raft is None:
            return
        voters = [v for v in self.conf.voters if v != lead.id]
        if not voters:
            return
        to = self.rand.choice(voters)
        self.stats.transfers += 1
        self.log(f"TRANSFER leadership n{lead.id} -> n{to}")
        lead.raft.transfer_leader(to)
        self._dirty.add(lead.id)

    def _change_membership(self) -> None:
        if self.now < self._cc_pending_until:
            return
        lead = self.leader()
        if lead is None or lead.raft is None:
            return
        cc = self._next_conf_change()
        if cc is None:
            return
        new_ids = [
            c.node_id
            for c in cc.changes
            if c.node_id not in self.nodes
            and c.type in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE)
        ]
        self.log(f"CONF CHANGE proposed to n{lead.id}: {_describe_cc(cc)}")
        try:
            lead.raft.propose_conf_change(cc)
        except RaftError:
            return
        for nid in new_ids:
            self._next_id = max(self._next_id, nid + 1)
            self._new_node(nid, ())
        self._dirty.add(lead.id)
        self._cc_pending_until = self.now + 30 * TICK

    def _next_conf_change(self) -> ConfChange | None:
        cs = self.conf
        if cs.voters_outgoing:
            if cs.auto_leave:
                return None
            return ConfChange()  # leave the joint configuration
        voters = list(cs.voters)
        learners = list(cs.learners)
        room = len(self.nodes) < self.scenario.max_nodes
        new = self._next_id
        add, remove = ConfChangeType.ADD_NODE, ConfChangeType.REMOVE_NODE
        learner = ConfChangeType.ADD_LEARNER_NODE
        options: list[tuple[ConfChangeSingle, ...]] = []
        if room:
            options.append((ConfChangeSingle(learner, new),))
            options.append((ConfChangeSingle(add, new),))
        for lid in learners:
            options.append((ConfChangeSingle(add, lid),))
            options.append((ConfChangeSingle(remove, lid),))
        # Raft applies a configuration only once it knows the change committed, so the
        # voters that stay must still be a quorum of the configuration they leave, or they
        # may never learn it: a removed voter stops, a demoted one can no longer campaign
        # (the two-member hazard of etcd's raft README). Hence: remove or demote voters
        # only from three or more.
        for vid in voters if len(voters) >= 3 else []:
            options.append((ConfChangeSingle(learner, vid),))  # demote
            options.append((ConfChangeSingle(remove, vid),))
        if len(voters) >= 3 and (learners or room):
            joint_in = (
                ConfChangeSingle(add, learners[0]) if learners else ConfChangeSingle(add, new)
            )
            out = self.rand.choice(voters)
            transition = self.rand.choice(
                (ConfChangeTransition.JOINT_IMPLICIT, ConfChangeTransition.JOINT_EXPLICIT)
            )
            if self.rand.random() < 0.3:
                return ConfChange((joint_in, ConfChangeSingle(remove, out)), transition=transition)
        if not options:
            return None
        return ConfChange(self.rand.choice(options))

    # -- liveness phase ----------------------------------------------------------------------

    def _heal(self) -> None:
        self._healed_at = self.now
        self.net.heal()
        self.net.faults = NetFaults()
        self.log("HEAL: liveness phase, no more faults")
        for node in self._sorted_nodes():
            if not node.alive and not node.removed:
                self._restart(node)
        self._probe()

    def _probe(self) -> None:
        """Propose the liveness probe through the leader until it commits."""
        if self._probe_done_at is not None:
            return
        cs = self.conf
        if cs.voters_outgoing and not cs.auto_leave and self.now >= self._cc_pending_until:
            lead = self.leader()
            if lead is not None and lead.raft is not None:
                try:
                    lead.raft.propose_conf_change(ConfChange())
                    self._cc_pending_until = self.now + 10 * TICK
                    self._dirty.add(lead.id)
                except RaftError:
                    pass
        lead = self.leader()
        if lead is not None and lead.raft is not None:
            self._probe_request += 1
            data = WriteOp(PROBE_CLIENT, self._probe_request, PROBE_KEY, 0).encode()
            try:
                lead.raft.propose(data)
                self._dirty.add(lead.id)
            except RaftError:
                pass
        self.after_ticks(5, self._probe)

    def _final_checks(self) -> None:
        voters = sorted({*self.conf.voters, *self.conf.voters_outgoing})
        nodes = self.nodes

        def holds(nid: int, index: int, term: int) -> bool:
            n = nodes.get(nid)
            return n is not None and n.alive and n.holds(index, term)

        self.checkers.durability.check_quorum(voters, holds)
        check_linearizable(self.history)


def _copy_faults(f: NetFaults) -> NetFaults:
    return NetFaults(
        f.drop_rate, f.dup_rate, f.min_delay, f.max_delay, f.long_delay_rate, f.long_delay_max
    )


def _describe(m: Message) -> str:
    parts = [f"n{m.from_}->n{m.to} {m.type.name} t{m.term}"]
    if m.type in (MessageType.APP, MessageType.APP_RESP, MessageType.VOTE, MessageType.PRE_VOTE):
        parts.append(f"i{m.index} lt{m.log_term}")
    if m.entries:
        parts.append(f"ents[{m.entries[0].index}..{m.entries[-1].index}]")
    if m.commit:
        parts.append(f"c{m.commit}")
    if m.reject:
        parts.append(f"REJECT hint {m.reject_hint}")
    if m.snapshot is not None and m.snapshot.metadata.index:
        parts.append(f"snap@{m.snapshot.metadata.index}")
    return " ".join(parts)


def _describe_cc(cc: ConfChange) -> str:
    if not cc.changes:
        return "leave joint"
    body = ", ".join(f"{c.type.name} {c.node_id}" for c in cc.changes)
    return f"{body} ({cc.transition.name})"
