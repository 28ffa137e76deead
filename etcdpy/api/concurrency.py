"""The Lock and Election services (etcd's v3lock and v3election), built as etcd builds them: the
recipes of clientv3/concurrency run against the member's own operations (etcdpy.api.local_client).

The keys are clientv3/concurrency's, so the services, ``etcdctl lock`` and ``etcdctl elect`` (and
any client using those recipes) exclude one another:

- a lock or an election NAME is the prefix ``NAME/``; each contender puts the key
  ``NAME/<lease id in hex>``, attached to its lease, if it is not there yet;
- the contender whose key has the lowest create revision holds the lock (leads); the others wait
  for the deletion of the last key created before theirs, then look again;
- a request with lease 0 gets a new lease of 60 seconds that nobody keeps alive (etcd's session
  with no lease given, orphaned at once); a lease that is gone fails the put.

Errors are etcd's: its services get them from a client, which turns a status into a plain Go
error, sent by gRPC as UNKNOWN with the same text ("etcdserver: requested lease not found",
"election: not leader"). A client that gives up while waiting (cancel, deadline) has its key
deleted, as etcd does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message

from etcdpy import errors
from etcdpy.api.local_client import LocalClient
from etcdpy.call import CallContext
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.mvccpb.kv_pb2 import Event, KeyValue
from etcdpy.pb.v3electionpb import v3election_pb2 as epb
from etcdpy.pb.v3lockpb import v3lock_pb2 as lpb

log = structlog.get_logger(__name__)

# clientv3/concurrency's defaultSessionTTL: the lease a request with lease 0 gets.
SESSION_TTL_SECONDS = 60

_CREATE = pb.Compare.CREATE
_EQUAL = pb.Compare.EQUAL
_DELETE = Event.DELETE

R = TypeVar("R")


def prefix_end(prefix: bytes) -> bytes:
    """The end of the range of keys starting with ``prefix`` (clientv3's GetPrefixRangeEnd)."""
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes([prefix[i] + 1])
    return b"\x00"


def contender_key(prefix: bytes, lease: int) -> bytes:
    return prefix + b"%x" % lease  # Go's %x of the lease id


def _oldest(prefix: bytes) -> pb.RangeRequest:
    """The key of the prefix created first (WithFirstCreate)."""
    return pb.RangeRequest(
        key=prefix,
        range_end=prefix_end(prefix),
        sort_target=pb.RangeRequest.CREATE,
        sort_order=pb.RangeRequest.ASCEND,
        limit=1,
    )


def _newest_before(prefix: bytes, max_create_revision: int) -> pb.RangeRequest:
    """The key of the prefix created last, at or before ``max_create_revision``
    (WithLastCreate, WithMaxCreateRev)."""
    return pb.RangeRequest(
        key=prefix,
        range_end=prefix_end(prefix),
        sort_target=pb.RangeRequest.CREATE,
        sort_order=pb.RangeRequest.DESCEND,
        limit=1,
        max_create_revision=max_create_revision,
    )


def _created_at(key: bytes, revision: int) -> pb.Compare:
    return pb.Compare(target=_CREATE, result=_EQUAL, key=key, create_revision=revision)


def _put(key: bytes, value: bytes, lease: int) -> pb.RequestOp:
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, lease=lease))


def _get(request: pb.RangeRequest) -> pb.RequestOp:
    return pb.RequestOp(request_range=request)


