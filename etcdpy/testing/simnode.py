"""The simulator's node driver: one real ``RawNode`` with its disk and its application.

It runs the application loop of the raft contract (persist, fsync if asked, send, apply, serve
reads, advance), feeds the checkers as it goes, and can crash (losing its memory and its
unsynced writes) and restart from what its :class:`~etcdpy.testing.simdisk.SimDisk` holds.

``unsafe_send_before_persist`` breaks the loop on purpose: messages leave before the Ready is
written, and the write is not fsynced until the disk's background flush. The simulator uses it
to show that its durability checks catch a node that acknowledges what it has not persisted.
"""

from __future__ import annotations

import contextlib
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from etcdpy.raft.config import Config
from etcdpy.raft.errors import CompactedError, RaftError, UnavailableError
from etcdpy.raft.rawnode import RawNode
from etcdpy.raft.storage import MemoryStorage
from etcdpy.raft.types import (
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    ReadState,
    Ready,
    Snapshot,
    SnapshotMetadata,
    StateType,
)
from etcdpy.testing.checkers import (
    CommitSafety,
    Durability,
    ElectionSafety,
    LeaderCompleteness,
    LogMatching,
    LogView,
    StateMachineSafety,
    Violation,
)
from etcdpy.testing.simdisk import AppRecord, CompactionWrite, RaftWrite, SimDisk
from etcdpy.testing.simkv import KVStateMachine, WriteOp

_READ_CTX = struct.Struct(">IIIB")  # client, request id, attempt, key


@dataclass(frozen=True, slots=True)
class ReadCtx:
    client: int
    request: int
    attempt: int
    key: int

    def encode(self) -> bytes:
        return _READ_CTX.pack(self.client, self.request, self.attempt, self.key)

    @classmethod
    def decode(cls, data: bytes) -> ReadCtx:
        return cls(*_READ_CTX.unpack(data))


@dataclass(slots=True)
class Checkers:
    commit: CommitSafety
    election: ElectionSafety
    log: LogMatching
    state_machine: StateMachineSafety
    durability: Durability
    completeness: LeaderCompleteness

    @classmethod
    def new(cls) -> Checkers:
        return cls(
            CommitSafety(),
            ElectionSafety(),
            LogMatching(),
            StateMachineSafety(),
            Durability(),
            LeaderCompleteness(),
        )


class NodeHost(Protocol):
    """What the node needs from the simulation around it."""

    def send(self, msg: Message) -> None: ...
    def on_write_applied(self, node: SimNode, op: WriteOp, entry: Entry) -> None: ...
    def on_conf_applied(self, node: SimNode, entry: Entry, cs: ConfState) -> None: ...
    def on_read_served(self, node: SimNode, ctx: ReadCtx, value: int | None) -> None: ...
    def on_leader(self, node: SimNode) -> None: ...
    def on_first_commit(self, node: SimNode, entries: list[Entry], conf: ConfState) -> None: ...


@dataclass(slots=True)
class NodeOptions:
    election_tick: int = 10
    heartbeat_tick: int = 1
    snapshot_every: int = 20  # compact the log every this many applied entries
    max_size_per_msg: int = 1024 * 1024
    max_inflight_msgs: int = 256
    pre_vote: bool = True
    check_quorum: bool = True
    unsafe_send_before_persist: bool = False


