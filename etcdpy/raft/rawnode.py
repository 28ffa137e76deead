"""The application's handle on a raft node: inputs in, ``Ready`` batches out.

``RawNode`` does no I/O and runs no thread; the application drives it (see ``Ready`` for the
order of duties). Between ``ready()`` and ``advance()`` the application must not call ``ready()``
again.
"""

from __future__ import annotations

from collections.abc import Sequence

from etcdpy.raft.config import Config
from etcdpy.raft.errors import (
    ProposalDroppedError,
    RaftError,
    StepLocalMsgError,
    StepPeerNotFoundError,
)
from etcdpy.raft.raft import Raft
from etcdpy.raft.status import Status, get_status
from etcdpy.raft.types import (
    EMPTY_HARD_STATE,
    NONE,
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Ready,
    SnapshotStatus,
    SoftState,
)
from etcdpy.raft.util import is_local_msg, is_response_msg

MT = MessageType


class RawNode:
    def __init__(self, config: Config) -> None:
        self.raft = Raft(config)
        self._prev_soft_state: SoftState = self.raft.soft_state()
        self._prev_hard_state: HardState = self.raft.hard_state()

    def bootstrap(self, peers: Sequence[int]) -> None:
        """Start a new cluster: one committed ADD_NODE entry per peer, at term 1."""
        if not peers:
            raise RaftError("must provide at least one peer to Bootstrap")
        r = self.raft
        if r.raft_log.storage.last_index() != 0:
            raise RaftError("can't bootstrap a nonempty Storage")
        # The first Ready then carries the hard state too.
        self._prev_hard_state = EMPTY_HARD_STATE
        r._become_follower(1, NONE)
        changes = [
            ConfChange(changes=(ConfChangeSingle(ConfChangeType.ADD_NODE, peer),)) for peer in peers
        ]
        ents = [
            Entry(term=1, index=i + 1, type=EntryType.CONF_CHANGE, data=cc.encode())
            for i, cc in enumerate(changes)
        ]
        r.raft_log.append(ents)
        # The entries are committed, and applied here, so the node can campaign at once. The
        # application sees and applies them again in the first Ready (adding a member twice is
        # harmless).
        r.raft_log.committed = len(ents)
        for cc in changes:
            r.apply_conf_change(cc)

    # --- inputs --------------------------------------------------------------------------------

    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        self.raft.step(Message(type=MT.HUP))

    def propose(self, data: bytes) -> None:
        r = self.raft
        r.step(Message(type=MT.PROP, from_=r.id, entries=(Entry(data=data),)))

    def propose_conf_change(self, cc: ConfChange) -> None:
        r = self.raft
        ent = Entry(type=EntryType.CONF_CHANGE, data=cc.encode())
        r.step(Message(type=MT.PROP, from_=r.id, entries=(ent,)))

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        return self.raft.apply_conf_change(cc)

    def step(self, msg: Message) -> None:
        if is_local_msg(msg.type):
            raise StepLocalMsgError()
        if msg.from_ in self.raft.prs.progress or not is_response_msg(msg.type):
            # A proposal forwarded to us that we cannot take (we lost the leadership on the
            # way, or a transfer is under way) is dropped, as etcd's node does; the proposer's
            # client times out and retries.
            try:
                self.raft.step(msg)
            except ProposalDroppedError:
                return
            return
        raise StepPeerNotFoundError()

    def read_index(self, ctx: bytes) -> None:
        self.raft.step(Message(type=MT.READ_INDEX, entries=(Entry(data=ctx),)))

    def transfer_leader(self, to: int) -> None:
        self.raft.step(Message(type=MT.TRANSFER_LEADER, from_=to))

    def report_unreachable(self, node_id: int) -> None:
        self.raft.step(Message(type=MT.UNREACHABLE, from_=node_id))

    def report_snapshot(self, node_id: int, status: SnapshotStatus) -> None:
        reject = status == SnapshotStatus.FAILURE
        self.raft.step(Message(type=MT.SNAP_STATUS, from_=node_id, reject=reject))

    # --- outputs -------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        """Whether ``ready()`` would have anything to do (cheap: no objects are built)."""
        r = self.raft
        if r.msgs or r.append_owed or r.read_heartbeat_owed or r.read_states:
            return True
        log = r.raft_log
        if log.unstable.entries or log.unstable.snapshot is not None:
            return True
        soft = self._prev_soft_state
        if r.lead != soft.lead or r.state != soft.raft_state:
            return True
        hard = self._prev_hard_state
        if r.term != hard.term or r.vote != hard.vote or log.committed != hard.commit:
            return True
        return log.has_next_ents()

    def ready(self) -> Ready:
        r = self.raft
        r.flush()
        log = r.raft_log
        prev_soft = self._prev_soft_state
        soft: SoftState | None = None
        if r.lead != prev_soft.lead or r.state != prev_soft.raft_state:
            soft = SoftState(lead=r.lead, raft_state=r.state)
            self._prev_soft_state = soft
        prev_hard = self._prev_hard_state
        hard: HardState | None = None
        if (
            r.term != prev_hard.term
            or r.vote != prev_hard.vote
            or log.committed != prev_hard.commit
        ):
            hard = HardState(term=r.term, vote=r.vote, commit=log.committed)
        entries = tuple(log.unstable.entries)
        rd = Ready(
            soft_state=soft,
            hard_state=hard,
            read_states=tuple(r.read_states) if r.read_states else (),
            entries=entries,
            snapshot=log.unstable.snapshot,
            committed_entries=tuple(log.next_ents()) if log.has_next_ents() else (),
            messages=tuple(r.msgs),
            # New entries, or a changed term or vote, must be on disk before messages go out.
            must_sync=bool(entries) or r.term != prev_hard.term or r.vote != prev_hard.vote,
        )
        # Accept the Ready: its messages and read states belong to the application now.
        r.msgs = []
        if r.read_states:
            r.read_states = []
        return rd

    def advance(self, rd: Ready) -> None:
        if rd.hard_state is not None and not rd.hard_state.is_empty():
            self._prev_hard_state = rd.hard_state
        applied = 0
        if rd.committed_entries:
            applied = rd.committed_entries[-1].index
        elif rd.snapshot is not None and rd.snapshot.metadata.index > 0:
            applied = rd.snapshot.metadata.index
        self.raft.advance(
            applied,
            rd.committed_entries,
            rd.entries[-1] if rd.entries else None,
            rd.snapshot.metadata.index if rd.snapshot is not None else 0,
        )

    def status(self) -> Status:
        return get_status(self.raft)

    # Convenience for the application and tests.

    @property
    def id(self) -> int:
        return self.raft.id
