"""Membership changes: validate and compute the next configuration, never touching the current one.

Rules (the same as etcd's raft/confchange):

- A *simple* change may add, remove, promote or demote any number of learners but change the
  set of voters by at most one; otherwise it must go through joint consensus.
- ``enter_joint`` copies the voters into the outgoing half and applies the changes to the
  incoming half, giving ``C_old,new`` (Raft thesis 4.3); ``leave_joint`` drops the outgoing
  half, giving ``C_new``.
- A voter demoted to learner while it is still a voter of the outgoing half waits in
  ``learners_next`` and becomes a learner when the joint configuration is left.
- No configuration may end up without voters; a joint configuration cannot be entered twice
  nor from an empty one. Node id 0 is ignored (the application's way to cancel a change);
  ``UPDATE_NODE`` changes nothing here.

Every method returns a new ``(TrackerConfig, ProgressMap)``, or raises ``ConfChangeError`` (a
ValueError) and leaves the tracker as it was. The caller installs the result (the raft core
with ``ProgressTracker.set_config``). Progress objects of peers that stay are copied, sharing
their Inflights, so the old map stays valid until it is replaced.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from etcdpy.raft.quorum import JointConfig, majority
from etcdpy.raft.tracker import (
    Inflights,
    Progress,
    ProgressMap,
    ProgressTracker,
    TrackerConfig,
)
from etcdpy.raft.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfState,
)

Result = tuple[TrackerConfig, ProgressMap]


class ConfChangeError(ValueError):
    """An invalid membership change (the message follows etcd's)."""


@dataclass(slots=True)
class _Draft:
    """A mutable working copy of a configuration and its progress map."""

    incoming: set[int]
    outgoing: set[int]
    learners: set[int]
    learners_next: set[int]
    auto_leave: bool
    progress: ProgressMap

    def joint(self) -> bool:
        return bool(self.outgoing)

    def freeze(self) -> Result:
        config = TrackerConfig(
            voters=JointConfig(majority(self.incoming), majority(self.outgoing)),
            learners=frozenset(self.learners),
            learners_next=frozenset(self.learners_next),
            auto_leave=self.auto_leave,
        )
        return config, self.progress


class Changer:
    """Computes configuration changes against ``tracker``; new peers start probing at
    ``last_index`` (the leader's last log index)."""

    __slots__ = ("last_index", "tracker")

    def __init__(self, tracker: ProgressTracker, last_index: int) -> None:
        self.tracker = tracker
        self.last_index = last_index

    def enter_joint(self, auto_leave: bool, changes: Sequence[ConfChangeSingle]) -> Result:
        """Enters joint consensus: the current voters become the outgoing half, ``changes``
        apply to the incoming half."""
        draft = self._check_and_copy()
        if draft.joint():
            raise ConfChangeError("config is already joint")
        if not draft.incoming:
            # An empty config may be filled by simple changes (bootstrap), never made joint.
            raise ConfChangeError("can't make a zero-voter config joint")
        draft.outgoing = set(draft.incoming)
        self._apply(draft, changes)
        draft.auto_leave = auto_leave
        return _check_and_freeze(draft)

    def leave_joint(self) -> Result:
        """Leaves joint consensus: the incoming half alone decides, staged learners arrive."""
        draft = self._check_and_copy()
        if not draft.joint():
            raise ConfChangeError("can't leave a non-joint config")
        progress = draft.progress
        for peer in sorted(draft.learners_next):
            draft.learners.add(peer)
            progress[peer].is_learner = True
        draft.learners_next.clear()
        for peer in sorted(draft.outgoing):
            if peer not in draft.incoming and peer not in draft.learners:
                del progress[peer]
        draft.outgoing.clear()
        draft.auto_leave = False
        return _check_and_freeze(draft)

    def simple(self, changes: Sequence[ConfChangeSingle]) -> Result:
        """Applies changes that alter the voters by at most one, without joint consensus."""
        draft = self._check_and_copy()
        if draft.joint():
            raise ConfChangeError("can't apply simple config change in joint config")
        self._apply(draft, changes)
        before = self.tracker.config.voters.incoming
        if len(before.symmetric_difference(draft.incoming)) > 1:
            raise ConfChangeError("more than one voter changed without entering joint config")
        return _check_and_freeze(draft)

    def apply_conf_change(self, cc: ConfChange) -> Result:
        """Dispatches a ConfChange as etcd does for ConfChangeV2: no changes leave the joint
        config; several changes, or an explicit joint transition, enter one; else simple."""
        if cc.leave_joint():
            return self.leave_joint()
        if cc.transition != ConfChangeTransition.AUTO or len(cc.changes) > 1:
            auto_leave = cc.transition != ConfChangeTransition.JOINT_EXPLICIT
            return self.enter_joint(auto_leave, cc.changes)
        return self.simple(cc.changes)

    # The steps ----------------------------------------------------------------------------

    def _check_and_copy(self) -> _Draft:
        config = self.tracker.config
        draft = _Draft(
            incoming=set(config.voters.incoming),
            outgoing=set(config.voters.outgoing),
            learners=set(config.learners),
            learners_next=set(config.learners_next),
            auto_leave=config.auto_leave,
            # Only is_learner is ever changed on a copy; inflights may be shared.
            progress={peer: copy.copy(pr) for peer, pr in self.tracker.progress.items()},
        )
        _check_invariants(draft)
        return draft

    def _apply(self, draft: _Draft, changes: Iterable[ConfChangeSingle]) -> None:
        """Applies changes to the incoming half (the outgoing half is frozen while joint)."""
        for change in changes:
            peer = change.node_id
            if peer == 0:
                continue  # a change the application decided not to apply
            kind = change.type
            if kind == ConfChangeType.ADD_NODE:
                self._make_voter(draft, peer)
            elif kind == ConfChangeType.ADD_LEARNER_NODE:
                self._make_learner(draft, peer)
            elif kind == ConfChangeType.REMOVE_NODE:
                _remove(draft, peer)
            elif kind != ConfChangeType.UPDATE_NODE:
                raise ConfChangeError(f"unexpected conf type {int(kind)}")
        if not draft.incoming:
            raise ConfChangeError("removed all voters")

    def _make_voter(self, draft: _Draft, peer: int) -> None:
        pr = draft.progress.get(peer)
        if pr is None:
            self._init_progress(draft, peer, is_learner=False)
            return
        pr.is_learner = False
        draft.learners.discard(peer)
        draft.learners_next.discard(peer)
        draft.incoming.add(peer)

    def _make_learner(self, draft: _Draft, peer: int) -> None:
        pr = draft.progress.get(peer)
        if pr is None:
            self._init_progress(draft, peer, is_learner=True)
            return
        if pr.is_learner:
            return
        _remove(draft, peer)
        draft.progress[peer] = pr  # a demotion keeps the replication progress
        if peer in draft.outgoing:
            # Still a voter of the outgoing half: it cannot be a learner at the same time.
            draft.learners_next.add(peer)
        else:
            pr.is_learner = True
            draft.learners.add(peer)

    def _init_progress(self, draft: _Draft, peer: int, is_learner: bool) -> None:
        if is_learner:
            draft.learners.add(peer)
        else:
            draft.incoming.add(peer)
        draft.progress[peer] = Progress(
            # Probing starts at the leader's last index; the follower likely needs a snapshot.
            next=self.last_index,
            match=0,
            inflights=Inflights(self.tracker.max_inflight),
            is_learner=is_learner,
            # A new peer counts as active, or CheckQuorum could depose the leader before
            # the peer had a chance to answer.
            recent_active=True,
        )


def _remove(draft: _Draft, peer: int) -> None:
    """Removes ``peer`` as voter or learner from the incoming side."""
    if peer not in draft.progress:
        return
    draft.incoming.discard(peer)
    draft.learners.discard(peer)
    draft.learners_next.discard(peer)
    if peer not in draft.outgoing:  # an outgoing voter keeps its progress until leave_joint
        del draft.progress[peer]


def _check_invariants(draft: _Draft) -> None:
    progress = draft.progress
    for ids in (draft.incoming | draft.outgoing, draft.learners, draft.learners_next):
        for peer in sorted(ids):
            if peer not in progress:
                raise ConfChangeError(f"no progress for {peer}")
    for peer in sorted(draft.learners_next):
        if peer not in draft.outgoing:
            raise ConfChangeError(f"{peer} is in LearnersNext, but not Voters[1]")
        if progress[peer].is_learner:
            raise ConfChangeError(f"{peer} is in LearnersNext, but is already marked as learner")
    for peer in sorted(draft.learners):
        if peer in draft.outgoing:
            raise ConfChangeError(f"{peer} is in Learners and Voters[1]")
        if peer in draft.incoming:
            raise ConfChangeError(f"{peer} is in Learners and Voters[0]")
        if not progress[peer].is_learner:
            raise ConfChangeError(f"{peer} is in Learners, but is not marked as learner")
    if not draft.joint():
        if draft.learners_next:
            raise ConfChangeError("LearnersNext must be nil when not joint")
        if draft.auto_leave:
            raise ConfChangeError("AutoLeave must be false when not joint")


def _check_and_freeze(draft: _Draft) -> Result:
    _check_invariants(draft)
    return draft.freeze()


# Restore ------------------------------------------------------------------------------------


def _to_changes(cs: ConfState) -> tuple[list[ConfChangeSingle], list[ConfChangeSingle]]:
    """Two lists of changes: the first builds the outgoing voters as a plain config, the
    second (applied while entering joint) turns it into the configuration of ``cs``.

    E.g. voters=(1 2 3) learners=(5) outgoing=(1 2 4 6) learners_next=(4) gives
    out = add 1, 2, 4, 6 and in = remove 1, 2, 4, 6; add 1, 2, 3; learner 5; learner 4.
    """
    add, remove = ConfChangeType.ADD_NODE, ConfChangeType.REMOVE_NODE
    learner = ConfChangeType.ADD_LEARNER_NODE
    out = [ConfChangeSingle(add, peer) for peer in cs.voters_outgoing]
    into = [ConfChangeSingle(remove, peer) for peer in cs.voters_outgoing]
    into += [ConfChangeSingle(add, peer) for peer in cs.voters]
    into += [ConfChangeSingle(learner, peer) for peer in cs.learners]
    into += [ConfChangeSingle(learner, peer) for peer in cs.learners_next]
    return out, into


def restore(changer: Changer, cs: ConfState) -> Result:
    """Rebuilds the configuration described by ``cs`` from scratch (fresh progress for every
    peer). Only the changer's last index and max inflight are used; its tracker is untouched.
    """
    scratch = ProgressTracker(changer.tracker.max_inflight)
    step = Changer(scratch, changer.last_index)
    out, into = _to_changes(cs)
    if not out:
        for change in into:
            scratch.set_config(*step.simple([change]))
    else:
        # Build the outgoing voters one by one, then enter joint with the incoming side.
        for change in out:
            scratch.set_config(*step.simple([change]))
        scratch.set_config(*step.enter_joint(cs.auto_leave, into))
    return scratch.config, scratch.progress


_TYPE_NAMES = {
    ConfChangeType.ADD_NODE: "ConfChangeAddNode",
    ConfChangeType.REMOVE_NODE: "ConfChangeRemoveNode",
    ConfChangeType.UPDATE_NODE: "ConfChangeUpdateNode",
    ConfChangeType.ADD_LEARNER_NODE: "ConfChangeAddLearnerNode",
}


def describe_changes(changes: Iterable[ConfChangeSingle]) -> str:
    """E.g. ``ConfChangeAddNode(1) ConfChangeRemoveNode(2)``, for logs and test failures."""
    return " ".join(f"{_TYPE_NAMES[change.type]}({change.node_id})" for change in changes)
