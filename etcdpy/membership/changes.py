"""Membership changes and leader transfer, with etcd's checks and errors.

Each change is checked against the membership this member knows (unknown member, peer URL in
use, too many learners, not a learner) and, with ``--strict-reconfig-check`` (the default),
against quorum safety: a voter is added or removed only while enough members are started and
connected. Then it goes through the log as a ConfChange whose context carries the member
record and the request id; the proposer's waiter is resolved with the member list when the
change is applied.

These checks run against the proposer's view, which may be stale: two members may accept
conflicting changes (two adds of one peer URL, two removes of one member) at the same time.
So every member validates each change again when it applies it, against the same membership
(etcdpy.membership.members.validate_conf_change, as etcd's applyConfChange does); a change
that lost the race is applied to raft as a no-op and its proposer gets the error.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Protocol

from etcdpy import errors
from etcdpy.config import ConfigError, ServerConfig, parse_urls
from etcdpy.membership.members import Cluster, Member, compute_member_id, validate_conf_change
from etcdpy.observability.metrics import ServerMetrics
from etcdpy.observability.request_ids import RAFT_REQUEST_ID
from etcdpy.peer.tls import PeerTLS
from etcdpy.peer.transport import PeerTransport, peer_rpc
from etcdpy.raft.errors import ProposalDroppedError
from etcdpy.raft.rawnode import RawNode
from etcdpy.raft.types import ConfChange, ConfChangeSingle, ConfChangeType

# A peer counts as healthy for a reconfiguration once connected this long (etcd's HealthInterval).
HEALTH_INTERVAL_SECONDS = 5.0
# A learner may be promoted once its log has 90% of the leader's (etcd's readyPercent).
LEARNER_READY_PERCENT = 0.9


class RaftHandle(Protocol):
    """The member's raft node and the nudge that makes its Ready loop run (a RaftNode)."""

    @property
    def node(self) -> RawNode: ...

    def kick(self) -> None: ...


class PeerSide(Protocol):
    """The member's peer side (a ClusterRuntime): who is connected, who was removed."""

    @property
    def transport(self) -> PeerTransport | None: ...

    @property
    def removed(self) -> set[int]: ...

    @property
    def peer_tls(self) -> PeerTLS: ...


class MemberIdentity(Protocol):
    """Who the member is and which cluster it knows (an EtcdServer's), as most of its parts
    read it."""

    @property
    def config(self) -> ServerConfig: ...

    @property
    def cluster(self) -> Cluster: ...

    @property
    def member_id(self) -> int: ...

    @property
    def leader_id(self) -> int: ...


class MembershipHost(MemberIdentity, Protocol):
    """What a membership change or a leader transfer needs of the member (an EtcdServer): the
    membership it knows, its raft node, and a waiter for the change's apply."""

    @property
    def raft(self) -> RaftHandle: ...

    @property
    def cluster_runtime(self) -> PeerSide: ...

    @property
    def metrics(self) -> ServerMetrics: ...

    @property
    def request_timeout(self) -> float: ...

    def next_request_id(self) -> int: ...

    def register_waiter(self, request_id: int) -> asyncio.Future[Any]: ...

    def cancel_waiter(self, request_id: int) -> None: ...


class TimeoutLeaderTransfer(errors.EtcdError):
    # etcd has no gRPC mapping for this error: it reaches clients as UNKNOWN with its text.
    message = "etcdserver: request timed out, leader transfer took too long"


def _parse_peer_urls(urls: list[str]) -> tuple[str, ...]:
    try:
        return tuple(str(u) for u in parse_urls(urls, peer=True))
    except ConfigError:
        raise errors.MemberBadURLs() from None


def _voters(server: MembershipHost) -> list[Member]:
    return [m for m in server.cluster.sorted_members() if not m.is_learner]


def _connected_since(server: MembershipHost, member_id: int, since: float) -> bool:
    if member_id == server.member_id:
        return True
    transport = server.cluster_runtime.transport
    if transport is None:
        return False
    up = transport.active_since(member_id)
    return up is not None and up <= since


def _check_urls_free(server: MembershipHost, urls: tuple[str, ...], except_id: int = 0) -> None:
    for member in server.cluster.members.values():
        if member.id != except_id and set(member.peer_urls) & set(urls):
            raise errors.PeerURLExist()


async def add_member(server: MembershipHost, peer_urls: list[str], is_learner: bool) -> Member:
    urls = _parse_peer_urls(peer_urls)
    member = Member(compute_member_id(urls, "", int(time.time())), "", urls, (), is_learner)
    if server.config.strict_reconfig_check:
        voters = _voters(server)
        if not is_learner:  # a learner does not count towards the quorum
            started = sum(1 for m in voters if m.name)
            total = len(voters) + 1
            if not (started == 1 and total == 2) and started < total // 2 + 1:
                raise errors.MemberNotEnoughStarted()
        # etcd asks this of learners too: every voter connected for HealthInterval
        since = time.monotonic() - HEALTH_INTERVAL_SECONDS
        if not all(_connected_since(server, m.id, since) for m in voters):
            raise errors.Unhealthy()
    kind = ConfChangeType.ADD_LEARNER_NODE if is_learner else ConfChangeType.ADD_NODE
    context: dict[str, Any] = {"member": json.loads(member.to_json())}
    # What the apply checks again (etcd checks it only there); asked here first to spare the
    # log an entry that is bound to be refused.
    error = validate_conf_change(
        server.cluster.members, server.cluster_runtime.removed, kind, member.id, context
    )
    if error is not None:
        raise error
    await _configure(server, kind, member.id, context)
    return member


