"""Membership changes are validated again when applied (etcd's ValidateConfigurationChange in
applyConfChange): a change that was valid when proposed but lost a race is refused on apply,
applied to raft as a no-op, its proposer gets etcd's error, and a restart replays the same."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from etcdpy import errors
from etcdpy.config import ServerConfig, parse_url
from etcdpy.membership import changes as cluster_ops
from etcdpy.membership import store as member_store
from etcdpy.membership.members import Member, compute_member_id, validate_conf_change
from etcdpy.raft.types import ConfChangeType, StateType
from etcdpy.server.etcd_server import EtcdServer
from etcdpy.testing.processes import free_port

ADD, LEARNER = ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE
REMOVE, UPDATE = ConfChangeType.REMOVE_NODE, ConfChangeType.UPDATE_NODE


def _member(member_id: int, port: int, learner: bool = False) -> Member:
    return Member(member_id, f"m{member_id}", (f"http://127.0.0.1:{port}",), (), learner)


def _record(member: Member) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(member.to_json())
    return loaded


# -- the rule itself ------------------------------------------------------------------------

MEMBERS = {1: _member(1, 1001), 2: _member(2, 1002), 3: _member(3, 1003, learner=True)}
REMOVED = {9}


@pytest.mark.parametrize(
    ("kind", "node_id", "context", "expected"),
    [
        (ADD, 4, {"member": _record(_member(4, 1004))}, None),
        (ADD, 4, {"member": _record(_member(4, 1001))}, errors.PeerURLExist),
        (ADD, 2, {"member": _record(_member(2, 1004))}, errors.MemberExist),
        (ADD, 9, {"member": _record(_member(9, 1009))}, errors.MemberNotFound),  # removed id
        (LEARNER, 4, {"member": _record(_member(4, 1004, True))}, errors.TooManyLearners),
        (ADD, 3, {"promote": True}, None),
        (ADD, 2, {"promote": True}, errors.MemberNotLearner),
        (ADD, 7, {"promote": True}, errors.MemberNotFound),
        (ADD, 1, {}, None),  # a bootstrap entry
        (REMOVE, 2, {}, None),
        (REMOVE, 7, {}, errors.MemberNotFound),
        (REMOVE, 9, {}, errors.MemberNotFound),
        (UPDATE, 2, {"member": _record(_member(2, 1005))}, None),
        (UPDATE, 2, {"member": _record(_member(2, 1002))}, None),  # its own URL
        (UPDATE, 2, {"member": _record(_member(2, 1001))}, errors.PeerURLExist),
        (UPDATE, 7, {"member": _record(_member(7, 1007))}, errors.MemberNotFound),
    ],
)
def test_validate_conf_change_gives_etcds_errors(
    kind: ConfChangeType,
    node_id: int,
    context: dict[str, Any],
    expected: type[errors.EtcdError] | None,
) -> None:
    got = validate_conf_change(MEMBERS, REMOVED, kind, node_id, context)
    if expected is None:
        assert got is None
    else:
        assert type(got) is expected


# -- a real member: propose, apply, restart -------------------------------------------------


def _config(data_dir: Path, peer_port: int) -> ServerConfig:
    peer = (parse_url(f"http://127.0.0.1:{peer_port}"),)
    return ServerConfig(
        name="solo",
        data_dir=str(data_dir),
        listen_peer_urls=peer,
        initial_advertise_peer_urls=peer,
        initial_cluster={"solo": peer},
    )


async def _started(config: ServerConfig) -> EtcdServer:
    server = EtcdServer(config)
    await server.start()
    for _ in range(200):
        if server.role == StateType.LEADER:
            return server
        await asyncio.sleep(0.05)
    await server.stop()
    raise AssertionError("a single member did not become leader")


async def _stop(server: EtcdServer) -> None:
    # bounded, so that a failed assertion is reported rather than a stop that never ends
    await asyncio.wait_for(server.stop(), 10)


def _run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


async def _stale_add_learner(server: EtcdServer, member: Member) -> None:
    """An add proposed from a stale view: the proposal-time checks are skipped."""
    kind = LEARNER if member.is_learner else ADD
    await cluster_ops._configure(server, kind, member.id, {"member": _record(member)})


def test_changes_that_lost_a_race_are_refused_at_apply_and_on_replay(tmp_path: Path) -> None:
    config = _config(tmp_path / "solo", free_port())
    learner_url = f"http://127.0.0.1:{free_port()}"
    seen: dict[str, Any] = {}

    async def first_life() -> None:
        server = await _started(config)
        try:
            me = server.member_id
            learner = await cluster_ops.add_member(server, [learner_url], is_learner=True)
            # Same peer URL, another id: what a second, concurrent `member add` proposes.
            twin = Member(compute_member_id([learner_url], "", 1), "", (learner_url,), (), True)
            with pytest.raises(errors.PeerURLExist):
                await _stale_add_learner(server, twin)
            # Removing twice: the second remove finds the id removed.
            await cluster_ops.remove_member(server, learner.id)
            with pytest.raises(errors.MemberNotFound):
                await cluster_ops._configure(server, REMOVE, learner.id, {})
            # Promoting a member that is not (or no longer) a learner.
            with pytest.raises(errors.MemberNotLearner):
                await cluster_ops._configure(server, ADD, me, {"promote": True})
            status = server.raft.node.status()
            seen["conf"] = status.conf_state
            seen["members"] = sorted(server.cluster.members)
            seen["rejected"] = set(server.cluster_runtime.rejected)
            # raft never heard of the twin; the learner came and went
            assert status.conf_state.voters == (me,)
            assert status.conf_state.learners == ()
            assert seen["members"] == [me]
            assert len(seen["rejected"]) == 3
        finally:
            await server.stop()

    async def second_life() -> None:
        server = await _started(config)
        try:
            # Every entry is replayed through raft again: the refused ones as no-ops.
            assert server.raft.node.status().conf_state == seen["conf"]
            assert sorted(server.cluster.members) == seen["members"]
            assert server.cluster_runtime.rejected == seen["rejected"]
            stored = member_store.load(server.backend)
            assert stored is not None and stored.rejected == seen["rejected"]
        finally:
            await server.stop()

    _run(first_life)
    _run(second_life)


def test_a_refused_change_is_resolved_with_the_error_and_the_member_list_stays(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path / "solo", free_port())

    async def body() -> None:
        server = await _started(config)
        try:
            before = server.cluster.sorted_members()
            taken = before[0].peer_urls[0]
            stale = Member(compute_member_id([taken], "", 7), "", (taken,), (), False)
            with pytest.raises(errors.PeerURLExist) as err:
                await _stale_add_learner(server, stale)
            assert err.value.message == "etcdserver: Peer URLs already exists"
            assert server.cluster.sorted_members() == before
        finally:
            await server.stop()

    _run(body)


def test_a_joining_member_replays_a_refused_change_as_a_no_op(tmp_path: Path) -> None:
    """The joiner gets the member list as of a peer's applied index, with the indexes of the
    conf changes refused before it: its raft skips them as the others' did."""
    leader_config = _config(tmp_path / "solo", free_port())
    joiner_port = free_port()
    joiner_url = f"http://127.0.0.1:{joiner_port}"

    async def body() -> None:
        leader = await _started(leader_config)
        joiner: EtcdServer | None = None
        try:
            twin_url = f"http://127.0.0.1:{free_port()}"
            await cluster_ops.add_member(leader, [twin_url], is_learner=True)
            twin = Member(compute_member_id([twin_url], "", 3), "", (twin_url,), (), True)
            with pytest.raises(errors.PeerURLExist):
                await _stale_add_learner(leader, twin)
            first = next(m for m in leader.cluster.members.values() if m.is_learner)
            await cluster_ops.remove_member(leader, first.id)
            added = await cluster_ops.add_member(leader, [joiner_url], is_learner=True)
            peer = (parse_url(joiner_url),)
            joiner = EtcdServer(
                ServerConfig(
                    name="joiner",
                    data_dir=str(tmp_path / "joiner"),
                    listen_peer_urls=peer,
                    initial_advertise_peer_urls=peer,
                    initial_cluster={"solo": leader_config.cluster["solo"], "joiner": peer},
                    initial_cluster_state="existing",
                )
            )
            await joiner.start()
            assert joiner.member_id == added.id and joiner.is_learner
            assert joiner.cluster_runtime.rejected == leader.cluster_runtime.rejected
            for _ in range(200):
                if joiner.applied_index >= leader.applied_index:
                    break
                await asyncio.sleep(0.05)
            assert joiner.applied_index >= leader.applied_index
            assert joiner.raft.node.status().conf_state == leader.raft.node.status().conf_state
        finally:
            if joiner is not None:
                await _stop(joiner)
            await _stop(leader)

    _run(body)
