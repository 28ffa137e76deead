"""The JSON gateway under /v3/ (etcd's grpc-gateway), for curl, Patroni and other HTTP clients.

Like etcd's, it is a gRPC client of this member's own gRPC server (over the private unix
socket), so every answer is the gRPC answer: the same validation, quota, errors and metrics.
The JSON mapping is protobuf's own (json_format): bytes as base64, 64-bit integers as strings,
proto field names, zero values left out, unknown fields ignored. Errors are grpc-gateway's: an
HTTP status derived from the gRPC code and {"error": ..., "message": ..., "code": ...}.

Streams (watch, lease keep-alive, snapshot) answer one JSON object per line, {"result": ...},
for as long as the client keeps the connection open.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from etcdpy.api.services import SERVICES
from etcdpy.server.http1 import HttpRequest, HttpResponse, Response, StreamingResponse, text_error

JSON = "application/json"

# etcd's google.api.http annotations: path -> (service, method) (etcdpy.api.services).
ROUTES: dict[str, tuple[str, str]] = {
    "/v3/kv/range": ("KV", "Range"),
    "/v3/kv/put": ("KV", "Put"),
    "/v3/kv/deleterange": ("KV", "DeleteRange"),
    "/v3/kv/txn": ("KV", "Txn"),
    "/v3/kv/compaction": ("KV", "Compact"),
    "/v3/watch": ("Watch", "Watch"),
    "/v3/lease/grant": ("Lease", "LeaseGrant"),
    "/v3/lease/revoke": ("Lease", "LeaseRevoke"),
    "/v3/kv/lease/revoke": ("Lease", "LeaseRevoke"),
    "/v3/lease/keepalive": ("Lease", "LeaseKeepAlive"),
    "/v3/lease/timetolive": ("Lease", "LeaseTimeToLive"),
    "/v3/kv/lease/timetolive": ("Lease", "LeaseTimeToLive"),
    "/v3/lease/leases": ("Lease", "LeaseLeases"),
    "/v3/kv/lease/leases": ("Lease", "LeaseLeases"),
    "/v3/cluster/member/add": ("Cluster", "MemberAdd"),
    "/v3/cluster/member/remove": ("Cluster", "MemberRemove"),
    "/v3/cluster/member/update": ("Cluster", "MemberUpdate"),
    "/v3/cluster/member/list": ("Cluster", "MemberList"),
    "/v3/cluster/member/promote": ("Cluster", "MemberPromote"),
    "/v3/maintenance/alarm": ("Maintenance", "Alarm"),
    "/v3/maintenance/status": ("Maintenance", "Status"),
    "/v3/maintenance/defragment": ("Maintenance", "Defragment"),
    # Hash and HashKV share this path in etcd's annotations; etcd 3.4 answers it with Hash.
    "/v3/maintenance/hash": ("Maintenance", "Hash"),
    "/v3/maintenance/snapshot": ("Maintenance", "Snapshot"),
    "/v3/maintenance/transfer-leadership": ("Maintenance", "MoveLeader"),
    "/v3/auth/enable": ("Auth", "AuthEnable"),
    "/v3/auth/disable": ("Auth", "AuthDisable"),
    "/v3/auth/authenticate": ("Auth", "Authenticate"),
    "/v3/auth/user/add": ("Auth", "UserAdd"),
    "/v3/auth/user/get": ("Auth", "UserGet"),
    "/v3/auth/user/list": ("Auth", "UserList"),
    "/v3/auth/user/delete": ("Auth", "UserDelete"),
    "/v3/auth/user/changepw": ("Auth", "UserChangePassword"),
    "/v3/auth/user/grant": ("Auth", "UserGrantRole"),
    "/v3/auth/user/revoke": ("Auth", "UserRevokeRole"),
    "/v3/auth/role/add": ("Auth", "RoleAdd"),
    "/v3/auth/role/get": ("Auth", "RoleGet"),
    "/v3/auth/role/list": ("Auth", "RoleList"),
    "/v3/auth/role/delete": ("Auth", "RoleDelete"),
    "/v3/auth/role/grant": ("Auth", "RoleGrantPermission"),
    "/v3/auth/role/revoke": ("Auth", "RoleRevokePermission"),
    # v3lock.proto and v3election.proto
    "/v3/lock/lock": ("Lock", "Lock"),
    "/v3/lock/unlock": ("Lock", "Unlock"),
    "/v3/election/campaign": ("Election", "Campaign"),
    "/v3/election/proclaim": ("Election", "Proclaim"),
    "/v3/election/leader": ("Election", "Leader"),
    "/v3/election/observe": ("Election", "Observe"),
    "/v3/election/resign": ("Election", "Resign"),
}

# grpc-gateway's runtime.HTTPStatusFromCode, by gRPC code number.
HTTP_STATUS = {
    0: 200,
    1: 408,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    6: 409,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    11: 400,
    12: 501,
    13: 500,
    14: 503,
    15: 500,
    16: 401,
}


@dataclass(frozen=True, slots=True)
class Route:
    path: str  # the gRPC method path, /etcdserverpb.KV/Range
    request_type: type[Message]
    response_type: type[Message]
    client_streaming: bool
    server_streaming: bool


def _routes() -> dict[str, Route]:
    out: dict[str, Route] = {}
    for http_path, (name, method) in ROUTES.items():
        service = SERVICES[name]
        desc = service.descriptor.methods_by_name[method]
        route = Route(
            path=service.path(method),
            request_type=service.request_type(desc),
            response_type=service.response_type(desc),
            client_streaming=desc.client_streaming,
            server_streaming=desc.server_streaming,
        )
        out[http_path] = route
        out[http_path.replace("/v3/", "/v3beta/", 1)] = route  # etcd 3.4 still serves v3beta
    return out


def to_json(message: Message) -> str:
    """Compact, as Go's jsonpb writes it."""
    as_dict = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return json.dumps(as_dict, separators=(",", ":"), ensure_ascii=False)


