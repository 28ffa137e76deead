"""The Watch service: one bidirectional gRPC stream carries many watchers (etcd's v3rpc/watch.go).

Each stream gets a WatchStream from the server. The receive side turns create, cancel and
progress requests into calls on it; a sender task drains its queue, encodes and writes. The
store only ever appends to that bounded queue, so a client that stops reading slows nothing
but itself: its watchers are parked and caught up from history when it reads again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message

from etcdpy import errors
from etcdpy.api.auth_guard import caller_of
from etcdpy.api.grpc_options import GRPC_OVERHEAD_BYTES
from etcdpy.api.watch_encode import ResponseEncoder
from etcdpy.auth.info import AuthChecker, AuthInfo
from etcdpy.call import CallContext
from etcdpy.mvcc.watcher import WatchResponse, WatchStream
from etcdpy.observability.metrics import GRPC_CODE_NAMES
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.etcd_server import EtcdServer

# etcd's minWatchProgressInterval: a shorter progress notify interval is raised to it.
MIN_PROGRESS_INTERVAL_SECONDS = 0.1
# Responses taken from the queue per round of the sender.
SEND_BATCH = 1024
# The receive side pauses while this many responses wait (a client that sends requests but
# does not read the answers), as etcd's recvLoop blocks on its full control channel.
RECV_PAUSE_QUEUE = 1024

_NOPUT = pb.WatchCreateRequest.NOPUT
_NODELETE = pb.WatchCreateRequest.NODELETE
# With auth on, how long a quiet stream may go before its watchers' permissions are looked at
# again (a stream with events is looked at before each send).
AUTH_RECHECK_SECONDS = 1.0
# etcd's cancel reasons for a watcher auth refuses (v3rpc/watch.go recvLoop); any other error
# of the check is told as "permission denied".
_TOLD_AS_IS = (errors.InvalidAuthToken, errors.AuthOldRevision, errors.UserEmpty)


class _BadRequest(Exception):
    pass


class WatchService:
    """Runs over any watchable store: the core's (``for_server``) or a front-end's replica."""

    def __init__(
        self,
        watch_stream: Callable[[Callable[[], None]], WatchStream],
        header: Callable[[], tuple[int, int, int]],
        progress_interval: float,
        max_request_bytes: int,
        auth: AuthChecker | None = None,
    ) -> None:
        self._auth = auth  # None: watchers are not checked (a pipeline without auth)
        self._watch_stream = watch_stream  # a new stream; its argument is called when ready
        self._header = header  # (cluster id, member id, raft term)
        self._progress_interval = max(progress_interval, MIN_PROGRESS_INTERVAL_SECONDS)
        self._max_bytes = max_request_bytes + GRPC_OVERHEAD_BYTES

    @classmethod
    def for_server(cls, server: EtcdServer) -> WatchService:
        def header() -> tuple[int, int, int]:
            return server.cluster.cluster_id, server.member_id, server.raft_term

        config = server.config
        return cls(
            server.watch_stream,
            header,
            config.experimental_watch_progress_notify_interval,
            config.max_request_bytes,
            server.auth,
        )

    async def Watch(self, request_iterator: AsyncIterator[bytes], context: CallContext) -> None:
        await self._serve(request_iterator, context)

    def stream_handler(
        self, method: MethodDescriptor, request_type: type[Message], serialize: Any
    ) -> grpc.RpcMethodHandler[Any, Any]:
        # Requests come in as bytes (parsed here); responses go out already encoded.
        return grpc.stream_stream_rpc_method_handler(self._serve)

    async def _serve(self, request_iterator: AsyncIterator[bytes], context: CallContext) -> None:
        wake = asyncio.Event()
        stream = self._watch_stream(wake.set)
        encoder = ResponseEncoder(self._header, self._max_bytes)
        loop = asyncio.get_running_loop()
        ticker: asyncio.TimerHandle | None = None

        def tick() -> None:
            nonlocal ticker
            stream.progress_tick()
            ticker = loop.call_later(self._progress_interval, tick)

        ticker = loop.call_later(self._progress_interval, tick)
        owners = _Owners(self._auth, context)
        recv = loop.create_task(self._recv_loop(stream, request_iterator, owners))
        send = loop.create_task(self._send_loop(stream, context, wake, encoder, owners))
        try:
            done, _ = await asyncio.wait({recv, send}, return_when=asyncio.FIRST_EXCEPTION)
            if recv in done:
                exc = recv.exception()
                if isinstance(exc, _BadRequest):
                    await context.abort(grpc.StatusCode.INTERNAL, str(exc))
                if exc is None:
                    await send  # the client closed its side: keep sending until it goes
            if send in done:
                send.result()
        finally:
            if ticker is not None:
                ticker.cancel()
            for task in (recv, send):
                task.cancel()
            for task in (recv, send):
                with contextlib.suppress(BaseException):
                    await task
            stream.close()

    async def _recv_loop(
        self, stream: WatchStream, requests: AsyncIterator[bytes], owners: _Owners
    ) -> None:
        async for raw in requests:
            try:
                req = pb.WatchRequest.FromString(raw)
            except DecodeError as exc:
                raise _BadRequest(f"grpc: error unmarshalling request: {exc}") from None
            which = req.WhichOneof("request_union")
            if which == "create_request":
                create = req.create_request
                refused, owner = owners.permit(create)
                if refused:
                    stream.refuse(refused)
                else:
                    owners.add(_create(stream, create), owner)
            elif which == "cancel_request":
                stream.cancel(req.cancel_request.watch_id)
            elif which == "progress_request":
                stream.request_progress()
            while len(stream) >= RECV_PAUSE_QUEUE and not stream.closed:
                await asyncio.sleep(0.01)

    async def _send_loop(
        self,
        stream: WatchStream,
        context: CallContext,
        wake: asyncio.Event,
        encoder: ResponseEncoder,
        owners: _Owners,
    ) -> None:
        write = context.write
        while True:
            items = stream.drain(SEND_BATCH)
            if not items:
                wake.clear()
                items = stream.drain(SEND_BATCH)
                if not items:
                    if owners.checking:
                        # Revocations must reach a quiet stream too: look again now and then.
                        # Woken, the loop drains first: what came is checked with it (a
                        # recheck here would queue the cancel behind an event it must drop).
                        try:
                            await asyncio.wait_for(wake.wait(), AUTH_RECHECK_SECONDS)
                        except TimeoutError:
                            owners.recheck(stream)
                    else:
                        await wake.wait()
                    continue
            if owners.checking:
                items = owners.recheck(stream, items)
            for r in items:
                for data in encoder.encode(r):
                    await write(data)


def _create(stream: WatchStream, c: pb.WatchCreateRequest) -> int:
    key = c.key or b"\x00"  # the smallest key
    end: bytes | None = c.range_end
    if not end:
        end = None  # one key
    elif end == b"\x00":
        end = b""  # every key >= key
    filters = set(c.filters)
    return stream.watch(
        key,
        end,
        start_rev=c.start_revision,
        watch_id=c.watch_id,
        prev_kv=c.prev_kv,
        no_put=_NOPUT in filters,
        no_delete=_NODELETE in filters,
        progress_notify=c.progress_notify,
        fragment=c.fragment,
    )


def _cancel_reason(exc: errors.EtcdError) -> str:
    """As etcd words it: the text of its rpctypes gRPC error, e.g. "rpc error: code =
    PermissionDenied desc = etcdserver: permission denied"."""
    told = exc if isinstance(exc, _TOLD_AS_IS) else errors.PermissionDenied()
    code, message = errors.to_grpc_status(told)
    return f"rpc error: code = {GRPC_CODE_NAMES[code.value[0]]} desc = {message}"


