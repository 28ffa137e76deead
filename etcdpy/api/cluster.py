"""The Cluster service: member list and membership changes (etcd's v3rpc/member.go).

Its response headers carry cluster id, member id and raft term but no revision (etcd's
ClusterServer.header leaves it 0): membership is not part of the key space. The pipeline fills
them (``fill_cluster_header``, etcdpy.api.interceptors.Header).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from etcdpy.call import CallContext
from etcdpy.membership import changes as cluster_ops
from etcdpy.membership.members import Member
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.etcd_server import EtcdServer


def _fill_member(target: Any, member: Member) -> None:
    target.ID = member.id
    target.name = member.name
    target.peerURLs.extend(member.peer_urls)
    target.clientURLs.extend(member.client_urls)
    target.isLearner = member.is_learner


def _fill_members(target: Any, members: Iterable[Member]) -> None:
    for member in members:
        _fill_member(target.add(), member)


def fill_cluster_header(header: pb.ResponseHeader, server: EtcdServer) -> None:
    """Cluster's rule (etcdpy.api.interceptors.HEADER_RULES): no revision."""
    header.cluster_id = server.cluster.cluster_id
    header.member_id = server.member_id
    header.raft_term = server.raft_term


class ClusterService:
    def __init__(self, server: EtcdServer) -> None:
        self._server = server

    async def MemberList(
        self, request: pb.MemberListRequest, context: CallContext
    ) -> pb.MemberListResponse:
        if request.linearizable:
            await self._server.linearizable_read()
        resp = pb.MemberListResponse()
        _fill_members(resp.members, self._server.cluster.sorted_members())
        return resp

    async def MemberAdd(
        self, request: pb.MemberAddRequest, context: CallContext
    ) -> pb.MemberAddResponse:
        member = await cluster_ops.add_member(
            self._server, list(request.peerURLs), request.isLearner
        )
        resp = pb.MemberAddResponse()
        _fill_member(resp.member, member)
        _fill_members(resp.members, self._server.cluster.sorted_members())
        return resp

    async def MemberRemove(
        self, request: pb.MemberRemoveRequest, context: CallContext
    ) -> pb.MemberRemoveResponse:
        await cluster_ops.remove_member(self._server, request.ID)
        resp = pb.MemberRemoveResponse()
        _fill_members(resp.members, self._server.cluster.sorted_members())
        return resp

    async def MemberUpdate(
        self, request: pb.MemberUpdateRequest, context: CallContext
    ) -> pb.MemberUpdateResponse:
        await cluster_ops.update_member(self._server, request.ID, list(request.peerURLs))
        resp = pb.MemberUpdateResponse()
        _fill_members(resp.members, self._server.cluster.sorted_members())
        return resp

    async def MemberPromote(
        self, request: pb.MemberPromoteRequest, context: CallContext
    ) -> pb.MemberPromoteResponse:
        await cluster_ops.promote_member(self._server, request.ID)
        resp = pb.MemberPromoteResponse()
        _fill_members(resp.members, self._server.cluster.sorted_members())
        return resp