class Recipes:
    """clientv3/concurrency's Mutex and Election, on a local client."""

    def __init__(self, client: LocalClient) -> None:
        self.client = client
        self._cleanups: set[asyncio.Future[object]] = set()  # running clean-ups, kept alive

    async def session_lease(self, lease: int) -> int:
        """The lease a request names, or a new one for lease 0 (NewSession, then Orphan)."""
        if lease == 0:
            return await self.client.grant(SESSION_TTL_SECONDS)
        return lease

    async def wait_deletes(self, prefix: bytes, max_create_revision: int) -> pb.ResponseHeader:
        """Waits until no key of the prefix has a create revision <= ``max_create_revision``."""
        client = self.client
        while True:
            resp = await client.range(_newest_before(prefix, max_create_revision))
            if not resp.kvs:
                return resp.header
            await self.wait_delete(resp.kvs[0].key, resp.header.revision)

    async def wait_delete(self, key: bytes, revision: int) -> None:
        with self.client.watch(key, None, revision) as watch:
            async for _, events in watch.batches():
                if any(event.type == _DELETE for event in events):
                    return

    async def cleanup(self, action: Awaitable[object]) -> None:
        """Runs ``action`` to its end even if the caller is cancelled meanwhile (etcd runs it
        with the client's context, not the request's); its errors are logged, not raised."""
        task: asyncio.Future[object] = asyncio.ensure_future(action)
        self._cleanups.add(task)
        task.add_done_callback(self._cleaned)
        with contextlib.suppress(Exception):
            await asyncio.shield(task)

    def _cleaned(self, task: asyncio.Future[object]) -> None:
        self._cleanups.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("concurrency: clean-up failed", error=str(task.exception()))

    # -- Mutex -------------------------------------------------------------------------------

    async def lock(self, name: bytes, lease: int) -> tuple[pb.ResponseHeader, bytes]:
        """Mutex.Lock: the header and the key once the lock is held."""
        lease = await self.session_lease(lease)
        prefix = name + b"/"
        key = contender_key(prefix, lease)
        owner = _get(_oldest(prefix))
        resp = await self.client.txn(
            pb.TxnRequest(
                compare=[_created_at(key, 0)],
                success=[_put(key, b"", lease), owner],
                failure=[_get(pb.RangeRequest(key=key)), owner],
            )
        )
        my_revision = resp.header.revision
        if not resp.succeeded:  # this lease is a contender already: its key is reused
            my_revision = resp.responses[0].response_range.kvs[0].create_revision
        holder = resp.responses[1].response_range.kvs
        if not holder or holder[0].create_revision == my_revision:
            return resp.header, key
        try:
            header = await self.wait_deletes(prefix, my_revision - 1)
        except BaseException:
            await self.cleanup(self.client.delete(key))  # Mutex.Unlock
            raise
        return header, key

    # -- Election ----------------------------------------------------------------------------

    async def campaign(self, name: bytes, lease: int, value: bytes) -> epb.CampaignResponse:
        """Election.Campaign: returns once this lease's key leads the election."""
        lease = await self.session_lease(lease)
        prefix = name + b"/"
        key = contender_key(prefix, lease)
        resp = await self.client.txn(
            pb.TxnRequest(
                compare=[_created_at(key, 0)],
                success=[_put(key, value, lease)],
                failure=[_get(pb.RangeRequest(key=key))],
            )
        )
        revision = resp.header.revision
        if not resp.succeeded:
            kv = resp.responses[0].response_range.kvs[0]
            revision = kv.create_revision
            if kv.value != value:
                try:
                    await self.proclaim(key, revision, lease, value)
                except errors.ElectionNotLeader:
                    raise  # etcd's Resign then has no key to delete
                except errors.EtcdError:
                    await self.cleanup(self.resign(key, revision))
                    raise
        try:
            await self.wait_deletes(prefix, revision - 1)
        except asyncio.CancelledError:
            await self.cleanup(self.resign(key, revision))
            raise
        leader = epb.LeaderKey(name=name, key=key, rev=revision, lease=lease)
        return epb.CampaignResponse(header=resp.header, leader=leader)

    async def proclaim(
        self, key: bytes, revision: int, lease: int, value: bytes
    ) -> pb.ResponseHeader:
        resp = await self.client.txn(
            pb.TxnRequest(compare=[_created_at(key, revision)], success=[_put(key, value, lease)])
        )
        if not resp.succeeded:
            raise errors.ElectionNotLeader()
        return resp.header

    async def resign(self, key: bytes, revision: int) -> pb.ResponseHeader:
        delete = pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key))
        resp = await self.client.txn(
            pb.TxnRequest(compare=[_created_at(key, revision)], success=[delete])
        )
        return resp.header

    async def leader(self, name: bytes) -> tuple[pb.ResponseHeader, KeyValue]:
        resp = await self.client.range(_oldest(name + b"/"))
        if not resp.kvs:
            raise errors.ElectionNoLeader()
        return resp.header, resp.kvs[0]

    async def observe(self, name: bytes) -> AsyncIterator[tuple[pb.ResponseHeader, KeyValue]]:
        """Election.Observe: the leader's key-value now (or once there is one), each new value
        it proclaims, then the same for the next leader once its key is deleted."""
        client = self.client
        prefix = name + b"/"
        while True:
            resp = await client.range(_oldest(prefix))
            if resp.kvs:
                header, kv = resp.header, resp.kvs[0]
            else:  # the first put under the prefix
                header, kv = await self._first_put(prefix, resp.header.revision)
            yield header, kv
            with client.watch(kv.key, None, header.revision + 1) as watch:
                deleted = False
                async for revision, events in watch.batches():
                    for event in events:
                        if event.type == _DELETE:
                            deleted = True
                            break
                        yield client.header(revision), event.kv
                    if deleted:
                        break

    async def _first_put(self, prefix: bytes, revision: int) -> tuple[pb.ResponseHeader, KeyValue]:
        with self.client.watch(prefix, prefix_end(prefix), revision) as watch:
            async for _, events in watch.batches():
                for event in events:
                    if event.type != _DELETE:
                        return self.client.header(event.kv.mod_revision), event.kv
        raise AssertionError("unreachable")  # batches only ends by raising


