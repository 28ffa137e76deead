"""How a pod starts: a pure function of what it sees (its data dir, the cluster's answer, the
initial cluster state, replicas and its ordinal). docs/kubernetes-membership.md has the table.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SeenMember:
    """One member of a MemberList answer."""

    id: int
    name: str  # empty until the member has started and published
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]  # empty until the member has started and published
    is_learner: bool

    @property
    def started(self) -> bool:
        return bool(self.client_urls)


class Action(enum.Enum):
    START_AS_IS = "start with the data dir as it is"
    START_NEW = "bootstrap a new cluster with pods 0..replicas-1"
    JOIN_LISTED = "start existing: already added to the cluster"
    JOIN_AS_LEARNER = "add this pod as a learner, start existing, promote it"
    WAIT = "wait for the cluster to answer"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    move_data_aside: bool = False  # a stale data dir of a removed member
    remove_id: int | None = None  # this name's old member id, to remove first (lost volume)


# A pod the cluster does not list and whose ordinal is beyond replicas was scaled in (the hook
# removed it) and is about to be deleted: it must not add itself back.
_BEYOND = "the cluster does not list this pod and its ordinal {ordinal} >= replicas {replicas}"


def find_self(members: Sequence[SeenMember], name: str, peer_url: str) -> SeenMember | None:
    """This pod's entry: by name once it has started, by peer URL before (etcd's rule)."""
    for member in members:
        if member.name == name or peer_url in member.peer_urls:
            return member
    return None


def decide(
    name: str,
    peer_url: str,
    has_data: bool,
    members: Sequence[SeenMember] | None,
    initial_state: str,
    replicas: int,
    ordinal: int,
) -> Decision:
    """``members`` is the cluster's MemberList answer, None when no member answered."""
    me = None if members is None else find_self(members, name, peer_url)
    if has_data:
        if members is None:
            return Decision(Action.START_AS_IS, "the data dir has a member; no member answered")
        if me is not None:
            return Decision(Action.START_AS_IS, "the data dir has a member the cluster lists")
        if ordinal >= replicas:
            return Decision(Action.WAIT, _BEYOND.format(ordinal=ordinal, replicas=replicas))
        return Decision(
            Action.JOIN_AS_LEARNER,
            "the data dir has a member the cluster no longer lists (removed): "
            "moving it aside and joining as a new member",
            move_data_aside=True,
        )
    if me is not None and me.started:
        return Decision(
            Action.JOIN_AS_LEARNER,
            f"the data dir is empty but the cluster lists {name} as started (its volume "
            f"was lost): removing member {me.id:x} and joining as a new member",
            remove_id=me.id,
        )
    if me is not None and me.is_learner:
        return Decision(Action.JOIN_LISTED, "the cluster lists this pod as a learner not started")
    if me is not None or members is None:
        who = "nobody answered" if members is None else "the cluster lists it, not started"
        if initial_state == "new" and ordinal < replicas:
            return Decision(Action.START_NEW, f"empty data dir, {who}, initial state new")
        if me is not None:
            return Decision(Action.JOIN_LISTED, f"empty data dir, {who}, initial state existing")
        if initial_state == "new":
            return Decision(
                Action.WAIT, f"empty data dir, nobody answered, ordinal {ordinal} >= {replicas}"
            )
        return Decision(Action.WAIT, "empty data dir, nobody answered, initial state existing")
    if ordinal >= replicas:
        return Decision(Action.WAIT, _BEYOND.format(ordinal=ordinal, replicas=replicas))
    return Decision(Action.JOIN_AS_LEARNER, "empty data dir; the cluster does not list this pod")
