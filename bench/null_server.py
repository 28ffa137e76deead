"""The "null" server: etcd's KV.Put/Range/Txn over grpc.aio on a plain dict, nothing durable.

It is the ceiling of what one Python process can serve with grpc.aio + uvloop when the
storage costs nothing: the benchmark reports etcdpy against it as well as against etcd.
``--engine h2grpc`` serves the same store with etcdpy's own gRPC server (etcdpy.h2grpc), and
``--engine h2`` with the h2 library's HTTP/2 state machine, to compare what the transport costs
(bench.h2grpc_cost).

    python -m bench.null_server --listen 127.0.0.1:23790 [--engine grpcio|h2grpc|h2]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import signal
from typing import Any

import grpc

from etcdpy.h2grpc.connection import Http2Connection
from etcdpy.h2grpc.server import GrpcServer
from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.pb.mvccpb import kv_pb2

_Compare = rpc_pb2.Compare


class MemoryKV:
    """Latest value of each key with etcd's revision bookkeeping; no history."""

    def __init__(self) -> None:
        self.revision = 1
        self.kvs: dict[bytes, kv_pb2.KeyValue] = {}
        self.sorted_keys: list[bytes] = []

    def put(self, key: bytes, value: bytes, lease: int, revision: int) -> kv_pb2.KeyValue | None:
        prev = self.kvs.get(key)
        if prev is None:
            bisect.insort(self.sorted_keys, key)
            kv = kv_pb2.KeyValue(
                key=key, value=value, lease=lease, create_revision=revision,
                mod_revision=revision, version=1,
            )  # fmt: skip
        else:
            kv = kv_pb2.KeyValue(
                key=key, value=value, lease=lease, create_revision=prev.create_revision,
                mod_revision=revision, version=prev.version + 1,
            )  # fmt: skip
        self.kvs[key] = kv
        return prev

    def range(self, key: bytes, range_end: bytes) -> list[kv_pb2.KeyValue]:
        if not range_end:
            kv = self.kvs.get(key)
            return [] if kv is None else [kv]
        lo = bisect.bisect_left(self.sorted_keys, key)
        hi = (
            len(self.sorted_keys)
            if range_end == b"\0"
            else bisect.bisect_left(self.sorted_keys, range_end)
        )
        return [self.kvs[k] for k in self.sorted_keys[lo:hi]]

    def compare(self, cmp: rpc_pb2.Compare) -> bool:
        kv = self.kvs.get(cmp.key)
        target = cmp.target
        if target == _Compare.VALUE:
            have: int | bytes = kv.value if kv else b""
            want: int | bytes = cmp.value
        elif target == _Compare.MOD:
            have, want = (kv.mod_revision if kv else 0), cmp.mod_revision
        elif target == _Compare.CREATE:
            have, want = (kv.create_revision if kv else 0), cmp.create_revision
        elif target == _Compare.VERSION:
            have, want = (kv.version if kv else 0), cmp.version
        else:
            have, want = (kv.lease if kv else 0), cmp.lease
        result = cmp.result
        if result == _Compare.EQUAL:
            return have == want
        if result == _Compare.NOT_EQUAL:
            return have != want
        if result == _Compare.GREATER:
            return have > want  # type: ignore[operator]
        return have < want  # type: ignore[operator]


class NullKV(rpc_pb2_grpc.KVServicer):  # type: ignore[misc]
    def __init__(self, store: MemoryKV) -> None:
        self.store = store

    def _header(self) -> rpc_pb2.ResponseHeader:
        return rpc_pb2.ResponseHeader(
            cluster_id=1, member_id=1, revision=self.store.revision, raft_term=1
        )

    def _put(self, request: rpc_pb2.PutRequest, revision: int) -> rpc_pb2.PutResponse:
        prev = self.store.put(request.key, request.value, request.lease, revision)
        response = rpc_pb2.PutResponse()
        if request.prev_kv and prev is not None:
            response.prev_kv.CopyFrom(prev)
        return response

    def _range(self, request: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        kvs = self.store.range(request.key, request.range_end)
        response = rpc_pb2.RangeResponse(count=len(kvs))
        if request.limit and len(kvs) > request.limit:
            kvs, response.more = kvs[: request.limit], True
        if not request.count_only:
            response.kvs.extend(kvs)
        return response

    async def Put(self, request: rpc_pb2.PutRequest, context: object) -> rpc_pb2.PutResponse:
        self.store.revision += 1
        response = self._put(request, self.store.revision)
        response.header.CopyFrom(self._header())
        return response

    async def Range(self, request: rpc_pb2.RangeRequest, context: object) -> rpc_pb2.RangeResponse:
        response = self._range(request)
        response.header.CopyFrom(self._header())
        return response

    async def Txn(self, request: rpc_pb2.TxnRequest, context: object) -> rpc_pb2.TxnResponse:
        succeeded = all(self.store.compare(c) for c in request.compare)
        ops = request.success if succeeded else request.failure
        writes = any(op.HasField("request_put") for op in ops)
        revision = self.store.revision + 1 if writes else self.store.revision
        response = rpc_pb2.TxnResponse(succeeded=succeeded)
        for op in ops:
            if op.HasField("request_put"):
                response.responses.add(response_put=self._put(op.request_put, revision))
            elif op.HasField("request_range"):
                response.responses.add(response_range=self._range(op.request_range))
        self.store.revision = revision
        response.header.CopyFrom(self._header())
        return response


def _kv_handlers(kv: NullKV) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for name, request_type in (
        ("Put", rpc_pb2.PutRequest),
        ("Range", rpc_pb2.RangeRequest),
        ("Txn", rpc_pb2.TxnRequest),
    ):
        handlers[f"/etcdserverpb.KV/{name}"] = grpc.unary_unary_rpc_method_handler(
            getattr(kv, name),
            request_deserializer=request_type.FromString,
            response_serializer=lambda m: m.SerializeToString(),
        )
    return handlers


async def serve(listen: str, engine: str) -> None:
    kv = NullKV(MemoryKV())
    loop = asyncio.get_running_loop()
    host, _, port = listen.rpartition(":")
    if engine == "grpcio":
        server = grpc.aio.server()
        rpc_pb2_grpc.add_KVServicer_to_server(kv, server)
        server.add_insecure_port(listen)
        await server.start()
    elif engine == "h2grpc":
        h2grpc = GrpcServer(_kv_handlers(kv), 4 << 20)
        listener = await loop.create_server(lambda: Http2Connection(h2grpc), host, int(port))
    else:
        from bench.h2_library_server import H2LibraryConnection

        handlers = _kv_handlers(kv)
        listener = await loop.create_server(lambda: H2LibraryConnection(handlers), host, int(port))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"null server ({engine}) listening on {listen}", flush=True)
    await stop.wait()
    if engine == "grpcio":
        await server.stop(grace=1)
    else:
        listener.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:23790")
    parser.add_argument("--engine", choices=("grpcio", "h2grpc", "h2"), default="grpcio")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(serve(args.listen, args.engine))
    else:
        uvloop.run(serve(args.listen, args.engine))


if __name__ == "__main__":
    main()