class _Owners:
    """Who created each watcher of one stream, so that auth can be asked again when its
    revision moves (etcd checks a watcher only when it is created; a revoked permission
    stops ours too, with the reason etcd gives at creation)."""

    __slots__ = ("_auth", "_context", "_owners", "_seen")

    def __init__(self, auth: AuthChecker | None, context: CallContext) -> None:
        self._auth = auth
        self._context = context
        self._owners: dict[int, str] = {}  # watch id -> user name ("" for nobody)
        self._seen = auth.revision if auth is not None else 0

    @property
    def checking(self) -> bool:
        auth = self._auth
        return auth is not None and (auth.enabled or auth.revision != self._seen)

    def permit(self, create: pb.WatchCreateRequest) -> tuple[str, str]:
        """(why a create request is refused or "", the user it runs as)."""
        auth = self._auth
        if auth is None or not auth.enabled:
            return "", ""
        try:
            info = caller_of(auth, self._context)
            auth.check_range(info, create.key or b"\x00", create.range_end)
        except errors.EtcdError as exc:
            return _cancel_reason(exc), ""
        return "", info.username if info is not None else ""

    def add(self, watch_id: int, owner: str) -> None:
        if watch_id >= 0 and self._auth is not None:
            self._owners[watch_id] = owner

    def recheck(
        self, stream: WatchStream, items: list[WatchResponse] | None = None
    ) -> list[WatchResponse]:
        """Cancels the watchers whose owner may no longer read their range, once per move of
        the auth revision; ``items`` without the responses of the watchers it canceled."""
        auth = self._auth
        kept = items if items is not None else []
        if auth is None or auth.revision == self._seen:
            return kept
        self._seen = revision = auth.revision
        canceled: set[int] = set()
        for watch_id, watcher in list(stream.watchers.items()):
            owner = self._owners.get(watch_id, "")
            info = AuthInfo(owner, revision) if owner else None
            end = b"" if watcher.end is None else watcher.end or b"\x00"
            try:
                auth.check_range(info, watcher.key, end)
            except errors.EtcdError as exc:
                canceled.add(watch_id)
                self._owners.pop(watch_id, None)
                stream.cancel(watch_id, _cancel_reason(exc))
        if not canceled:
            return kept
        return [r for r in kept if r.watch_id not in canceled or r.canceled]
