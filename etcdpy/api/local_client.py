"""The member's own KV, lease and watch operations, called as a client calls them (etcd's
v3client, which etcd's Lock and Election services are built on).

Reads and writes go through a KV service of their own inside the pipeline's quota and header
layers: the same validation, linearizable reads, --quota-backend-bytes check and response
header a gRPC client meets, without a connection and with errors left as EtcdErrors for the
recipes. A watch is a watcher on the member's store, read as it arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from etcdpy import errors
from etcdpy.api.cluster import fill_cluster_header
from etcdpy.api.interceptors import Header
from etcdpy.api.kv import KVService
from etcdpy.api.pipeline import Interceptor, Method, Unary
from etcdpy.api.quota import Quota
from etcdpy.api.services import SERVICES
from etcdpy.call import CallContext
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.mvccpb.kv_pb2 import Event
from etcdpy.server.applier import EncodedRange
from etcdpy.server.etcd_server import EtcdServer

# KVService does not read its context; a local call has none.
_NO_CONTEXT = cast(CallContext, None)


class LocalClient:
    def __init__(self, server: EtcdServer) -> None:
        self._server = server
        kv = KVService(server)
        # etcd's v3client calls its quotaKVServer: quota, then the handler, then the header.
        interceptors: tuple[Interceptor, ...] = (
            Quota(server, server.config.quota_bytes is not None),
            Header(server.fill_header, lambda header: fill_cluster_header(header, server)),
        )
        self._range = _local(kv, "Range", interceptors)
        self._txn = _local(kv, "Txn", interceptors)
        self._delete = _local(kv, "DeleteRange", interceptors)

    async def range(self, request: pb.RangeRequest) -> pb.RangeResponse:
        resp: Any = await self._range(request, _NO_CONTEXT)
        if isinstance(resp, EncodedRange):  # a large answer comes encoded already
            return pb.RangeResponse.FromString(resp.encode())
        return cast(pb.RangeResponse, resp)

    async def txn(self, request: pb.TxnRequest) -> pb.TxnResponse:
        return cast(pb.TxnResponse, await self._txn(request, _NO_CONTEXT))

    async def delete(self, key: bytes) -> pb.DeleteRangeResponse:
        resp = await self._delete(pb.DeleteRangeRequest(key=key), _NO_CONTEXT)
        return cast(pb.DeleteRangeResponse, resp)

    async def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; its id."""
        return (await self._server.lease_grant(pb.LeaseGrantRequest(TTL=ttl))).ID

    def header(self, revision: int) -> pb.ResponseHeader:
        header = pb.ResponseHeader(revision=revision)
        self._server.fill_header(header)
        return header

    def watch(self, key: bytes, end: bytes | None, start_revision: int) -> LocalWatch:
        """A watcher of ``key`` (``end``: None for the key alone, else the range's end)."""
        return LocalWatch(self._server, key, end, start_revision)


def _local(kv: KVService, name: str, interceptors: Sequence[Interceptor]) -> Unary:
    service = SERVICES["KV"]
    method = Method(service, service.descriptor.methods_by_name[name], implemented=True)
    call: Unary = getattr(kv, name)
    for interceptor in reversed(interceptors):
        call = interceptor.unary(method, call)
    return call


class LocalWatch:
    """One watcher; ``batches`` yields (revision, events) of each response with events.
    Close it (``with``) when done."""

    def __init__(self, server: EtcdServer, key: bytes, end: bytes | None, start: int) -> None:
        self._ready = asyncio.Event()
        self._stream = server.watch_stream(self._ready.set)
        self._stream.watch(key, end, start_rev=start)

    def __enter__(self) -> LocalWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()

    async def batches(self) -> AsyncIterator[tuple[int, list[Event]]]:
        stream, ready = self._stream, self._ready
        while True:
            responses = stream.drain()
            if not responses:
                ready.clear()
                responses = stream.drain()
                if not responses:
                    await ready.wait()
                    continue
            for response in responses:
                if response.canceled:  # clientv3's WatchResponse.Err()
                    if response.compact_revision:
                        raise errors.Compacted()
                    raise errors.WatchCanceled()
                if response.events:
                    yield response.revision, response.events
