"""Maintenance RPCs beyond Status: Hash, HashKV, Alarm, Defragment, Snapshot (stream).

A mixin of MaintenanceService, so that the service file stays small for the other branches.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message

from etcdpy import errors
from etcdpy.call import CallContext
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb

if TYPE_CHECKING:
    from etcdpy.server.etcd_server import EtcdServer


class MaintenanceOps:
    _server: EtcdServer

    async def Hash(self, request: pb.HashRequest, context: CallContext) -> pb.HashResponse:
        h, rev = self._server.maintenance.hash()
        resp = pb.HashResponse(hash=h)
        resp.header.revision = rev  # the pipeline fills the rest of the header
        return resp

    async def HashKV(self, request: pb.HashKVRequest, context: CallContext) -> pb.HashKVResponse:
        h, rev, compact_rev = self._server.maintenance.hash_kv(request.revision)
        resp = pb.HashKVResponse(hash=h, compact_revision=compact_rev)
        resp.header.revision = rev  # the pipeline fills the rest of the header
        return resp

    async def Alarm(self, request: pb.AlarmRequest, context: CallContext) -> pb.AlarmResponse:
        # etcd leaves the header of an alarm response empty.
        return await self._server.maintenance.alarm(request)

    async def Defragment(
        self, request: pb.DefragmentRequest, context: CallContext
    ) -> pb.DefragmentResponse:
        await self._server.maintenance.defragment()
        return pb.DefragmentResponse()

    def stream_handler(
        self, method: MethodDescriptor, request_type: type[Message], serialize: Any
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if method.name != "Snapshot":  # pragma: no cover - Snapshot is the only stream here
            raise ValueError(method.name)
        return grpc.unary_stream_rpc_method_handler(self.Snapshot, response_serializer=serialize)

    async def Snapshot(
        self, data: bytes, context: CallContext
    ) -> AsyncIterator[pb.SnapshotResponse]:
        try:
            pb.SnapshotRequest.FromString(data)
        except DecodeError as exc:
            await context.abort(
                grpc.StatusCode.INTERNAL, f"grpc: error unmarshalling request: {exc}"
            )
        try:
            async for resp in self._server.maintenance.snapshot_chunks():
                self._server.fill_header(resp.header)
                yield resp
        except errors.EtcdError as exc:
            code, message = errors.to_grpc_status(exc)
            await context.abort(code, message)