def error_response(code: int, message: str) -> HttpResponse:
    body = json.dumps({"error": message, "message": message, "code": code}, separators=(",", ":"))
    return HttpResponse(HTTP_STATUS.get(code, 500), body.encode(), JSON)


def _stream_error(code: int, message: str) -> bytes:
    status = HTTP_STATUS.get(code, 500)
    err = {"grpc_code": code, "http_code": status, "message": message}
    body = {"error": {**err, "http_status": _phrase(status)}}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def _phrase(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase


def parse_messages(body: bytes, request_type: type[Message]) -> list[Message]:
    """One JSON object, or several one after another (a stream's requests)."""
    text = body.decode("utf-8")
    decoder = json.JSONDecoder()
    messages: list[Message] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        obj, pos = decoder.raw_decode(text, pos)
        message = request_type()
        # etcd's gateway ignores fields it does not know.
        json_format.ParseDict(obj, message, ignore_unknown_fields=True)
        messages.append(message)
    return messages


class Gateway:
    def __init__(self, grpc_target: str) -> None:
        self._target = grpc_target
        self._routes = _routes()
        self._channel: grpc.aio.Channel | None = None

    def _get_channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self._target,
                options=[
                    ("grpc.max_receive_message_length", -1),
                    # Oversized requests go through, so the server answers them as it answers
                    # any client ("etcdserver: request is too large").
                    ("grpc.max_send_message_length", -1),
                ],
            )
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    async def __call__(self, request: HttpRequest) -> Response:
        route = self._routes.get(request.path)
        if route is None:
            return text_error(404, "Not Found")
        if request.method != "POST":
            return text_error(405, "Method Not Allowed")
        try:
            messages = parse_messages(request.body or b"{}", route.request_type)
        except (ValueError, json_format.ParseError, UnicodeDecodeError) as exc:
            return error_response(grpc.StatusCode.INVALID_ARGUMENT.value[0], str(exc))
        if not messages:
            messages = [route.request_type()]
        if route.client_streaming or route.server_streaming:
            return StreamingResponse(200, self._stream(route, messages), JSON)
        call = self._get_channel().unary_unary(
            route.path,
            request_serializer=_serialize,
            response_deserializer=route.response_type.FromString,
        )
        try:
            response = await call(messages[0])
        except grpc.aio.AioRpcError as err:
            return error_response(err.code().value[0], err.details() or "")
        return HttpResponse(200, to_json(response).encode(), JSON)

    async def _stream(self, route: Route, messages: list[Message]) -> AsyncIterator[bytes]:
        channel = self._get_channel()
        deserialize = route.response_type.FromString
        call: Any
        if route.client_streaming:
            stub = channel.stream_stream(
                route.path, request_serializer=_serialize, response_deserializer=deserialize
            )
            call = stub(_requests_then_wait(messages))
        else:
            stub_us = channel.unary_stream(
                route.path, request_serializer=_serialize, response_deserializer=deserialize
            )
            call = stub_us(messages[0])
        try:
            async for response in call:
                yield b'{"result":' + to_json(response).encode() + b"}\n"
        except grpc.aio.AioRpcError as err:
            yield _stream_error(err.code().value[0], err.details() or "")
        finally:
            call.cancel()


async def _requests_then_wait(messages: list[Message]) -> AsyncIterator[Message]:
    """The body's requests, then an open stream until the HTTP client goes away."""
    for message in messages:
        yield message
    await asyncio.Event().wait()


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()
