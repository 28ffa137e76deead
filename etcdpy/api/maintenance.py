"""The Maintenance service: Status here, the rest in maintenance_ops."""

from __future__ import annotations

from etcdpy.api.maintenance_ops import MaintenanceOps
from etcdpy.call import CallContext
from etcdpy.membership import changes as cluster_ops
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.etcd_server import EtcdServer


class MaintenanceService(MaintenanceOps):  # ops: Hash, HashKV, Alarm, Defragment, Snapshot
    def __init__(self, server: EtcdServer) -> None:
        self._server = server

    async def Status(self, request: pb.StatusRequest, context: CallContext) -> pb.StatusResponse:
        return self._server.status()

    async def MoveLeader(
        self, request: pb.MoveLeaderRequest, context: CallContext
    ) -> pb.MoveLeaderResponse:
        await cluster_ops.move_leader(self._server, request.targetID)
        return pb.MoveLeaderResponse()
