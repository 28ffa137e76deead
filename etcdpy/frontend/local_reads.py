"""KV.Range and read-only KV.Txn served in the front-end, from its read replica
(etcdpy.frontend.replica); a Txn that writes goes to the core as it is.

Serializable reads are answered at once, at the revision the replica has reached. A
linearizable read first waits for a READ_INDEX answer from the core (one call for every read
that arrived while the previous one was out, as etcd batches its ReadIndex requests): the core
answers once it has applied up to the read index, after the feed records that bring the replica
there, so the replica then holds every write acknowledged before the read began.

Whatever the replica cannot answer with certainty goes to the core as the call it is: no replica
yet, a revision the replica has not reached (a client may have written it through another
front-end), a value the core's compaction removed under a read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import structlog

from etcdpy import errors
from etcdpy.api import txn_checks
from etcdpy.call import CallContext
from etcdpy.corelink.client import CoreLinkClient, CoreLinkLost, caller_identity
from etcdpy.corelink.errors import CORE_UNREACHABLE, link_error
from etcdpy.corelink.stats import ReadCounts
from etcdpy.corelink.wire import METHOD_NUMBER, PACKAGE, READ_INDEX, UNCOUNTED
from etcdpy.frontend.replica import FrontendReplica
from etcdpy.frontend.replica_store import ReplicaStore
from etcdpy.mvcc.errors import CompactedError, FutureRevError
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.applier import (
    Applier,
    EncodedRange,
    encoded_range,
    is_txn_read_only,
    mvcc_error,
)

log = structlog.get_logger(__name__)

RANGE_METHOD = METHOD_NUMBER[f"/{PACKAGE}.KV/Range"]
TXN_METHOD = METHOD_NUMBER[f"/{PACKAGE}.KV/Txn"]

# Event-loop turns a serializable read gives the core link to be read: one turn reads what the
# socket held (up to the loop's read buffer), which is all the read needs to see; under a
# steady feed there is always more, which later writes sent and the read need not wait for.
MAX_CATCH_UP_TURNS = 2


class ReadIndexBatcher:
    """Linearizable reads share READ_INDEX calls: one out at a time, the next one carrying every
    read that arrived meanwhile."""

    def __init__(self, link: CoreLinkClient) -> None:
        self._link = link
        self._loop = asyncio.get_running_loop()
        self._in_flight = False
        self._next: asyncio.Future[tuple[int, bytes]] | None = None

    def _launch(self, waiters: asyncio.Future[tuple[int, bytes]]) -> None:
        self._in_flight = True
        call = self._link.call(READ_INDEX, b"")

        def done(result: asyncio.Future[tuple[int, bytes]]) -> None:
            self._in_flight = False
            if not waiters.done():
                exc = result.exception()
                if exc is not None:
                    waiters.set_exception(exc)
                else:
                    waiters.set_result(result.result())
            following, self._next = self._next, None
            if following is not None:
                self._launch(following)

        call.add_done_callback(done)

    async def wait(self) -> None:
        """Returns once the replica holds every write acknowledged before the call."""
        if not self._in_flight:
            waiters: asyncio.Future[tuple[int, bytes]] = self._loop.create_future()
            self._launch(waiters)
        else:
            if self._next is None:
                self._next = self._loop.create_future()
            waiters = self._next
        code, details = await asyncio.shield(waiters)
        if code:
            raise link_error(code, details.decode())


class LocalKV:
    """The KV service's reads for a front-end (the other methods go to the core as they are)."""

    def __init__(
        self,
        replica: FrontendReplica,
        link: CoreLinkClient,
        reads: ReadIndexBatcher,
        counts: ReadCounts,
        max_txn_ops: int,
    ) -> None:
        self._replica = replica
        self._link = link
        self._reads = reads
        self._counts = counts
        self._max_txn_ops = max_txn_ops

    async def Range(
        self, request: pb.RangeRequest, context: CallContext
    ) -> pb.RangeResponse | bytes:
        txn_checks.check_range(request)
        resp = await self._read(request, request.serializable, _range_on, RANGE_METHOD, context)
        if isinstance(resp, EncodedRange):
            return resp.encode()
        assert isinstance(resp, pb.RangeResponse)
        return resp

    async def Txn(self, request: pb.TxnRequest, context: CallContext) -> pb.TxnResponse:
        txn_checks.check_txn(request, self._max_txn_ops)
        if not is_txn_read_only(request):
            resp = await self._call_core(TXN_METHOD, request, context)
        else:
            serializable = all(
                op.request_range.serializable for op in (*request.success, *request.failure)
            )
            resp = await self._read(request, serializable, _txn_on, TXN_METHOD, context)
        assert isinstance(resp, pb.TxnResponse)
        return resp

    async def _read(
        self,
        request: pb.RangeRequest | pb.TxnRequest,
        serializable: bool,
        evaluate: Callable[[ReplicaStore, Any], pb.RangeResponse | pb.TxnResponse | EncodedRange],
        method: int,
        context: CallContext,
    ) -> pb.RangeResponse | pb.TxnResponse | EncodedRange:
        try:
            if not serializable:
                await self._reads.wait()
            else:
                await self._catch_up()
            store = self._replica.store
            if store is None:
                return await self._forward(method, request, context)
            try:
                resp = evaluate(store, request)
            except CompactedError as exc:
                raise mvcc_error(exc) from None
            except FutureRevError:  # the core may be further on
                return await self._forward(method, request, context)
            except errors.EtcdError:
                raise
            except Exception as exc:  # e.g. a value compacted away under this read
                log.debug("front-end read handed to the core", error=repr(exc))
                return await self._forward(method, request, context)
        except CoreLinkLost:
            await context.abort(grpc.StatusCode.UNAVAILABLE, CORE_UNREACHABLE)
        self._replica.fill_header(resp.header)
        self._counts.local += 1
        return resp

    async def _catch_up(self) -> None:
        """Take the feed records already sent before reading: a client that wrote through
        another front-end and got its answer finds its write here (the core sends the feed
        before the answer)."""
        for _ in range(MAX_CATCH_UP_TURNS):
            if not self._link.has_unread_input():
                return
            await asyncio.sleep(0)

    async def _forward(
        self, method: int, request: pb.RangeRequest | pb.TxnRequest, context: CallContext
    ) -> pb.RangeResponse | pb.TxnResponse:
        self._counts.forwarded += 1
        return await self._call(method, request, context)

    async def _call_core(self, method: int, request: pb.TxnRequest, context: CallContext) -> Any:
        try:
            return await self._call(method, request, context)
        except CoreLinkLost:
            await context.abort(grpc.StatusCode.UNAVAILABLE, CORE_UNREACHABLE)

    async def _call(
        self, method: int, request: pb.RangeRequest | pb.TxnRequest, context: CallContext
    ) -> pb.RangeResponse | pb.TxnResponse:
        # Uncounted in the core: this front-end's counters have the call already. The caller's
        # identity goes with it: the core checks its auth as for any call.
        code, payload = await self._link.call(
            UNCOUNTED + method, request.SerializeToString(), caller_identity(context)
        )
        if code:
            raise link_error(code, payload.decode())
        if method == RANGE_METHOD:
            return pb.RangeResponse.FromString(payload)
        return pb.TxnResponse.FromString(payload)


def _range_on(store: ReplicaStore, request: pb.RangeRequest) -> pb.RangeResponse | EncodedRange:
    return encoded_range(store, request)


def _txn_on(store: ReplicaStore, request: pb.TxnRequest) -> pb.TxnResponse:
    return Applier(store).read_only_txn(request)
