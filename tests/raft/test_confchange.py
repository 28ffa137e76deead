"""Membership changes: the scenario scripts of etcd's raft/confchange testdata, invalid changes,
restore(), and property tests.

A script step is (command, changes, expected). Commands: "simple", "enter-joint" (optionally
"autoleave=true") and "leave-joint". Changes are tokens: vN makes N a voter, lN a learner, rN
removes N, uN updates N. The expected text is the new config and progress map, or the error.
As in etcd's harness the changer's last index grows by one after every step (also a failed
one), so ``next`` of a progress tells in which step it was created.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdpy.raft.confchange import (
    Changer,
    ConfChangeError,
    describe_changes,
    restore,
)
from etcdpy.raft.quorum import JointConfig, majority
from etcdpy.raft.tracker import (
    Progress,
    ProgressMap,
    ProgressTracker,
    TrackerConfig,
    describe_progress_map,
)
from etcdpy.raft.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfState,
)

Step = tuple[str, str, str]

_TOKEN_TYPES = {
    "v": ConfChangeType.ADD_NODE,
    "l": ConfChangeType.ADD_LEARNER_NODE,
    "r": ConfChangeType.REMOVE_NODE,
    "u": ConfChangeType.UPDATE_NODE,
}


def _changes(text: str) -> list[ConfChangeSingle]:
    return [ConfChangeSingle(_TOKEN_TYPES[tok[0]], int(tok[1:])) for tok in text.split()]


SCRIPTS: dict[str, list[Step]] = {
    "joint_autoleave": [
        ("simple", "v1", "voters=(1)\n1: StateProbe match=0 next=0\n"),
        (
            "enter-joint autoleave=true",
            "v2 v3",
            "voters=(1 2 3)&&(1) autoleave\n"
            "1: StateProbe match=0 next=0\n"
            "2: StateProbe match=0 next=1\n"
            "3: StateProbe match=0 next=1\n",
        ),
        ("enter-joint autoleave=false", "", "config is already joint"),
        (
            "leave-joint",
            "",
            "voters=(1 2 3)\n"
            "1: StateProbe match=0 next=0\n"
            "2: StateProbe match=0 next=1\n"
            "3: StateProbe match=0 next=1\n",
        ),
    ],
    "joint_idempotency": [
        ("simple", "v1", "voters=(1)\n1: StateProbe match=0 next=0\n"),
        (
            "enter-joint",
            "r1 r2 r9 v2 v3 v4 v2 v3 v4 l2 l2 r4 r4 l1 l1",
            "voters=(3)&&(1) learners=(2) learners_next=(1)\n"
            "1: StateProbe match=0 next=0\n"
            "2: StateProbe match=0 next=1 learner\n"
            "3: StateProbe match=0 next=1\n",
        ),
        (
            "leave-joint",
            "",
            "voters=(3) learners=(1 2)\n"
            "1: StateProbe match=0 next=0 learner\n"
            "2: StateProbe match=0 next=1 learner\n"
            "3: StateProbe match=0 next=1\n",
        ),
    ],
    "joint_learners_next": [
        ("simple", "v1", "voters=(1)\n1: StateProbe match=0 next=0\n"),
        (
            "enter-joint",
            "v2 l1",
            "voters=(2)&&(1) learners_next=(1)\n"
            "1: StateProbe match=0 next=0\n"
            "2: StateProbe match=0 next=1\n",
        ),
        (
            "leave-joint",
            "",
            "voters=(2) learners=(1)\n"
            "1: StateProbe match=0 next=0 learner\n"
            "2: StateProbe match=0 next=1\n",
        ),
    ],
    "joint_safety": [
        ("leave-joint", "", "can't leave a non-joint config"),
        ("enter-joint", "", "can't make a zero-voter config joint"),
        ("enter-joint", "v1", "can't make a zero-voter config joint"),
        ("simple", "v1", "voters=(1)\n1: StateProbe match=0 next=3\n"),
        ("leave-joint", "", "can't leave a non-joint config"),
        ("enter-joint", "", "voters=(1)&&(1)\n1: StateProbe match=0 next=3\n"),
        ("enter-joint", "", "config is already joint"),
        ("leave-joint", "", "voters=(1)\n1: StateProbe match=0 next=3\n"),
        ("leave-joint", "", "can't leave a non-joint config"),
        (
            "enter-joint",
            "r1 v2 v3 l4",
            "voters=(2 3)&&(1) learners=(4)\n"
            "1: StateProbe match=0 next=3\n"
            "2: StateProbe match=0 next=9\n"
            "3: StateProbe match=0 next=9\n"
            "4: StateProbe match=0 next=9 learner\n",
        ),
        ("enter-joint", "", "config is already joint"),
        ("enter-joint", "v12", "config is already joint"),
        ("simple", "l15", "can't apply simple config change in joint config"),
        (
            "leave-joint",
            "",
            "voters=(2 3) learners=(4)\n"
            "2: StateProbe match=0 next=9\n"
            "3: StateProbe match=0 next=9\n"
            "4: StateProbe match=0 next=9 learner\n",
        ),
        (
            "simple",
            "l9",
            "voters=(2 3) learners=(4 9)\n"
            "2: StateProbe match=0 next=9\n"
            "3: StateProbe match=0 next=9\n"
            "4: StateProbe match=0 next=9 learner\n"
            "9: StateProbe match=0 next=14 learner\n",
        ),
    ],
    "simple_idempotency": [
        ("simple", "v1", "voters=(1)\n1: StateProbe match=0 next=0\n"),
        ("simple", "v1", "voters=(1)\n1: StateProbe match=0 next=0\n"),
        (
            "simple",
            "v2",
            "voters=(1 2)\n1: StateProbe match=0 next=0\n2: StateProbe match=0 next=2\n",
        ),
        (
            "simple",
            "l1",
            "voters=(2) learners=(1)\n"
            "1: StateProbe match=0 next=0 learner\n"
            "2: StateProbe match=0 next=2\n",
        ),
        (
            "simple",
            "l1",
            "voters=(2) learners=(1)\n"
            "1: StateProbe match=0 next=0 learner\n"
            "2: StateProbe match=0 next=2\n",
        ),
        ("simple", "r1", "voters=(2)\n2: StateProbe match=0 next=2\n"),
        ("simple", "r1", "voters=(2)\n2: StateProbe match=0 next=2\n"),
        (
            "simple",
            "v3",
            "voters=(2 3)\n2: StateProbe match=0 next=2\n3: StateProbe match=0 next=7\n",
        ),
        ("simple", "r3", "voters=(2)\n2: StateProbe match=0 next=2\n"),
        ("simple", "r3", "voters=(2)\n2: StateProbe match=0 next=2\n"),
        ("simple", "r4", "voters=(2)\n2: StateProbe match=0 next=2\n"),
    ],
    "simple_promote_demote": [
        ("simple", "v1", "voters=(1)\n1: StateProbe match=0 next=0\n"),
        (
            "simple",
            "v2",
            "voters=(1 2)\n1: StateProbe match=0 next=0\n2: StateProbe match=0 next=1\n",
        ),
        (
            "simple",
            "v3",
            "voters=(1 2 3)\n"
            "1: StateProbe match=0 next=0\n"
            "2: StateProbe match=0 next=1\n"
            "3: StateProbe match=0 next=2\n",
        ),
        (
            "simple",
            "l1 v1",
            "voters=(1 2 3)\n"
            "1: StateProbe match=0 next=0\n"
            "2: StateProbe match=0 next=1\n"
            "3: StateProbe match=0 next=2\n",
        ),
        (
            "simple",
            "l2",
            "voters=(1 3) learners=(2)\n"
            "1: StateProbe match=0 next=0\n"
            "2: StateProbe match=0 next=1 learner\n"
            "3: StateProbe match=0 next=2\n",
        ),
        (
            "simple",
            "v2 l2",
            "voters=(1 3) learners=(2)\n"
            "1: StateProbe match=0 next=0\n"
            "2: StateProbe match=0 next=1 learner\n"
            "3: StateProbe match=0 next=2\n",
        ),
        (
            "simple",
            "v2",
            "voters=(1 2 3)\n"
            "1: StateProbe match=0 next=0\n"
            "2: StateProbe match=0 next=1\n"
            "3: StateProbe match=0 next=2\n",
        ),
    ],
    "simple_safety": [
        ("simple", "l1", "removed all voters"),
        ("simple", "v1", "voters=(1)\n1: StateProbe match=0 next=1\n"),
        (
            "simple",
            "v2 l3",
            "voters=(1 2) learners=(3)\n"
            "1: StateProbe match=0 next=1\n"
            "2: StateProbe match=0 next=2\n"
            "3: StateProbe match=0 next=2 learner\n",
        ),
        ("simple", "r1 v5", "more than one voter changed without entering joint config"),
        ("simple", "r1 r2", "removed all voters"),
        ("simple", "v3 v4", "more than one voter changed without entering joint config"),
        ("simple", "l1 v5", "more than one voter changed without entering joint config"),
        ("simple", "l1 l2", "removed all voters"),
        (
            "simple",
            "l2 l3 l4 l5",
            "voters=(1) learners=(2 3 4 5)\n"
            "1: StateProbe match=0 next=1\n"
            "2: StateProbe match=0 next=2 learner\n"
            "3: StateProbe match=0 next=2 learner\n"
            "4: StateProbe match=0 next=8 learner\n"
            "5: StateProbe match=0 next=8 learner\n",
        ),
        ("simple", "r1", "removed all voters"),
        ("simple", "r2 r3 r4 r5", "voters=(1)\n1: StateProbe match=0 next=1\n"),
    ],
    "update": [
        ("simple", "v1", "voters=(1)\n1: StateProbe match=0 next=0\n"),
        (
            "simple",
            "v2 u1",
            "voters=(1 2)\n1: StateProbe match=0 next=0\n2: StateProbe match=0 next=1\n",
        ),
        (
            "simple",
            "u1 u2 u3 u1 u2 u3",
            "voters=(1 2)\n1: StateProbe match=0 next=0\n2: StateProbe match=0 next=1\n",
        ),
    ],
    "zero": [
        ("simple", "v1 r0 v0 l0", "voters=(1)\n1: StateProbe match=0 next=0\n"),
    ],
}


def _run_step(changer: Changer, command: str, changes: str) -> str:
    name, _, arg = command.partition(" ")
    try:
        if name == "simple":
            config, progress = changer.simple(_changes(changes))
        elif name == "enter-joint":
            auto_leave = arg == "autoleave=true"
            config, progress = changer.enter_joint(auto_leave, _changes(changes))
        else:
            assert name == "leave-joint" and not changes
            config, progress = changer.leave_joint()
    except ConfChangeError as err:
        return str(err)
    changer.tracker.set_config(config, progress)
    return f"{config}\n{describe_progress_map(progress)}"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_confchange_scripts(name: str) -> None:
    changer = Changer(ProgressTracker(max_inflight=10), last_index=0)
    for number, (command, changes, expected) in enumerate(SCRIPTS[name]):
        before = (changer.tracker.config, changer.tracker.progress)
        got = _run_step(changer, command, changes)
        assert got == expected, f"step {number}: {command} {changes}"
        if not expected.startswith("voters="):
            # A refused change leaves the tracker exactly as it was.
            assert (changer.tracker.config, changer.tracker.progress) == before
        changer.last_index += 1


def test_result_does_not_alias_the_current_progress() -> None:
    changer = Changer(ProgressTracker(max_inflight=4), last_index=5)
    changer.tracker.set_config(*changer.simple(_changes("v1")))
    changer.tracker.set_config(*changer.simple(_changes("v2")))
    old = changer.tracker.progress
    config, progress = changer.simple(_changes("l2"))
    assert progress[2].is_learner
    assert not old[2].is_learner  # the installed map is untouched until replaced
    assert progress[2] is not old[2]
    assert progress[2].inflights is old[2].inflights  # shared, as etcd's shallow copy
    assert config.learners == {2}


def _tracker_with(config: TrackerConfig, progress: ProgressMap) -> ProgressTracker:
    tracker = ProgressTracker(max_inflight=4)
    tracker.set_config(config, progress)
    return tracker


@pytest.mark.parametrize(
    ("config", "progress", "message"),
    [
        (
            TrackerConfig(voters=JointConfig(majority([1, 2]))),
            {1: Progress()},
            "no progress for 2",
        ),
        (
            TrackerConfig(voters=JointConfig(majority([1])), learners=frozenset({1})),
            {1: Progress(is_learner=True)},
            "1 is in Learners and Voters[0]",
        ),
        (
            TrackerConfig(
                voters=JointConfig(majority([1]), majority([2])), learners=frozenset({2})
            ),
            {1: Progress(), 2: Progress(is_learner=True)},
            "2 is in Learners and Voters[1]",
        ),
        (
            TrackerConfig(voters=JointConfig(majority([1])), learners=frozenset({2})),
            {1: Progress(), 2: Progress(is_learner=False)},
            "2 is in Learners, but is not marked as learner",
        ),
        (
            TrackerConfig(
                voters=JointConfig(majority([1]), majority([1, 2])),
                learners_next=frozenset({3}),
            ),
            {1: Progress(), 2: Progress(), 3: Progress()},
            "3 is in LearnersNext, but not Voters[1]",
        ),
        (
            TrackerConfig(
                voters=JointConfig(majority([1]), majority([1, 2])),
                learners_next=frozenset({2}),
            ),
            {1: Progress(), 2: Progress(is_learner=True)},
            "2 is in LearnersNext, but is already marked as learner",
        ),
        (
            TrackerConfig(voters=JointConfig(majority([1])), auto_leave=True),
            {1: Progress()},
            "AutoLeave must be false when not joint",
        ),
    ],
)
def test_inconsistent_tracker_is_refused(
    config: TrackerConfig, progress: ProgressMap, message: str
) -> None:
    changer = Changer(_tracker_with(config, progress), last_index=1)
    attempts: list[Callable[[], object]] = [
        lambda: changer.simple(_changes("v9")),
        lambda: changer.enter_joint(False, _changes("v9")),
        changer.leave_joint,
    ]
    for attempt in attempts:
        with pytest.raises(ConfChangeError) as excinfo:
            attempt()
        assert str(excinfo.value) == message


def test_unexpected_change_type() -> None:
    changer = Changer(ProgressTracker(), last_index=1)
    bogus = ConfChangeSingle(7, 1)  # type: ignore[arg-type]
    with pytest.raises(ConfChangeError, match="unexpected conf type 7"):
        changer.simple([bogus])
    with pytest.raises(ValueError):  # ConfChangeError is a ValueError
        changer.simple([])  # no voters at all


def _three_voters() -> Changer:
    changer = Changer(ProgressTracker(max_inflight=4), last_index=3)
    for peer in (1, 2, 3):
        changer.tracker.set_config(*changer.simple(_changes(f"v{peer}")))
    return changer


def test_apply_conf_change_dispatch() -> None:
    changer = _three_voters()
    add4 = ConfChangeSingle(ConfChangeType.ADD_NODE, 4)
    remove1 = ConfChangeSingle(ConfChangeType.REMOVE_NODE, 1)

    # One change with AUTO: simple.
    config, _ = changer.apply_conf_change(ConfChange((add4,)))
    assert str(config) == "voters=(1 2 3 4)"

    # Several changes with AUTO: joint, left automatically.
    config, progress = changer.apply_conf_change(ConfChange((add4, remove1)))
    assert str(config) == "voters=(2 3 4)&&(1 2 3) autoleave"
    changer.tracker.set_config(config, progress)

    # No changes: leave the joint config.
    config, _ = changer.apply_conf_change(ConfChange())
    assert str(config) == "voters=(2 3 4)"

    # One change with an explicit transition: joint, left by the application.
    changer = _three_voters()
    config, _ = changer.apply_conf_change(ConfChange((add4,), ConfChangeTransition.JOINT_EXPLICIT))
    assert str(config) == "voters=(1 2 3 4)&&(1 2 3)"
    config, _ = changer.apply_conf_change(ConfChange((add4,), ConfChangeTransition.JOINT_IMPLICIT))
    assert str(config) == "voters=(1 2 3 4)&&(1 2 3) autoleave"


def test_describe_changes() -> None:
    assert describe_changes(_changes("v1 l2 r3 u4")) == (
        "ConfChangeAddNode(1) ConfChangeAddLearnerNode(2) "
        "ConfChangeRemoveNode(3) ConfChangeUpdateNode(4)"
    )


# Restore ------------------------------------------------------------------------------------


def _restored(cs: ConfState) -> ProgressTracker:
    changer = Changer(ProgressTracker(max_inflight=20), last_index=10)
    tracker = ProgressTracker(max_inflight=20)
    tracker.set_config(*restore(changer, cs))
    assert changer.tracker.conf_state() == ConfState()  # the changer's tracker is untouched
    return tracker


def _sorted_conf_state(cs: ConfState) -> ConfState:
    return ConfState(
        voters=tuple(sorted(cs.voters)),
        learners=tuple(sorted(cs.learners)),
        voters_outgoing=tuple(sorted(cs.voters_outgoing)),
        learners_next=tuple(sorted(cs.learners_next)),
        auto_leave=cs.auto_leave,
    )


@pytest.mark.parametrize(
    "cs",
    [
        ConfState(),
        ConfState(voters=(1, 2, 3)),
        ConfState(voters=(1, 2, 3), learners=(4, 5, 6)),
        ConfState(
            voters=(1, 2, 3), learners=(5,), voters_outgoing=(1, 2, 4, 6), learners_next=(4,)
        ),
        ConfState(voters=(3, 1), voters_outgoing=(2,), auto_leave=True),
    ],
)
def test_restore_examples(cs: ConfState) -> None:
    tracker = _restored(cs)
    assert tracker.conf_state() == _sorted_conf_state(cs)


def test_restore_progress() -> None:
    tracker = _restored(
        ConfState(voters=(1, 2, 3), learners=(5,), voters_outgoing=(1, 2, 4, 6), learners_next=(4,))
    )
    assert describe_progress_map(tracker.progress) == (
        "1: StateProbe match=0 next=10\n"
        "2: StateProbe match=0 next=10\n"
        "3: StateProbe match=0 next=10\n"
        "4: StateProbe match=0 next=10\n"
        "5: StateProbe match=0 next=10 learner\n"
        "6: StateProbe match=0 next=10\n"
    )
    assert all(pr.inflights.size == 20 for pr in tracker.progress.values())


def test_restore_ignores_the_current_configuration() -> None:
    changer = _three_voters()
    changer.tracker.progress[1].maybe_update(3)
    config, progress = restore(changer, ConfState(voters=(4,), learners=(2,)))
    assert str(config) == "voters=(4) learners=(2)"
    assert describe_progress_map(progress) == (
        "2: StateProbe match=0 next=3 learner\n4: StateProbe match=0 next=3\n"
    )
    assert changer.tracker.voter_nodes() == [1, 2, 3]
    assert changer.tracker.progress[1].match == 3


def test_restore_refuses_learners_without_voters() -> None:
    changer = Changer(ProgressTracker(), last_index=1)
    with pytest.raises(ConfChangeError, match="removed all voters"):
        restore(changer, ConfState(learners=(1,)))


@st.composite
def _conf_states(draw: st.DrawFn) -> ConfState:
    """A valid ConfState, possibly joint (built as etcd's restore quick test does)."""
    n_voters = draw(st.integers(1, 5))
    n_learners = draw(st.integers(0, 4))
    n_removed = draw(st.integers(0, 2))  # outgoing voters that are not incoming voters
    pool = draw(st.permutations(range(1, 2 * (n_voters + n_learners + n_removed) + 1)))
    voters = list(pool[:n_voters])
    learners = list(pool[n_voters : n_voters + n_learners])
    removed = list(pool[n_voters + n_learners : n_voters + n_learners + n_removed])
    retained = draw(st.integers(0, n_voters))
    outgoing = voters[:retained] + removed
    learners_next = removed[: draw(st.integers(0, n_removed))]
    auto_leave = bool(outgoing) and draw(st.booleans())
    return ConfState(
        voters=tuple(voters),
        learners=tuple(learners),
        voters_outgoing=tuple(outgoing),
        learners_next=tuple(learners_next),
        auto_leave=auto_leave,
    )


@given(_conf_states())
def test_restore_round_trips_through_conf_state(cs: ConfState) -> None:
    tracker = _restored(cs)
    assert tracker.conf_state() == _sorted_conf_state(cs)
    # Restoring the result again gives the same configuration.
    assert _restored(tracker.conf_state()).config == tracker.config


# Simple changes and joint consensus agree -----------------------------------------------------

_change_types = st.sampled_from(sorted(ConfChangeType))


def _setup_changes() -> st.SearchStrategy[list[ConfChangeSingle]]:
    # Node 1 is always a voter, so the simple path never runs out of voters.
    more = st.lists(
        st.builds(ConfChangeSingle, st.just(ConfChangeType.ADD_NODE), st.integers(1, 5))
    )
    return more.map(lambda ccs: [ConfChangeSingle(ConfChangeType.ADD_NODE, 1), *ccs[:5]])


_changes_strategy = st.lists(
    st.builds(ConfChangeSingle, _change_types, st.integers(2, 10)), min_size=1, max_size=9
)


def _fresh(setup: Sequence[ConfChangeSingle]) -> Changer:
    changer = Changer(ProgressTracker(max_inflight=10), last_index=10)
    for change in setup:
        changer.tracker.set_config(*changer.simple([change]))
    return changer


def _snapshot(changer: Changer) -> tuple[TrackerConfig, str]:
    return changer.tracker.config, describe_progress_map(changer.tracker.progress)


@settings(max_examples=300)
@given(_setup_changes(), _changes_strategy)
def test_simple_changes_and_joint_consensus_agree(
    setup: list[ConfChangeSingle], changes: list[ConfChangeSingle]
) -> None:
    one_by_one = _fresh(setup)
    for change in changes:
        one_by_one.tracker.set_config(*one_by_one.simple([change]))

    joint = _fresh(setup)
    config, progress = joint.enter_joint(False, changes)
    auto_config, auto_progress = joint.enter_joint(True, changes)
    assert auto_config.auto_leave
    assert (
        TrackerConfig(auto_config.voters, auto_config.learners, auto_config.learners_next) == config
    )
    assert describe_progress_map(auto_progress) == describe_progress_map(progress)
    joint.tracker.set_config(config, progress)
    joint.tracker.set_config(*joint.leave_joint())

    assert _snapshot(joint) == _snapshot(one_by_one)
