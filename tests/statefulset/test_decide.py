"""The start decision of ``etcdpy k8s bootstrap``, case by case (docs/kubernetes-membership.md)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from etcdpy.statefulset.decide import Action, Decision, SeenMember, decide

NAME = "etcdpy-1"
PEER = "http://etcdpy-1.etcdpy-headless.default.svc.cluster.local:2380"


def member(ordinal: int, started: bool = True, learner: bool = False, ident: int = 0) -> SeenMember:
    host = f"etcdpy-{ordinal}.etcdpy-headless.default.svc.cluster.local"
    return SeenMember(
        id=ident or 0x100 + ordinal,
        name=f"etcdpy-{ordinal}" if started else "",
        peer_urls=(f"http://{host}:2380",),
        client_urls=(f"http://{host}:2379",) if started else (),
        is_learner=learner,
    )


def run(
    has_data: bool,
    members: Sequence[SeenMember] | None,
    state: str = "new",
    replicas: int = 3,
    ordinal: int = 1,
) -> Decision:
    name = f"etcdpy-{ordinal}"
    peer = PEER.replace("etcdpy-1.", f"etcdpy-{ordinal}.")
    return decide(name, peer, has_data, members, state, replicas, ordinal)


ALL = [member(0), member(1), member(2)]
OTHERS = [member(0), member(2)]


@pytest.mark.parametrize("state", ["new", "existing"])
def test_data_and_nobody_answers_starts_as_is(state: str) -> None:
    assert run(True, None, state).action is Action.START_AS_IS


def test_data_and_listed_starts_as_is() -> None:
    decision = run(True, ALL, "existing")
    assert decision.action is Action.START_AS_IS
    assert not decision.move_data_aside and decision.remove_id is None


def test_data_of_a_removed_member_moves_aside_and_joins() -> None:
    decision = run(True, OTHERS, "existing")
    assert decision.action is Action.JOIN_AS_LEARNER
    assert decision.move_data_aside and decision.remove_id is None


def test_data_of_a_removed_member_beyond_replicas_waits() -> None:
    # The scale-in hook removed it; the StatefulSet is about to delete the pod.
    decision = run(True, [member(0), member(1), member(2)], "existing", replicas=3, ordinal=3)
    assert decision.action is Action.WAIT


def test_lost_volume_removes_the_old_member_and_joins() -> None:
    decision = run(False, ALL, "existing")
    assert decision.action is Action.JOIN_AS_LEARNER
    assert decision.remove_id == 0x101 and not decision.move_data_aside


def test_lost_volume_found_by_peer_url_too() -> None:
    renamed = [member(0), SeenMember(0x77, "", (PEER,), ("http://x:2379",), False), member(2)]
    assert run(False, renamed, "existing").remove_id == 0x77


def test_listed_not_started_during_bootstrap_starts_new() -> None:
    members = [member(0), member(1, started=False), member(2)]
    assert run(False, members, "new").action is Action.START_NEW


def test_listed_not_started_in_an_existing_cluster_joins_as_listed() -> None:
    members = [member(0), member(1, started=False), member(2)]
    assert run(False, members, "existing").action is Action.JOIN_LISTED


def test_listed_learner_not_started_joins_without_adding_again() -> None:
    # A pod that was added as a learner and died before it started.
    members = [member(0), member(1, started=False, learner=True), member(2)]
    for state in ("new", "existing"):
        assert run(False, members, state).action is Action.JOIN_LISTED


def test_nobody_answers_new_bootstraps() -> None:
    assert run(False, None, "new").action is Action.START_NEW


def test_nobody_answers_new_beyond_replicas_waits() -> None:
    assert run(False, None, "new", replicas=3, ordinal=3).action is Action.WAIT


def test_nobody_answers_existing_waits_never_new() -> None:
    for ordinal in (0, 1, 4):
        assert run(False, None, "existing", ordinal=ordinal).action is Action.WAIT


def test_not_listed_joins_as_learner() -> None:
    decision = run(False, ALL, "existing", replicas=5, ordinal=3)
    assert decision.action is Action.JOIN_AS_LEARNER
    assert decision.remove_id is None and not decision.move_data_aside


def test_not_listed_during_install_joins_as_learner() -> None:
    # state new but the cluster answers without this pod: it was never in the initial set.
    assert run(False, OTHERS, "new").action is Action.JOIN_AS_LEARNER


def test_not_listed_beyond_replicas_waits() -> None:
    assert run(False, ALL, "existing", replicas=3, ordinal=4).action is Action.WAIT
