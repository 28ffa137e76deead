"""Flow control (Inflights), follower Progress and the ProgressTracker (etcd raft/tracker)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdpy.raft.quorum import INFINITE_INDEX, JointConfig, VoteResult, majority
from etcdpy.raft.tracker import (
    Inflights,
    Progress,
    ProgressState,
    ProgressTracker,
    TrackerConfig,
    describe_progress_map,
)
from etcdpy.raft.types import ConfState

PROBE, REPLICATE, SNAPSHOT = ProgressState.PROBE, ProgressState.REPLICATE, ProgressState.SNAPSHOT


# Inflights ---------------------------------------------------------------------------------


def test_inflights_add_until_full() -> None:
    inflights = Inflights(10)
    for index in range(5):
        inflights.add(index)
    assert inflights.count() == 5
    assert not inflights.full()
    for index in range(5, 10):
        inflights.add(index)
    assert inflights.indexes() == list(range(10))
    assert inflights.full()
    with pytest.raises(RuntimeError):
        inflights.add(10)


def test_inflights_free_le_across_the_wrap() -> None:
    inflights = Inflights(10)
    for index in range(10):
        inflights.add(index)
    inflights.free_le(4)
    assert inflights.indexes() == [5, 6, 7, 8, 9]
    inflights.free_le(8)
    assert inflights.indexes() == [9]
    # The next five go into the slots freed at the front of the ring.
    for index in range(10, 15):
        inflights.add(index)
    assert inflights.indexes() == [9, 10, 11, 12, 13, 14]
    inflights.free_le(12)
    assert inflights.indexes() == [13, 14]
    assert inflights.count() == 2
    inflights.free_le(14)
    assert inflights.count() == 0
    assert inflights.indexes() == []


def test_inflights_free_le_stale_and_empty_are_noops() -> None:
    inflights = Inflights(4)
    inflights.free_le(100)  # empty
    assert inflights.count() == 0
    for index in (10, 20, 30):
        inflights.add(index)
    inflights.free_le(9)  # left of the window
    assert inflights.indexes() == [10, 20, 30]
    inflights.free_le(25)  # frees up to the largest index <= 25
    assert inflights.indexes() == [30]


def test_inflights_free_first_one_and_reset() -> None:
    inflights = Inflights(10)
    for index in range(10):
        inflights.add(index)
    inflights.free_first_one()
    assert inflights.indexes() == list(range(1, 10))
    assert inflights.count() == 9
    inflights.reset()
    assert inflights.count() == 0
    inflights.free_first_one()  # empty: nothing happens
    assert inflights.count() == 0
    inflights.add(3)
    assert inflights.indexes() == [3]


def test_inflights_clone_is_independent() -> None:
    inflights = Inflights(3)
    inflights.add(1)
    copy = inflights.clone()
    copy.add(2)
    assert inflights.indexes() == [1]
    assert copy.indexes() == [1, 2]


def test_inflights_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Inflights(0)


_inflight_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(min_value=0, max_value=3)),
        st.tuples(st.just("free_le"), st.integers(min_value=-2, max_value=6)),
        st.tuples(st.just("free_first_one"), st.just(0)),
        st.tuples(st.just("reset"), st.just(0)),
    ),
    max_size=60,
)


@given(st.integers(min_value=1, max_value=7), _inflight_ops)
def test_inflights_behaves_like_a_bounded_queue(size: int, ops: list[tuple[str, int]]) -> None:
    inflights = Inflights(size)
    model: deque[int] = deque()
    last = 0
    for op, arg in ops:
        if op == "add":
            if len(model) == size:
                assert inflights.full()
                continue
            last += arg  # added indexes never decrease
            inflights.add(last)
            model.append(last)
        elif op == "free_le":
            to = last + arg
            inflights.free_le(to)
            while model and model[0] <= to:
                model.popleft()
        elif op == "free_first_one":
            inflights.free_first_one()
            # As etcd: frees everything up to the first index (duplicates of it included).
            first = model[0] if model else None
            while model and model[0] == first:
                model.popleft()
        else:
            inflights.reset()
            model.clear()
        assert inflights.indexes() == list(model)
        assert inflights.count() == len(model)
        assert inflights.full() == (len(model) == size)


# Progress ----------------------------------------------------------------------------------


def test_progress_string() -> None:
    inflights = Inflights(1)
    inflights.add(123)
    pr = Progress(
        match=1,
        next=2,
        state=SNAPSHOT,
        pending_snapshot=123,
        recent_active=False,
        probe_sent=True,
        is_learner=True,
        inflights=inflights,
    )
    want = "StateSnapshot match=1 next=2 learner paused pendingSnap=123 inactive inflight=1[full]"
    assert str(pr) == want
    assert str(Progress(next=3, recent_active=True)) == "StateProbe match=0 next=3"


@pytest.mark.parametrize(
    ("state", "probe_sent", "paused"),
    [
        (PROBE, False, False),
        (PROBE, True, True),
        (REPLICATE, False, False),
        (REPLICATE, True, False),
        (SNAPSHOT, False, True),
        (SNAPSHOT, True, True),
    ],
)
def test_progress_is_paused(state: ProgressState, probe_sent: bool, paused: bool) -> None:
    assert Progress(state=state, probe_sent=probe_sent).is_paused() == paused


def test_progress_replicate_paused_when_inflights_full() -> None:
    pr = Progress(state=REPLICATE, inflights=Inflights(2))
    pr.inflights.add(1)
    assert not pr.is_paused()
    pr.inflights.add(2)
    assert pr.is_paused()
    pr.inflights.free_le(1)
    assert not pr.is_paused()


def test_progress_resume_after_decr_and_update() -> None:
    pr = Progress(next=2, probe_sent=True)
    pr.maybe_decr_to(1, 1)
    assert not pr.probe_sent
    pr.probe_sent = True
    pr.maybe_update(2)
    assert not pr.probe_sent


@pytest.mark.parametrize(
    ("progress", "want_next"),
    [
        (Progress(state=REPLICATE, match=1, next=5), 2),
        (Progress(state=SNAPSHOT, match=1, next=5, pending_snapshot=10), 11),  # snapshot done
        (Progress(state=SNAPSHOT, match=1, next=5, pending_snapshot=0), 2),  # snapshot failed
    ],
)
def test_progress_become_probe(progress: Progress, want_next: int) -> None:
    progress.inflights.add(4)
    progress.become_probe()
    assert progress.state == PROBE
    assert progress.match == 1
    assert progress.next == want_next
    assert progress.pending_snapshot == 0
    assert progress.inflights.count() == 0


def test_progress_become_replicate() -> None:
    pr = Progress(state=PROBE, match=1, next=5, probe_sent=True)
    pr.become_replicate()
    assert (pr.state, pr.match, pr.next, pr.probe_sent) == (REPLICATE, 1, 2, False)


def test_progress_become_snapshot() -> None:
    pr = Progress(state=PROBE, match=1, next=5)
    pr.become_snapshot(10)
    assert (pr.state, pr.match, pr.pending_snapshot) == (SNAPSHOT, 1, 10)


@pytest.mark.parametrize(
    ("update", "want_match", "want_next", "want_ok"),
    [
        (2, 3, 5, False),  # never decreases match or next
        (3, 3, 5, False),  # nothing new
        (4, 4, 5, True),  # match grows, next stays
        (5, 5, 6, True),  # both grow
    ],
)
def test_progress_maybe_update(update: int, want_match: int, want_next: int, want_ok: bool) -> None:
    pr = Progress(match=3, next=5)
    assert pr.maybe_update(update) == want_ok
    assert (pr.match, pr.next) == (want_match, want_next)


def test_progress_optimistic_update() -> None:
    pr = Progress(match=3, next=5)
    pr.optimistic_update(9)
    assert (pr.match, pr.next) == (3, 10)


@pytest.mark.parametrize(
    ("state", "match", "next_", "rejected", "hint", "want_ok", "want_next"),
    [
        (REPLICATE, 5, 10, 5, 5, False, 10),  # rejected <= match: stale
        (REPLICATE, 5, 10, 4, 4, False, 10),  # rejected <= match: stale
        (REPLICATE, 5, 10, 9, 9, True, 6),  # back to match+1
        (PROBE, 0, 0, 0, 0, False, 0),  # rejected != next-1: stale
        (PROBE, 0, 10, 5, 5, False, 10),  # rejected != next-1: stale
        (PROBE, 0, 10, 9, 9, True, 9),  # one back
        (PROBE, 0, 2, 1, 1, True, 1),  # one back
        (PROBE, 0, 1, 0, 0, True, 1),  # never below 1
        (PROBE, 0, 10, 9, 2, True, 3),  # min(rejected, hint+1)
        (PROBE, 0, 10, 9, 0, True, 1),  # hint 0: back to 1
    ],
)
def test_progress_maybe_decr_to(
    state: ProgressState,
    match: int,
    next_: int,
    rejected: int,
    hint: int,
    want_ok: bool,
    want_next: int,
) -> None:
    pr = Progress(state=state, match=match, next=next_)
    assert pr.maybe_decr_to(rejected, hint) == want_ok
    assert pr.match == match
    assert pr.next == want_next


def test_describe_progress_map_sorted() -> None:
    progress = {3: Progress(next=1, recent_active=True), 1: Progress(next=2, is_learner=True)}
    assert describe_progress_map(progress) == (
        "1: StateProbe match=0 next=2 learner inactive\n3: StateProbe match=0 next=1\n"
    )


# ProgressTracker ---------------------------------------------------------------------------


def _tracker(
    incoming: Sequence[int],
    outgoing: Sequence[int] = (),
    learners: Sequence[int] = (),
    matches: dict[int, int] | None = None,
) -> ProgressTracker:
    tracker = ProgressTracker(max_inflight=8)
    config = TrackerConfig(
        voters=JointConfig(majority(incoming), majority(outgoing)),
        learners=frozenset(learners),
    )
    peers = sorted(set(incoming) | set(outgoing) | set(learners))
    progress = {
        peer: Progress(
            next=1,
            match=(matches or {}).get(peer, 0),
            is_learner=peer in learners,
            inflights=Inflights(8),
        )
        for peer in peers
    }
    tracker.set_config(config, progress)
    return tracker


def test_tracker_starts_empty() -> None:
    tracker = ProgressTracker(max_inflight=16)
    assert tracker.max_inflight == 16
    assert tracker.conf_state() == ConfState()
    assert tracker.committed() == INFINITE_INDEX  # as etcd: an empty config commits everything
    assert not tracker.is_singleton()
    assert tracker.voter_nodes() == []
    assert tracker.learner_nodes() == []


def test_tracker_committed_ignores_learners() -> None:
    tracker = _tracker([1, 2, 3], learners=[4, 5], matches={1: 10, 2: 8, 3: 2, 4: 50, 5: 50})
    assert tracker.committed() == 8


def test_tracker_committed_joint_is_min_of_halves() -> None:
    tracker = _tracker([1, 2, 3], [3, 4, 5], matches={1: 10, 2: 9, 3: 8, 4: 3, 5: 4})
    assert tracker.committed() == 4
    tracker.progress[4].maybe_update(20)
    assert tracker.committed() == 8


def test_tracker_committed_counts_missing_progress_as_zero() -> None:
    tracker = _tracker([1, 2, 3], matches={1: 10, 2: 9, 3: 8})
    del tracker.progress[3]
    assert tracker.committed() == 9
    del tracker.progress[2]
    assert tracker.committed() == 0


@given(
    st.frozensets(st.integers(1, 9), min_size=1, max_size=7),
    st.frozensets(st.integers(1, 9), max_size=7),
    st.dictionaries(st.integers(1, 9), st.integers(0, 20)),
)
def test_tracker_committed_agrees_with_quorum(
    incoming: frozenset[int], outgoing: frozenset[int], matches: dict[int, int]
) -> None:
    tracker = _tracker(sorted(incoming), sorted(outgoing), matches=matches)
    acked = {peer: pr.match for peer, pr in tracker.progress.items()}
    assert tracker.committed() == tracker.voters.committed_index(acked)


def test_tracker_votes() -> None:
    tracker = _tracker([1, 2, 3, 4, 5], learners=[6])
    assert tracker.tally_votes() == (0, 0, VoteResult.PENDING)
    tracker.record_vote(1, True)
    tracker.record_vote(2, False)
    tracker.record_vote(2, True)  # only the first answer counts
    tracker.record_vote(6, True)  # a learner's vote is not counted
    tracker.record_vote(9, True)  # nor is one from outside the config
    assert tracker.tally_votes() == (1, 1, VoteResult.PENDING)
    tracker.record_vote(3, True)
    assert tracker.tally_votes() == (2, 1, VoteResult.PENDING)
    tracker.record_vote(4, True)
    assert tracker.tally_votes() == (3, 1, VoteResult.WON)
    tracker.reset_votes()
    assert tracker.tally_votes() == (0, 0, VoteResult.PENDING)
    for peer in (1, 2, 3):
        tracker.record_vote(peer, False)
    assert tracker.tally_votes() == (0, 3, VoteResult.LOST)


def test_tracker_votes_joint_need_both_halves() -> None:
    tracker = _tracker([1, 2, 3], [4, 5, 6])
    for peer in (1, 2):
        tracker.record_vote(peer, True)
    assert tracker.tally_votes()[2] == VoteResult.PENDING
    for peer in (4, 5):
        tracker.record_vote(peer, False)
    assert tracker.tally_votes() == (2, 2, VoteResult.LOST)


def test_tracker_quorum_active() -> None:
    tracker = _tracker([1, 2, 3], learners=[4])
    assert not tracker.quorum_active()
    tracker.progress[4].recent_active = True  # learners do not count
    tracker.progress[1].recent_active = True
    assert not tracker.quorum_active()
    tracker.progress[3].recent_active = True
    assert tracker.quorum_active()


def test_tracker_quorum_active_joint() -> None:
    tracker = _tracker([1, 2, 3], [3, 4, 5])
    for peer in (1, 2):
        tracker.progress[peer].recent_active = True
    assert not tracker.quorum_active()
    tracker.progress[4].recent_active = True
    tracker.progress[3].recent_active = True
    assert tracker.quorum_active()


def test_tracker_visit_in_id_order() -> None:
    tracker = _tracker([30, 2, 17], learners=[5, 11])
    seen: list[int] = []
    tracker.visit(lambda peer, pr: seen.append(peer))
    assert seen == [2, 5, 11, 17, 30]


def test_tracker_visit_may_replace_progress() -> None:
    tracker = _tracker([1, 2])

    def reset(peer: int, pr: Progress) -> None:
        tracker.progress[peer] = Progress(next=7, is_learner=pr.is_learner)

    tracker.visit(reset)
    assert [pr.next for pr in tracker.progress.values()] == [7, 7]


def test_tracker_membership_views() -> None:
    tracker = _tracker([3, 1], [1, 2], learners=[9, 4])
    assert tracker.voter_nodes() == [1, 2, 3]
    assert tracker.learner_nodes() == [4, 9]
    assert not tracker.is_singleton()
    assert _tracker([1]).is_singleton()
    assert not _tracker([1], [1]).is_singleton()
    assert not _tracker([1, 2]).is_singleton()


def test_tracker_conf_state_sorted() -> None:
    tracker = _tracker([3, 1, 2], [2, 4, 1], learners=[9, 5])
    tracker.config = TrackerConfig(
        voters=tracker.voters,
        learners=tracker.learners,
        learners_next=frozenset({4}),
        auto_leave=True,
    )
    assert tracker.conf_state() == ConfState(
        voters=(1, 2, 3),
        learners=(5, 9),
        voters_outgoing=(1, 2, 4),
        learners_next=(4,),
        auto_leave=True,
    )
    assert (
        str(tracker.config) == "voters=(1 2 3)&&(1 2 4) learners=(5 9) learners_next=(4) autoleave"
    )
    assert (tracker.learners_next, tracker.auto_leave) == (frozenset({4}), True)