async def remove_member(server: MembershipHost, member_id: int) -> None:
    member = server.cluster.members.get(member_id)
    if member is None:
        raise errors.MemberNotFound()
    if server.config.strict_reconfig_check and not member.is_learner:
        others = [m for m in _voters(server) if m.id != member_id]
        started = sum(1 for m in others if m.name)
        if started < len(others) // 2 + 1:
            raise errors.MemberNotEnoughStarted()
        transport = server.cluster_runtime.transport
        down = (
            member_id != server.member_id
            and transport is not None
            and transport.active_since(member_id) is None
        )
        if not down:
            voters = _voters(server)
            since = time.monotonic() - HEALTH_INTERVAL_SECONDS
            active = sum(1 for m in voters if _connected_since(server, m.id, since))
            if active - 1 < 1 + (len(voters) - 1) // 2:
                raise errors.Unhealthy()
    await _configure(server, ConfChangeType.REMOVE_NODE, member_id, {})


async def update_member(server: MembershipHost, member_id: int, peer_urls: list[str]) -> None:
    urls = _parse_peer_urls(peer_urls)
    member = server.cluster.members.get(member_id)
    if member is None:
        raise errors.MemberNotFound()
    _check_urls_free(server, urls, except_id=member_id)
    record = json.loads(Member(member_id, member.name, urls).to_json())
    await _configure(server, ConfChangeType.UPDATE_NODE, member_id, {"member": record})


def learner_ready_error(server: MembershipHost, member_id: int) -> errors.EtcdError | None:
    """On the leader: None when the learner may be promoted; NotLeader elsewhere."""
    status = server.raft.node.status()
    if not status.progress:
        return errors.NotLeader()
    learner = status.progress.get(member_id)
    if learner is not None:
        leader_match = status.progress[status.id].match
        if learner.match < leader_match * LEARNER_READY_PERCENT:
            return errors.LearnerNotReady()
    return None


async def promote_member(server: MembershipHost, member_id: int) -> None:
    member = server.cluster.members.get(member_id)
    if member is None:
        raise errors.MemberNotFound()
    if not member.is_learner:
        raise errors.MemberNotLearner()
    err = learner_ready_error(server, member_id)
    if isinstance(err, errors.NotLeader):
        err = await _ask_leader_learner_ready(server, member_id)
    if err is not None:
        raise err
    if server.config.strict_reconfig_check:
        voters = _voters(server)
        started = 1 + sum(1 for m in voters if m.name)
        if started < (len(voters) + 1) // 2 + 1:
            raise errors.MemberNotEnoughStarted()
    await _configure(server, ConfChangeType.ADD_NODE, member_id, {"promote": True})
    server.metrics.learner_promote_successes += 1  # etcd_server_learner_promote_successes


async def _ask_leader_learner_ready(
    server: MembershipHost, member_id: int
) -> errors.EtcdError | None:
    leader = server.cluster.members.get(server.leader_id)
    if leader is None:
        return errors.NoLeader()
    try:
        answer = await peer_rpc(
            list(leader.peer_urls),
            {"op": "learner_ready", "id": member_id},
            tls=server.cluster_runtime.peer_tls,
        )
    except ConnectionError:
        return errors.Timeout()
    name = answer.get("error")
    if name is None:
        return None
    found: Any = getattr(errors, str(name), None)
    if isinstance(found, type) and issubclass(found, errors.EtcdError):
        return found()
    return errors.Timeout()


async def _configure(
    server: MembershipHost, kind: ConfChangeType, member_id: int, context: dict[str, Any]
) -> None:
    request_id = server.next_request_id()
    context["req"] = request_id
    RAFT_REQUEST_ID.set(request_id)
    cc = ConfChange(
        changes=(ConfChangeSingle(kind, member_id),),
        context=json.dumps(context, sort_keys=True).encode(),
    )
    future = server.register_waiter(request_id)
    try:
        server.raft.node.propose_conf_change(cc)
    except ProposalDroppedError:
        server.cancel_waiter(request_id)
        raise errors.NoLeader() from None
    server.raft.kick()
    try:
        result = await asyncio.wait_for(future, server.request_timeout)
    except TimeoutError:
        server.cancel_waiter(request_id)
        raise errors.Timeout() from None
    if isinstance(result, errors.EtcdError):
        raise result


async def move_leader(server: MembershipHost, target: int) -> None:
    if server.member_id != server.leader_id:
        raise errors.NotLeader()
    member = server.cluster.members.get(target)
    if member is None or member.is_learner:
        raise errors.BadLeaderTransferee()
    server.raft.node.transfer_leader(target)
    server.raft.kick()
    interval = server.config.heartbeat_interval / 1000.0
    deadline = time.monotonic() + server.request_timeout
    while server.leader_id != target:
        if time.monotonic() > deadline:
            raise TimeoutLeaderTransfer()
        await asyncio.sleep(interval)
