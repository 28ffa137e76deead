"""The pipeline's layers that need nothing of the member: codec, errors, the auth slot, and
the response header (etcdpy.api.pipeline gives their order)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from etcdpy import errors
from etcdpy.api.pipeline import Interceptor, Method, Unary, serialize
from etcdpy.api.services import SERVICES
from etcdpy.call import CallContext
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb

FillHeader = Callable[[pb.ResponseHeader], None]


class Codec(Interceptor):
    """Bytes in, bytes out: the request is parsed here rather than by a gRPC library, so that
    malformed protobuf gets grpc-go's answer (INTERNAL, "grpc: error unmarshalling request:
    ..."), as etcd gives it; the response leaves as bytes, which the metrics count."""

    def unary(self, method: Method, call: Unary) -> Unary:
        if not method.implemented:
            return call  # UNIMPLEMENTED, whatever the bytes
        from_string = method.request_type.FromString

        async def codec(data: bytes, context: CallContext) -> bytes:
            try:
                request = from_string(data)
            except DecodeError as exc:
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"grpc: error unmarshalling request: {exc}"
                )
            return serialize(await call(request, context))

        return codec


class MapErrors(Interceptor):
    """An EtcdError ends the call with etcd's code and message (etcd's togRPCError): the one
    place where domain errors become gRPC statuses."""

    def unary(self, method: Method, call: Unary) -> Unary:
        async def mapped(request: Any, context: CallContext) -> Any:
            try:
                return await call(request, context)
            except errors.EtcdError as exc:
                code, message = errors.to_grpc_status(exc)
                await context.abort(code, message)

        return mapped


class Auth(Interceptor):
    """The slot of issue 17's permission check (etcd's auth interceptors: a token from the
    call's metadata, then the user's permission for the request's keys). etcdpy has no auth
    yet, so every call passes and the slot hands each call back unchanged: it costs nothing."""


# Which responses get a header filled after the handler, and how (etcd's v3rpc servers):
# MEMBER: cluster id, member id, raft term, and the store's revision if the handler set none;
# CLUSTER: the same without a revision (etcd's ClusterServer.header: membership is not part of
# the key space). Not listed: Maintenance.Status (its handler fills it), Maintenance.Alarm
# (etcd leaves it empty), Lock and Election (their recipes give the header of their writes).
MEMBER = "member"
CLUSTER = "cluster"
HEADER_RULES: dict[tuple[str, str], str] = {
    **{("KV", m): MEMBER for m in ("Range", "Put", "DeleteRange", "Txn", "Compact")},
    **{
        ("Lease", m): MEMBER
        for m in ("LeaseGrant", "LeaseRevoke", "LeaseTimeToLive", "LeaseLeases")
    },
    **{("Maintenance", m): MEMBER for m in ("Hash", "HashKV", "Defragment", "MoveLeader")},
    # every Auth RPC: etcd's applier gives a header and its AuthServer fills it again
    **{("Auth", m.name): MEMBER for m in SERVICES["Auth"].descriptor.methods},
    **{
        ("Cluster", m): CLUSTER
        for m in ("MemberList", "MemberAdd", "MemberRemove", "MemberUpdate", "MemberPromote")
    },
}


class Header(Interceptor):
    """Fills the ResponseHeader of a unary response by its service's rule (HEADER_RULES), right
    as the handler returns (no await in between: the revision is the one the handler saw)."""

    def __init__(self, fill_member: FillHeader, fill_cluster: FillHeader) -> None:
        self._fills = {MEMBER: fill_member, CLUSTER: fill_cluster}

    def unary(self, method: Method, call: Unary) -> Unary:
        rule = HEADER_RULES.get(method.key)
        if rule is None or not method.implemented:
            return call
        fill = self._fills[rule]

        async def filled(request: Any, context: CallContext) -> Any:
            response = await call(request, context)
            fill(response.header)
            return response

        return filled
