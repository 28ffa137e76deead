"""A front-end passes its client's identity to the core (issue 17): its forwarding handlers
(etcdpy.frontend.handlers) and the reads it hands on (etcdpy.frontend.local_reads), run as
h2grpc runs them, reach a core handler that sees the client's ``token`` metadata and
certificate name, over a real core link on a unix socket."""

from __future__ import annotations

import asyncio
import tempfile
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import grpc

from etcdpy.call import CallContext, invoke
from etcdpy.corelink.client import CoreLinkClient
from etcdpy.corelink.core import CoreLinkServer
from etcdpy.corelink.stats import ReadCounts
from etcdpy.frontend.handlers import build_handlers
from etcdpy.frontend.local_reads import LocalKV
from etcdpy.h2grpc.context import RequestContext
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb

PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
TXN = "/etcdserverpb.KV/Txn"
SNAPSHOT = "/etcdserverpb.Maintenance/Snapshot"

Seen = list[tuple[str, tuple[Any, ...], str | None]]


def _client_context(token: str | None, cert_cn: str | None) -> RequestContext:
    """A call's context as a front-end's h2grpc builds it from the client's headers."""
    headers = [(b":path", b"/x"), (b"content-type", b"application/grpc"), (b"user-agent", b"t")]
    if token is not None:
        headers.append((b"token", token.encode()))
    return RequestContext(headers, "ipv4:127.0.0.1:5000", None, None, cert_cn=cert_cn)


class _Collect(RequestContext):
    """A client context whose stream messages are kept."""

    def __init__(self, token: str) -> None:
        super().__init__([(b"token", token.encode())], "ipv4:127.0.0.1:5000", None, self._keep)
        self.messages: list[bytes] = []

    async def _keep(self, message: Any) -> None:
        self.messages.append(message)


def _core_handlers(seen: Seen) -> dict[str, Any]:
    def record(name: str, context: CallContext) -> None:
        seen.append((name, tuple(context.invocation_metadata()), context.client_cert_cn()))

    def unary(name: str) -> Any:
        async def handle(request: bytes, context: CallContext) -> bytes:
            record(name, context)
            return b""

        return grpc.unary_unary_rpc_method_handler(handle)

    async def snapshot(request: bytes, context: CallContext) -> AsyncIterator[bytes]:
        record("snapshot", context)
        yield b"chunk"

    return {
        PUT: unary("put"),
        RANGE: unary("range"),
        TXN: unary("txn"),
        SNAPSHOT: grpc.unary_stream_rpc_method_handler(snapshot),
    }


def test_front_end_calls_reach_the_core_with_their_callers_identity() -> None:
    seen: Seen = []

    async def main() -> None:
        core = _core_handlers(seen)
        server = CoreLinkServer(
            core, lambda _: None, uncounted={RANGE: core[RANGE], TXN: core[TXN]}
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "link.sock")
            await server.listen(path)
            link = await CoreLinkClient.connect(path, lambda: None)
            try:
                front = build_handlers(link)
                put = pb.PutRequest(key=b"k").SerializeToString()
                assert (await invoke(front[PUT], put, _client_context("tok-1", None)))[0] == 0
                assert (await invoke(front[PUT], put, _client_context(None, None)))[0] == 0
                collect = _Collect("tok-2")
                status = await invoke(front[SNAPSHOT], b"", collect)
                assert status[0] == 0 and collect.messages == [b"chunk"]
                # A front-end's own KV: a Txn that writes, and a Range its replica cannot
                # answer (no replica yet), go to the core.
                local = LocalKV(
                    cast(Any, types.SimpleNamespace(store=None)),
                    link,
                    cast(Any, None),
                    ReadCounts(),
                    128,
                )
                write = pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=b"k"))])
                await local.Txn(write, _client_context("tok-3", "cn-3"))
                read = pb.RangeRequest(key=b"k", serializable=True)
                await local.Range(read, _client_context("tok-4", None))
            finally:
                link.close()
                await server.close()

    asyncio.run(asyncio.wait_for(main(), 10))
    assert seen == [
        ("put", (("token", "tok-1"),), None),
        ("put", (), None),
        ("snapshot", (("token", "tok-2"),), None),
        ("txn", (("token", "tok-3"),), "cn-3"),
        ("range", (("token", "tok-4"),), None),
    ]
