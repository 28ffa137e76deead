"""Quorum arithmetic: the scenarios of etcd's raft/quorum testdata, plus property tests.

Each scenario names the incoming voters, the outgoing voters (None: a plain majority test;
"": a joint config whose outgoing half is empty) and one value per distinct voter in order of
first appearance ("_" = nothing known about that voter).
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdpy.raft.quorum import (
    EMPTY_MAJORITY,
    INFINITE_INDEX,
    JointConfig,
    MajorityConfig,
    VoteResult,
    majority,
)

INF = INFINITE_INDEX
PENDING, LOST, WON = VoteResult.PENDING, VoteResult.LOST, VoteResult.WON

Scenario = tuple[str, str | None, str, int]

MAJORITY_COMMIT: list[Scenario] = [
    ("", None, "", INF),  # the empty quorum commits everything
    ("1", None, "_", 0),
    ("1", None, "12", 12),
    ("1 2", None, "_ _", 0),
    ("1 2", None, "12 _", 0),
    ("1 2", None, "12 5", 5),
    ("1 2 3", None, "_ _ _", 0),
    ("1 2 3", None, "12 _ _", 0),
    ("1 2 3", None, "12 5 _", 5),
    ("1 2 3", None, "12 5 6", 6),
    ("1 2 3", None, "12 5 4", 5),
    ("1 2 3", None, "5 5 _", 5),
    ("1 2 3", None, "5 5 12", 5),
    ("1 2 3", None, "100 101 103", 101),
    ("1 2 3 4 5", None, "101 104 103 103 _", 103),
    ("1 2 3 4 5", None, "101 102 103 103 _", 102),
]

JOINT_COMMIT: list[Scenario] = [
    ("1 2 3", "", "100 101 99", 100),  # empty outgoing half: same as the incoming majority
    ("1", "2", "_ _", 0),
    ("1", "2", "100 _", 0),
    ("1", "2", "13 100", 13),
    ("1", "1", "_", 0),
    ("1", "1", "100", 100),
    ("1 3", "2", "_ _ _", 0),
    ("1 3", "2", "100 _ _", 0),
    ("1 3", "2", "100 _ 50", 0),
    ("1 3", "2", "100 45 50", 45),
    ("1 2", "2", "_ _", 0),
    ("1 2", "2", "100 _", 0),
    ("1 2", "2", "_ 100", 0),
    ("1 2", "2", "50 100", 50),
    ("1 2", "2", "100 50", 50),
    ("1 2", "3 4", "50 _ _ _", 0),
    ("1 2", "3 4", "50 _ 49 _", 0),
    ("1 2", "3 4", "50 48 49 _", 0),
    ("1 2", "3 4", "50 48 49 47", 47),
    ("1 2", "2 3", "_ _ _", 0),
    ("1 2", "2 3", "100 _ _", 0),
    ("1 2", "2 3", "_ 100 _", 0),
    ("1 2", "2 3", "_ 100 99", 0),
    ("1 2", "2 3", "101 100 99", 99),
    ("1 2", "1 2", "_ _", 0),
    ("1 2", "1 2", "_ 40", 0),
    ("1 2", "1 2", "41 40", 40),
    ("1 2 3", "4 5 6", "_ _ _ _ _ _", 0),
    ("1 2 3", "4 5 6", "100 _ _ _ _ _", 0),
    ("1 2 3", "4 5 6", "100 _ _ 90 _ _", 0),
    ("1 2 3", "4 5 6", "100 99 _ _ _ _", 0),
    ("1 2 3", "4 5 6", "_ 99 90 97 95 _", 90),
    ("1 2 3", "4 5 6", "92 99 90 97 95 _", 92),
    ("1 2 3", "4 5 6", "92 99 90 97 95 77", 92),
    ("1 2 3", "1 4 5", "_ _ _ _ _", 0),
    ("1 2 3", "1 4 5", "100 _ _ _ _", 0),
    ("1 2 3", "1 4 5", "100 101 _ _ _", 0),
    ("1 2 3", "1 4 5", "100 101 100 _ _", 0),
    ("1 2 3", "1 4 5", "_ 100 _ 99 98", 0),
    ("1 2 3", "1 4 5", "_ 100 99 99 98", 98),
    ("1 2 3", "1 4 5", "1 100 99 99 98", 98),
    ("1 2 3", "1 4 5", "100 100 99 99 98", 99),
    ("1 2 3", "2 3 4", "_ _ _ _", 0),
    ("1 2 3", "2 3 4", "_ 100 99 _", 99),
    ("1 2 3", "2 3 4", "98 100 99 _", 99),
    ("1 2 3", "2 3 4", "100 100 99 _", 99),
    ("1 2 3", "2 3 4", "100 100 99 98", 99),
    ("1 2 3", "2 3 4", "100 _ _ 101", 0),
    ("1 2 3", "2 3 4", "100 99 _ 101", 99),
    ("1 2 3", "1 2 3", "50 45 _", 45),
]

VoteScenario = tuple[str, str | None, str, VoteResult]

MAJORITY_VOTE: list[VoteScenario] = [
    ("", None, "", WON),  # the empty config wins every vote
    ("1", None, "_", PENDING),
    ("1", None, "n", LOST),
    ("123", None, "y", WON),
    ("4 8", None, "_ _", PENDING),
    ("4 8", None, "n _", LOST),  # with two voters one rejection loses
    ("4 8", None, "y _", PENDING),
    ("4 8", None, "n y", LOST),
    ("4 8", None, "y y", WON),
    ("2 4 7", None, "_ _ _", PENDING),
    ("2 4 7", None, "n _ _", PENDING),
    ("2 4 7", None, "y _ _", PENDING),
    ("2 4 7", None, "n n _", LOST),
    ("2 4 7", None, "y n _", PENDING),
    ("2 4 7", None, "y y _", WON),
    ("2 4 7", None, "y y n", WON),
    ("2 4 7", None, "n y n", LOST),
    ("1 2 3 4 5 6 7", None, "y y n y _ _ _", PENDING),
    ("1 2 3 4 5 6 7", None, "_ y y _ n y n", PENDING),
    ("1 2 3 4 5 6 7", None, "y y n y _ n y", WON),
    ("1 2 3 4 5 6 7", None, "y y _ n y n n", PENDING),
    ("1 2 3 4 5 6 7", None, "y y n y n n n", LOST),
]

JOINT_VOTE: list[VoteScenario] = [
    ("", "", "", WON),
    ("1", "", "_", PENDING),
    ("1", "", "y", WON),
    ("1", "", "n", LOST),
    ("1", "1", "_", PENDING),
    ("1", "1", "y", WON),
    ("1", "1", "n", LOST),
    ("1", "2", "_ _", PENDING),
    ("1", "2", "y _", PENDING),
    ("1", "2", "y y", WON),
    ("1", "2", "y n", LOST),
    ("1", "2", "n _", LOST),
    ("1", "2", "n n", LOST),
    ("1", "2", "n y", LOST),
    ("1 2", "3 4", "_ _ _ _", PENDING),
    ("1 2", "3 4", "y _ _ _", PENDING),
    ("1 2", "3 4", "y y _ _", PENDING),
    ("1 2", "3 4", "y y n _", LOST),
    ("1 2", "3 4", "y y n n", LOST),
    ("1 2", "3 4", "y y y n", LOST),
    ("1 2", "3 4", "y y y y", WON),
    ("1 2", "2 3", "_ _ _", PENDING),
    ("1 2", "2 3", "_ n _", LOST),
    ("1 2", "2 3", "y y _", PENDING),
    ("1 2", "2 3", "y y n", LOST),
    ("1 2", "2 3", "y y y", WON),
    ("1 2", "1 2", "_ _", PENDING),
    ("1 2", "1 2", "y _", PENDING),
    ("1 2", "1 2", "y n", LOST),
    ("1 2", "1 2", "n _", LOST),
    ("1 2", "1 2", "n n", LOST),
    ("1 2 3", "2 3 4", "_ _ _ _", PENDING),
    ("1 2 3", "2 3 4", "_ n _ _", PENDING),
    ("1 2 3", "2 3 4", "_ n n _", LOST),
    ("1 2 3", "2 3 4", "_ y y _", WON),
    ("1 2 3", "2 3 4", "y y _ _", PENDING),
    ("1 2 3", "2 3 4", "y y n _", PENDING),
    ("1 2 3", "2 3 4", "y y n n", LOST),
    ("1 2 3", "2 3 4", "y y n y", WON),
]


def _ids(text: str) -> list[int]:
    return [int(tok) for tok in text.split()]


def _assign(cfg: str, cfgj: str | None, values: str) -> dict[int, str]:
    """Maps each distinct voter (incoming first, then outgoing) to its value token."""
    order: list[int] = []
    for voter in _ids(cfg) + _ids(cfgj or ""):
        if voter not in order:
            order.append(voter)
    tokens = values.split()
    assert len(tokens) == len(order), "malformed scenario"
    return {voter: tok for voter, tok in zip(order, tokens, strict=True) if tok != "_"}


def _naive_committed(config: frozenset[int], acked: Mapping[int, int]) -> int:
    """The largest index that at least a majority of ``config`` has acknowledged."""
    if not config:
        return INFINITE_INDEX
    quorum = len(config) // 2 + 1
    best = 0
    for candidate in {acked.get(v, 0) for v in config}:
        if sum(1 for v in config if acked.get(v, 0) >= candidate) >= quorum:
            best = max(best, candidate)
    return best


@pytest.mark.parametrize(("cfg", "cfgj", "idxs", "want"), MAJORITY_COMMIT + JOINT_COMMIT)
def test_committed_index_scenarios(cfg: str, cfgj: str | None, idxs: str, want: int) -> None:
    acked = {voter: int(tok) for voter, tok in _assign(cfg, cfgj, idxs).items()}
    incoming = majority(_ids(cfg))
    if cfgj is None:
        got = incoming.committed_index(acked)
        assert got == want
        # Alternative ways to reach the same answer: the naive definition, a callable lookup,
        # joining with the empty majority and joining with itself.
        assert _naive_committed(incoming, acked) == want
        assert incoming.committed_index(acked.get) == want
        assert JointConfig(incoming, EMPTY_MAJORITY).committed_index(acked) == want
        assert JointConfig(incoming, incoming).committed_index(acked) == want
        # Lowering a voter that is already below the committed index changes nothing.
        for voter in sorted(incoming):
            known = acked.get(voter, 0)
            if 0 < known < want:
                for lowered in (known - 1, 0):
                    assert incoming.committed_index({**acked, voter: lowered}) == want
    else:
        outgoing = majority(_ids(cfgj))
        assert JointConfig(incoming, outgoing).committed_index(acked) == want
        assert JointConfig(outgoing, incoming).committed_index(acked) == want  # symmetric


@pytest.mark.parametrize(("cfg", "cfgj", "votes", "want"), MAJORITY_VOTE + JOINT_VOTE)
def test_vote_result_scenarios(cfg: str, cfgj: str | None, votes: str, want: VoteResult) -> None:
    ballots = {voter: tok == "y" for voter, tok in _assign(cfg, cfgj, votes).items()}
    incoming = majority(_ids(cfg))
    if cfgj is None:
        assert incoming.vote_result(ballots) == want
    else:
        outgoing = majority(_ids(cfgj))
        assert JointConfig(incoming, outgoing).vote_result(ballots) == want
        assert JointConfig(outgoing, incoming).vote_result(ballots) == want  # symmetric


# Pictures from etcd's testdata, including its quirk that a tie with the previous rank
# gets no bar.
DESCRIBE = [
    ("", None, "", "<empty majority quorum>"),
    ("1", None, "_", "     idx\n?      0    (id=1)\n"),
    (
        "1 2 3",
        None,
        "12 5 _",
        "       idx\nxx>     12    (id=1)\nx>       5    (id=2)\n?        0    (id=3)\n",
    ),
    (
        "1 2 3 4 5",
        None,
        "101 104 103 103 _",
        "         idx\n"
        "x>       101    (id=1)\n"
        "xxxx>    104    (id=2)\n"
        "xx>      103    (id=3)\n"
        ">        103    (id=4)\n"
        "?          0    (id=5)\n",
    ),
    (
        "1 2 3",
        "1 4 5",
        "100 100 99 99 98",
        "         idx\n"
        "xxx>     100    (id=1)\n"
        ">        100    (id=2)\n"
        "x>        99    (id=3)\n"
        ">         99    (id=4)\n"
        ">         98    (id=5)\n",
    ),
]


@pytest.mark.parametrize(("cfg", "cfgj", "idxs", "want"), DESCRIBE)
def test_describe(cfg: str, cfgj: str | None, idxs: str, want: str) -> None:
    acked = {voter: int(tok) for voter, tok in _assign(cfg, cfgj, idxs).items()}
    if cfgj is None:
        assert majority(_ids(cfg)).describe(acked) == want
    else:
        assert JointConfig(majority(_ids(cfg)), majority(_ids(cfgj))).describe(acked) == want


def test_strings_and_ids() -> None:
    joint = JointConfig(majority([3, 1, 2]), majority([4, 1]))
    assert str(joint) == "(1 2 3)&&(1 4)"
    assert str(JointConfig(majority([2, 1]))) == "(1 2)"
    assert joint.ids() == {1, 2, 3, 4}
    assert joint.is_joint()
    assert not JointConfig(majority([1])).is_joint()
    assert majority([5, 2, 9]).sorted_ids() == (2, 5, 9)
    assert str(VoteResult.WON) == "VoteWon"
    assert majority() is EMPTY_MAJORITY


def test_unknown_voter_from_callable_counts_as_zero() -> None:
    config = majority([1, 2, 3])
    known = {1: 7, 2: 9}
    assert config.committed_index(lambda voter: known.get(voter)) == 7
    assert config.committed_index(lambda voter: None) == 0


# Property tests ---------------------------------------------------------------------------

_voter_sets = st.frozensets(st.integers(min_value=1, max_value=20), max_size=9)
_acks = st.dictionaries(
    st.integers(min_value=1, max_value=20), st.integers(min_value=0, max_value=30), max_size=12
)


@given(_voter_sets, _acks)
def test_majority_committed_index_matches_naive_definition(
    voters: frozenset[int], acked: dict[int, int]
) -> None:
    assert MajorityConfig(voters).committed_index(acked) == _naive_committed(voters, acked)


@given(_voter_sets, _voter_sets, _acks)
def test_joint_committed_index_is_min_of_halves(
    incoming: frozenset[int], outgoing: frozenset[int], acked: dict[int, int]
) -> None:
    joint = JointConfig(MajorityConfig(incoming), MajorityConfig(outgoing))
    want = min(_naive_committed(incoming, acked), _naive_committed(outgoing, acked))
    assert joint.committed_index(acked) == want


@given(_voter_sets, st.dictionaries(st.integers(min_value=1, max_value=20), st.booleans()))
def test_majority_vote_result_matches_counting(
    voters: frozenset[int], votes: dict[int, bool]
) -> None:
    quorum = len(voters) // 2 + 1
    yes = sum(1 for v in voters if votes.get(v) is True)
    no = sum(1 for v in voters if votes.get(v) is False)
    got = MajorityConfig(voters).vote_result(votes)
    if not voters or yes >= quorum:
        assert got == WON
    elif len(voters) - no < quorum:
        assert got == LOST
    else:
        assert got == PENDING
