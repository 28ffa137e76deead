"""A read-only picture of a raft node, for the application, metrics and tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from etcdpy.raft.tracker import ProgressState
from etcdpy.raft.types import NONE, ConfState, HardState, SoftState, StateType

if TYPE_CHECKING:
    from etcdpy.raft.raft import Raft


@dataclass(frozen=True, slots=True)
class ProgressStatus:
    """A copy of what the leader knows of one member's replication."""

    match: int
    next: int
    state: ProgressState
    recent_active: bool
    is_learner: bool
    paused: bool
    inflight_count: int


@dataclass(frozen=True, slots=True)
class Status:
    id: int
    hard_state: HardState
    soft_state: SoftState
    applied: int
    conf_state: ConfState
    lead_transferee: int = NONE
    # Filled on the leader only.
    progress: dict[int, ProgressStatus] = field(default_factory=dict)


def get_status(r: Raft) -> Status:
    progress: dict[int, ProgressStatus] = {}
    if r.state == StateType.LEADER:
        for node_id in sorted(r.prs.progress):
            pr = r.prs.progress[node_id]
            progress[node_id] = ProgressStatus(
                match=pr.match,
                next=pr.next,
                state=pr.state,
                recent_active=pr.recent_active,
                is_learner=pr.is_learner,
                paused=pr.is_paused(),
                inflight_count=pr.inflights.count(),
            )
    return Status(
        id=r.id,
        hard_state=r.hard_state(),
        soft_state=r.soft_state(),
        applied=r.raft_log.applied,
        conf_state=r.prs.conf_state(),
        lead_transferee=r.lead_transferee,
        progress=progress,
    )
