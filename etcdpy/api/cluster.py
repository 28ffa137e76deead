"""The Cluster service: MemberList now; membership changes come with multi-member clusters."""

from __future__ import annotations

from etcdpy.api.status import Ctx
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.etcd_server import EtcdServer


class ClusterService:
    def __init__(self, server: EtcdServer) -> None:
        self._server = server

    async def MemberList(
        self, request: pb.MemberListRequest, context: Ctx
    ) -> pb.MemberListResponse:
        if request.linearizable:
            await self._server.linearizable_read()
        resp = pb.MemberListResponse()
        for member in self._server.cluster.sorted_members():
            resp.members.add(
                ID=member.id,
                name=member.name,
                peerURLs=list(member.peer_urls),
                clientURLs=list(member.client_urls),
                isLearner=member.is_learner,
            )
        self._server.fill_header(resp.header)
        return resp