class SimNode:
    def __init__(
        self,
        node_id: int,
        host: NodeHost,
        checkers: Checkers,
        rand: random.Random,
        options: NodeOptions,
        bootstrap_peers: Sequence[int] = (),
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self.id = node_id
        self.host = host
        self.checkers = checkers
        self.rand = rand
        self.options = options
        self.bootstrap_peers = tuple(bootstrap_peers)
        self.trace = trace
        self.disk = SimDisk()
        self.alive = False
        self.removed = False
        self.leaving = False  # removed from the configuration, about to stop
        self.raft: RawNode | None = None
        self.storage = MemoryStorage()
        self.sm = KVStateMachine()
        self.applied = 0
        self.conf_state = ConfState()
        self.term = 0
        self.state = StateType.FOLLOWER
        self.lead = 0
        self._leader_term = -1  # the term in which this node last reported itself leader
        self._snap_index = 0
        self._reads: list[ReadState] = []
        self.restarts = 0

    # -- life cycle --------------------------------------------------------------------------

    def _config(self, storage: MemoryStorage, applied: int) -> Config:
        logger: Callable[[str], None] | None = None
        if self.trace is not None:
            trace = self.trace
            prefix = f"  n{self.id} raft: "

            def logger(line: str) -> None:
                trace(prefix + line)

        return Config(
            id=self.id,
            storage=storage,
            rand=self.rand,
            election_tick=self.options.election_tick,
            heartbeat_tick=self.options.heartbeat_tick,
            applied=applied,
            max_size_per_msg=self.options.max_size_per_msg,
            max_inflight_msgs=self.options.max_inflight_msgs,
            pre_vote=self.options.pre_vote,
            check_quorum=self.options.check_quorum,
            logger=logger,
        )

    def start(self) -> None:
        """Start from whatever the disk holds: nothing (a new node) or a previous life."""
        d = self.disk.durable
        fresh = d.hard_state.is_empty() and not d.entries and d.snapshot.is_empty()
        self._reads = []
        self.state = StateType.FOLLOWER
        self.lead = 0
        self._leader_term = -1
        if fresh:
            self.storage = MemoryStorage()
            self.sm = KVStateMachine()
            self.applied = 0
            self.conf_state = ConfState()
            self.term = 0
            self._snap_index = 0
            self.raft = RawNode(self._config(self.storage, 0))
            if self.bootstrap_peers:
                self.raft.bootstrap(self.bootstrap_peers)
        else:
            self._restart_from_disk()
        self.alive = True

    def _restart_from_disk(self) -> None:
        d = self.disk.durable
        storage = MemoryStorage()
        snap = d.snapshot
        if not snap.is_empty():
            storage.apply_snapshot(snap)
        storage.set_hard_state(d.hard_state)
        log = d.log_after_snapshot()
        if log:
            storage.append(log)
        snap_index = snap.metadata.index
        app = d.app
        if app is not None and app.applied > snap_index:
            self.sm = KVStateMachine.decode(app.state)
            self.applied = app.applied
            self.conf_state = app.conf_state
            # Raft rebuilds its configuration from the snapshot; when membership changed
            # after it, raft must see those entries again, so restart it from the snapshot
            # and let the loop skip what the application already holds.
            replay = any(
                e.type == EntryType.CONF_CHANGE and snap_index < e.index <= app.applied for e in log
            )
            raft_applied = snap_index if replay else app.applied
        else:
            self.sm = KVStateMachine.decode(snap.data)
            self.applied = snap_index
            self.conf_state = snap.metadata.conf_state
            raft_applied = snap_index
        self.storage = storage
        self.term = d.hard_state.term
        self._snap_index = snap_index
        self.raft = RawNode(self._config(storage, raft_applied))

    def crash(self) -> int:
        """Lose memory and unsynced writes; returns how many cached disk records were lost."""
        self.alive = False
        self.raft = None
        self._reads = []
        self.restarts += 1
        return self.disk.crash(self.rand)

    def stop(self) -> None:
        """Leave for good (the node was removed from the cluster)."""
        self.disk.fsync()
        self.alive = False
        self.removed = True
        self.raft = None
        self._reads = []

    # -- inputs ------------------------------------------------------------------------------

    def tick(self) -> None:
        if self.raft is not None:
            self.raft.tick()

    def step(self, msg: Message) -> None:
        if self.raft is None:
            return
        with contextlib.suppress(RaftError):  # e.g. a response from a removed member
            self.raft.step(msg)

    # -- the application loop ----------------------------------------------------------------

    def process_ready(self) -> None:
        raft = self.raft
        rounds = 0
        while raft is not None and raft.has_ready():
            rounds += 1
            if rounds > 10_000:  # a core that always has more to do would hang the run
                raise Violation("exception", f"node {self.id}: Ready never runs dry")
            rd = raft.ready()
            if self.options.unsafe_send_before_persist:
                self._send(rd.messages)
                self._persist(rd)
            else:
                self._persist(rd)
                # A snapshot is always synced (etcd's snapshotter and WAL do): must_sync only
                # covers entries, term and vote, and the reply to a snapshot claims its index.
                if rd.must_sync or (rd.snapshot is not None and not rd.snapshot.is_empty()):
                    self.disk.fsync()
                self._send(rd.messages)
            if rd.soft_state is not None:
                self.state = rd.soft_state.raft_state
                self.lead = rd.soft_state.lead
            if self.state == StateType.LEADER and self._leader_term != self.term:
                self._became_leader()
            self._apply(raft, rd)
            if rd.read_states:
                self._reads.extend(rd.read_states)
            if self._reads:
                self._serve_reads()
            raft.advance(rd)

    def _send(self, messages: Sequence[Message]) -> None:
        send = self.host.send
        for m in messages:
            if m.type == MessageType.SNAP:
                m = self._merged_snapshot(m)
            send(m)

    def _merged_snapshot(self, m: Message) -> Message:
        """Send the state as of now, not raft's stored snapshot (as etcd's server does).

        The stored snapshot may predate the recipient's membership, and a node ignores a
        snapshot whose configuration does not include it.
        """
        index = self.applied
        if m.snapshot is not None and m.snapshot.metadata.index >= index:
            return m
        meta = SnapshotMetadata(self.conf_state, index, self.storage.term(index))
        self.checkers.state_machine.on_state(self.id, index, self.sm.digest())
        return replace(m, snapshot=Snapshot(self.sm.encode(), meta))

    def _term_at(self, index: int) -> int | None:
        if index == 0:
            return 0
        try:
            return self.storage.term(index)
        except (CompactedError, UnavailableError):
            return None

    def _persist(self, rd: Ready) -> None:
        snap = rd.snapshot if rd.snapshot is not None and not rd.snapshot.is_empty() else None
        if snap is not None:
            self.storage.apply_snapshot(snap)
        if rd.entries:
            prev_term = self._term_at(rd.entries[0].index - 1)
            self.storage.append(rd.entries)
            if prev_term is not None:
                self.checkers.log.on_persist(self.id, rd.entries, prev_term)
            else:
                self.checkers.log.on_persist(self.id, rd.entries[1:], rd.entries[0].term)
        hs = rd.hard_state
        if hs is not None:
            self.storage.set_hard_state(hs)
            self.term = hs.term
        if snap is not None or rd.entries or hs is not None:
            self.disk.write(RaftWrite(hs, rd.entries, snap))

    def _became_leader(self) -> None:
        self._leader_term = self.term
        self.checkers.election.on_leader(self.id, self.term)
        first = self.storage.first_index()
        self.checkers.durability.on_leader(self.id, self.term, first, self._term_at)
        self.checkers.completeness.on_leader(self.id, self.term, first, self._term_at)
        self.host.on_leader(self)

    def _apply(self, raft: RawNode, rd: Ready) -> None:
        changed = False
        snap = rd.snapshot
        if snap is not None and not snap.is_empty() and snap.metadata.index > self.applied:
            self._restore(snap)
            changed = True
        checker = self.checkers.state_machine
        committed = self.checkers.completeness.on_commit
        term = self.term
        conf_before = self.conf_state  # the configuration that counted the quorum
        first_time: list[Entry] = []
        for e in rd.committed_entries:
            committed(e.index, e.term, term)
            if e.index <= self.applied:
                # Replayed after a restart: the application holds it already; raft needs
                # the membership changes again (it restarted from the snapshot's config).
                checker.on_apply(self.id, e)
                if e.type == EntryType.CONF_CHANGE:
                    self.conf_state = raft.apply_conf_change(ConfChange.decode(e.data))
                continue
            if e.index != self.applied + 1:
                raise Violation(
                    "state-machine-safety",
                    f"node {self.id} applies {e.index} right after {self.applied}",
                )
            if checker.on_apply(self.id, e):
                first_time.append(e)
            self.applied = e.index
            changed = True
            if e.type == EntryType.CONF_CHANGE:
                self.conf_state = raft.apply_conf_change(ConfChange.decode(e.data))
                self.host.on_conf_applied(self, e, self.conf_state)
            elif e.data:
                op = self.sm.apply(e.data)
                if op is not None:
                    self.host.on_write_applied(self, op, e)
        if first_time:
            self.host.on_first_commit(self, first_time, conf_before)
        if not changed:
            return
        self.disk.write(AppRecord(self.applied, self.sm.encode(), self.conf_state))
        if self.applied - self._snap_index >= self.options.snapshot_every:
            self._compact()

    def _restore(self, snap: Snapshot) -> None:
        self.sm = KVStateMachine.decode(snap.data)
        self.applied = snap.metadata.index
        self.conf_state = snap.metadata.conf_state
        self._snap_index = max(self._snap_index, snap.metadata.index)
        self.checkers.state_machine.on_state(self.id, self.applied, self.sm.digest())
        if self.trace is not None:
            self.trace(f"  n{self.id} restores snapshot at {self.applied}")

    def _compact(self) -> None:
        """Snapshot the state at the applied index and drop (most of) the log before it."""
        index = self.applied
        if index <= self.storage.snapshot().metadata.index:
            return
        data = self.sm.encode()
        snap = self.storage.create_snapshot(index, self.conf_state, data)
        self.checkers.state_machine.on_state(self.id, index, self.sm.digest())
        # Keep a few entries sometimes, so that both catch-up paths (log and snapshot) run.
        keep = self.rand.randint(0, 3)
        compact_to = max(index - keep, 0)
        if compact_to >= self.storage.first_index():
            self.storage.compact(compact_to)
        else:
            compact_to = self.storage.first_index() - 1
        self._snap_index = index
        self.disk.write(CompactionWrite(snap, compact_to))
        if self.trace is not None:
            self.trace(f"  n{self.id} snapshot at {index}, log compacted to {compact_to}")

    def _serve_reads(self) -> None:
        waiting: list[ReadState] = []
        for rs in self._reads:
            if rs.index <= self.applied:
                ctx = ReadCtx.decode(rs.request_ctx)
                self.host.on_read_served(self, ctx, self.sm.read(ctx.key))
            else:
                waiting.append(rs)
        self._reads = waiting

    # -- views for the simulation and the checkers -------------------------------------------

    def log_view(self) -> LogView:
        """This node's log as a vote would judge it: in memory if up, on disk if down."""
        if self.alive:
            storage = self.storage
            last = storage.last_index()
            return LogView(last, storage.term(last), self._term_at)
        d = self.disk.durable
        if d.entries:
            last_e = d.entries[-1]
            last_index, last_term = last_e.index, last_e.term
        else:
            last_index, last_term = d.snapshot.metadata.index, d.snapshot.metadata.term
        terms = {e.index: e.term for e in d.entries}
        terms[d.snapshot.metadata.index] = d.snapshot.metadata.term
        return LogView(last_index, last_term, terms.get)

    def is_leader(self) -> bool:
        return self.alive and self.state == StateType.LEADER

    def holds(self, index: int, term: int) -> bool:
        """Whether this node's log has entry (index, term), or a snapshot/apply past it."""
        got = self._term_at(index)
        if got is not None:
            return got == term
        return index < self.storage.first_index() and self.applied >= index
