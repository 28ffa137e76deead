"""The Lease service (etcd's v3rpc/lease.go): grant, revoke, time-to-live, list, keep-alive.

LeaseKeepAlive is one bidirectional stream per client carrying the keep-alives of any number
of leases; each request is answered in order. A lease that is gone is answered with TTL 0
(the client then stops keeping it alive), not with an error that would end the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message

from etcdpy import errors
from etcdpy.call import CallContext
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.etcd_server import EtcdServer


class KeepAliveService:
    """LeaseKeepAlive alone, over a header filler and a renew function: the core's own, or a
    front-end's, whose renewals reach the core in batches (etcdpy.frontend.keepalive)."""

    def __init__(
        self,
        fill_header: Callable[[pb.ResponseHeader], None],
        renew: Callable[[int], Awaitable[int]],
    ) -> None:
        self._fill_header = fill_header
        self._renew = renew  # the lease's TTL after a keep-alive; LeaseNotFound once gone
        self._request_type: type[Message] = pb.LeaseKeepAliveRequest

    async def LeaseKeepAlive(
        self, requests: AsyncIterator[bytes], context: CallContext
    ) -> AsyncIterator[pb.LeaseKeepAliveResponse]:
        request_type = self._request_type
        async for data in requests:
            try:
                req: Any = request_type.FromString(data)
            except DecodeError as exc:
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"grpc: error unmarshalling request: {exc}"
                )
            yield await self.keep_alive_once(req, context)

    async def keep_alive_once(
        self, req: pb.LeaseKeepAliveRequest, context: CallContext
    ) -> pb.LeaseKeepAliveResponse:
        """Answers one message of a keep-alive stream."""
        # The header is taken before the renew, so its revision is never past the
        # revision at which the lease might be revoked (as etcd does).
        resp = pb.LeaseKeepAliveResponse(ID=req.ID)
        self._fill_header(resp.header)
        try:
            resp.TTL = await self._renew(req.ID)
        except errors.LeaseNotFound:
            resp.TTL = 0
        except errors.EtcdError as exc:
            code, message = errors.to_grpc_status(exc)
            await context.abort(code, message)
        return resp

    def stream_handler(
        self,
        method: MethodDescriptor,
        request_type: type[Message],
        serialize: Callable[[Message], bytes],
    ) -> grpc.RpcMethodHandler[Any, Any]:
        self._request_type = request_type
        return grpc.stream_stream_rpc_method_handler(
            self.LeaseKeepAlive, response_serializer=serialize
        )


class LeaseService(KeepAliveService):
    def __init__(self, server: EtcdServer) -> None:
        super().__init__(server.fill_header, server.lease_renew)
        self._server = server

    async def LeaseGrant(
        self, request: pb.LeaseGrantRequest, context: CallContext
    ) -> pb.LeaseGrantResponse:
        return await self._server.lease_grant(request)

    async def LeaseRevoke(
        self, request: pb.LeaseRevokeRequest, context: CallContext
    ) -> pb.LeaseRevokeResponse:
        return await self._server.lease_revoke(request)

    async def LeaseTimeToLive(
        self, request: pb.LeaseTimeToLiveRequest, context: CallContext
    ) -> pb.LeaseTimeToLiveResponse:
        return await self._server.lease_time_to_live(request)

    async def LeaseLeases(
        self, request: pb.LeaseLeasesRequest, context: CallContext
    ) -> pb.LeaseLeasesResponse:
        return self._server.lease_leases()
