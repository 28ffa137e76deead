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

from etcdpy.api.grpc_options import GRPC_OVERHEAD_BYTES
from etcdpy.api.watch_encode import ResponseEncoder
from etcdpy.call import CallContext
from etcdpy.mvcc.watcher import WatchStream
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
    ) -> None:
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
        recv = loop.create_task(self._recv_loop(stream, request_iterator))
        send = loop.create_task(self._send_loop(stream, context, wake, encoder))
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

    async def _recv_loop(self, stream: WatchStream, requests: AsyncIterator[bytes]) -> None:
        async for raw in requests:
            try:
                req = pb.WatchRequest.FromString(raw)
            except DecodeError as exc:
                raise _BadRequest(f"grpc: error unmarshalling request: {exc}") from None
            which = req.WhichOneof("request_union")
            if which == "create_request":
                _create(stream, req.create_request)
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
    ) -> None:
        write = context.write
        while True:
            items = stream.drain(SEND_BATCH)
            if not items:
                wake.clear()
                items = stream.drain(SEND_BATCH)
                if not items:
                    await wake.wait()
                    continue
            for r in items:
                for data in encoder.encode(r):
                    await write(data)


def _create(stream: WatchStream, c: pb.WatchCreateRequest) -> None:
    key = c.key or b"\x00"  # the smallest key
    end: bytes | None = c.range_end
    if not end:
        end = None  # one key
    elif end == b"\x00":
        end = b""  # every key >= key
    filters = set(c.filters)
    stream.watch(
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
