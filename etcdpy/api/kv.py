"""The KV service: validate, call the core (etcd's v3rpc/key.go); the pipeline fills the header."""

from __future__ import annotations

from etcdpy.api import txn_checks
from etcdpy.call import CallContext
from etcdpy.pb.etcdserverpb import raft_internal_pb2 as internalpb
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.applier import EncodedRange, is_txn_read_only
from etcdpy.server.etcd_server import EtcdServer


class KVService:
    def __init__(self, server: EtcdServer) -> None:
        self._server = server
        self._max_txn_ops = server.config.max_txn_ops

    async def Range(
        self, request: pb.RangeRequest, context: CallContext
    ) -> pb.RangeResponse | EncodedRange:
        txn_checks.check_range(request)
        if not request.serializable:
            await self._server.linearizable_read()
        return self._server.range(request)

    async def Put(self, request: pb.PutRequest, context: CallContext) -> pb.PutResponse:
        txn_checks.check_put(request)
        resp: pb.PutResponse = await self._server.propose(
            internalpb.InternalRaftRequest(put=request)
        )
        return resp

    async def DeleteRange(
        self, request: pb.DeleteRangeRequest, context: CallContext
    ) -> pb.DeleteRangeResponse:
        txn_checks.check_delete(request)
        resp: pb.DeleteRangeResponse = await self._server.propose(
            internalpb.InternalRaftRequest(delete_range=request)
        )
        return resp

    async def Txn(self, request: pb.TxnRequest, context: CallContext) -> pb.TxnResponse:
        txn_checks.check_txn(request, self._max_txn_ops)
        if is_txn_read_only(request):
            if not _txn_serializable(request):
                await self._server.linearizable_read()
            resp = self._server.read_only_txn(request)
        else:
            resp = await self._server.propose(internalpb.InternalRaftRequest(txn=request))
        return resp

    async def Compact(
        self, request: pb.CompactionRequest, context: CallContext
    ) -> pb.CompactionResponse:
        resp: pb.CompactionResponse = await self._server.propose(
            internalpb.InternalRaftRequest(compaction=request)
        )
        return resp


def _txn_serializable(request: pb.TxnRequest) -> bool:
    """A read-only txn is served without ReadIndex only if every range asks for that."""
    ops = (*request.success, *request.failure)
    return all(op.request_range.serializable for op in ops)