def _client_errors(
    handler: Callable[[Any, Any, CallContext], Awaitable[R]],
) -> Callable[[Any, Any, CallContext], Awaitable[R]]:
    """An error the recipes meet reaches the client as UNKNOWN with its text (the module's
    docstring)."""

    @functools.wraps(handler)
    async def call(self: Any, request: Any, context: CallContext) -> R:
        try:
            return await handler(self, request, context)
        except errors.EtcdError as exc:
            if exc.code is grpc.StatusCode.UNKNOWN:
                raise
            raise errors.EtcdError(exc.message) from None

    return call


class LockService:
    def __init__(self, recipes: Recipes) -> None:
        self._recipes = recipes

    @_client_errors
    async def Lock(self, request: lpb.LockRequest, context: CallContext) -> lpb.LockResponse:
        header, key = await self._recipes.lock(request.name, request.lease)
        return lpb.LockResponse(header=header, key=key)

    @_client_errors
    async def Unlock(self, request: lpb.UnlockRequest, context: CallContext) -> lpb.UnlockResponse:
        resp = await self._recipes.client.delete(request.key)
        return lpb.UnlockResponse(header=resp.header)


class ElectionService:
    def __init__(self, recipes: Recipes) -> None:
        self._recipes = recipes

    @_client_errors
    async def Campaign(
        self, request: epb.CampaignRequest, context: CallContext
    ) -> epb.CampaignResponse:
        return await self._recipes.campaign(request.name, request.lease, request.value)

    @_client_errors
    async def Proclaim(
        self, request: epb.ProclaimRequest, context: CallContext
    ) -> epb.ProclaimResponse:
        if not request.HasField("leader"):
            raise errors.MissingLeaderKey()
        leader = request.leader
        recipes = self._recipes
        lease = await recipes.session_lease(leader.lease)
        header = await recipes.proclaim(leader.key, leader.rev, lease, request.value)
        return epb.ProclaimResponse(header=header)

    @_client_errors
    async def Resign(self, request: epb.ResignRequest, context: CallContext) -> epb.ResignResponse:
        if not request.HasField("leader"):
            raise errors.MissingLeaderKey()
        leader = request.leader
        await self._recipes.session_lease(leader.lease)  # etcd's session: a lease for lease 0
        header = await self._recipes.resign(leader.key, leader.rev)
        return epb.ResignResponse(header=header)

    @_client_errors
    async def Leader(self, request: epb.LeaderRequest, context: CallContext) -> epb.LeaderResponse:
        header, kv = await self._recipes.leader(request.name)
        return epb.LeaderResponse(header=header, kv=kv)

    def stream_handler(
        self, method: MethodDescriptor, request_type: type[Message], serialize: Any
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if method.name != "Observe":  # pragma: no cover - Observe is the only stream here
            raise ValueError(method.name)
        return grpc.unary_stream_rpc_method_handler(self.Observe, response_serializer=serialize)

    async def Observe(self, data: bytes, context: CallContext) -> AsyncIterator[epb.LeaderResponse]:
        try:
            request = epb.LeaderRequest.FromString(data)
        except DecodeError as exc:
            await context.abort(
                grpc.StatusCode.INTERNAL, f"grpc: error unmarshalling request: {exc}"
            )
        # etcd's Observe ends the stream without an error when its observer meets one.
        with contextlib.suppress(errors.EtcdError):
            async for header, kv in self._recipes.observe(request.name):
                yield epb.LeaderResponse(header=header, kv=kv)
