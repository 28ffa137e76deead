"""The data of the raft core: entries, messages, states and the Ready batch.

Everything here is a frozen, slotted dataclass (or an IntEnum), so values can be shared between
the core, the simulator and the server without defensive copies. Names and numbers follow etcd's
``raftpb`` so that traces read the same as etcd's; membership changes use one shape only
(etcd's ``ConfChangeV2``): a single change with the ``AUTO`` transition is the classic
one-at-a-time change, several changes enter joint consensus.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

NONE = 0
"""The id that means "no node" (no leader, no vote)."""


class EntryType(IntEnum):
    NORMAL = 0
    CONF_CHANGE = 2  # the data is an encoded ConfChange (etcd's EntryConfChangeV2)


class MessageType(IntEnum):
    HUP = 0
    BEAT = 1
    PROP = 2
    APP = 3
    APP_RESP = 4
    VOTE = 5
    VOTE_RESP = 6
    SNAP = 7
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    UNREACHABLE = 10
    SNAP_STATUS = 11
    CHECK_QUORUM = 12
    TRANSFER_LEADER = 13
    TIMEOUT_NOW = 14
    READ_INDEX = 15
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18


LOCAL_MESSAGES = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.UNREACHABLE,
        MessageType.SNAP_STATUS,
        MessageType.CHECK_QUORUM,
    }
)
"""Messages a node sends itself; they never go on the wire."""


class StateType(IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


class ConfChangeType(IntEnum):
    ADD_NODE = 0
    REMOVE_NODE = 1
    UPDATE_NODE = 2
    ADD_LEARNER_NODE = 3


class ConfChangeTransition(IntEnum):
    AUTO = 0  # simple change if possible, else joint with automatic leave
    JOINT_IMPLICIT = 1  # joint, left automatically
    JOINT_EXPLICIT = 2  # joint, left by an empty ConfChange from the application


class ReadOnlyOption(IntEnum):
    SAFE = 0  # ReadIndex confirmed by a heartbeat round with a quorum
    LEASE_BASED = 1  # trusts the leader lease (needs CheckQuorum); weaker under clock skew


class SnapshotStatus(IntEnum):
    FINISH = 1
    FAILURE = 2


@dataclass(frozen=True, slots=True)
class Entry:
    term: int = 0
    index: int = 0
    type: EntryType = EntryType.NORMAL
    data: bytes = b""

    def size(self) -> int:
        """Approximate encoded size, used for flow control (max message bytes)."""
        return len(self.data) + 16


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message that depends on it is sent."""

    term: int = 0
    vote: int = NONE
    commit: int = 0

    def is_empty(self) -> bool:
        return self == EMPTY_HARD_STATE


EMPTY_HARD_STATE = HardState()


@dataclass(frozen=True, slots=True)
class ConfState:
    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    voters_outgoing: tuple[int, ...] = ()  # non-empty only in a joint configuration
    learners_next: tuple[int, ...] = ()  # voters demoted to learners when the joint config ends
    auto_leave: bool = False


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    conf_state: ConfState = field(default_factory=ConfState)
    index: int = 0
    term: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    data: bytes = b""
    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)

    def is_empty(self) -> bool:
        return self.metadata.index == 0


EMPTY_SNAPSHOT = Snapshot()


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: int = NONE
    from_: int = NONE
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""


@dataclass(frozen=True, slots=True)
class ConfChangeSingle:
    type: ConfChangeType
    node_id: int


_CC_HEADER = struct.Struct(">BII")  # transition, number of changes, context length
_CC_CHANGE = struct.Struct(">BQ")


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A membership change. An empty ``changes`` leaves a joint configuration."""

    changes: tuple[ConfChangeSingle, ...] = ()
    transition: ConfChangeTransition = ConfChangeTransition.AUTO
    context: bytes = b""

    def leave_joint(self) -> bool:
        return not self.changes and self.transition == ConfChangeTransition.AUTO

    def encode(self) -> bytes:
        parts = [_CC_HEADER.pack(self.transition, len(self.changes), len(self.context))]
        parts.extend(_CC_CHANGE.pack(c.type, c.node_id) for c in self.changes)
        parts.append(self.context)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        transition, count, ctx_len = _CC_HEADER.unpack_from(data, 0)
        offset = _CC_HEADER.size
        changes = []
        for _ in range(count):
            kind, node_id = _CC_CHANGE.unpack_from(data, offset)
            offset += _CC_CHANGE.size
            changes.append(ConfChangeSingle(ConfChangeType(kind), node_id))
        context = bytes(data[offset : offset + ctx_len])
        if len(context) != ctx_len:
            raise ValueError("truncated ConfChange")
        return cls(tuple(changes), ConfChangeTransition(transition), context)


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the applied index reaches ``index``."""

    index: int
    request_ctx: bytes


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state, useful to the application but never persisted."""

    lead: int = NONE
    raft_state: StateType = StateType.FOLLOWER


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the application must do, in this order.

    1. Persist ``hard_state`` (if not None), ``entries`` and ``snapshot`` (if not None); when
       ``must_sync`` is true the write must be fsynced.
    2. Only then send ``messages`` (they may depend on what was persisted, e.g. an append
       response or a vote).
    3. Apply ``committed_entries`` in order, and serve ``read_states`` once applied.
    4. Call ``RawNode.advance(ready)``.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    read_states: tuple[ReadState, ...] = ()
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    committed_entries: tuple[Entry, ...] = ()
    messages: tuple[Message, ...] = ()
    must_sync: bool = False
