"""The JSON gateway under /v3/ (etcd's grpc-gateway), for curl, Patroni and other HTTP clients.

Like etcd's, it is a gRPC client of this member's own gRPC server (over the private unix
socket), so every answer is the gRPC answer: the same validation, quota, errors and metrics.
The JSON mapping is protobuf's own (json_format): bytes as base64, 64-bit integers as strings,
proto field names, zero values left out, unknown fields ignored. Errors are grpc-gateway's: an
HTTP status derived from the gRPC code and {"error": ..., "message": ..., "code": ...}.

Streams (watch, lease keep-alive, snapshot) answer one JSON object per line, {"result": ...}.
As grpc-gateway does, the body's requests are sent and then the stream is half-closed: a
keep-alive ends once its requests are answered, a watch goes on until the client leaves.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from etcdpy.api.services import SERVICES
from etcdpy.clientport.http1 import (
    HttpRequest,
    HttpResponse,
    Response,
    StreamingResponse,
    text_error,
)

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
    """One JSON object, or several one after another (a stream's requests); raises on the
    first that does not parse."""
    messages, error = parse_stream(body, request_type)
    if error is not None:
        raise error
    return messages


def parse_stream(
    body: bytes, request_type: type[Message]
) -> tuple[list[Message], Exception | None]:
    """A client stream's requests as grpc-gateway's decoder reads them, one JSON value at a
    time: the messages before the first that does not parse, and that one's error."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], exc
    decoder = json.JSONDecoder()
    messages: list[Message] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return messages, None
        try:
            obj, pos = decoder.raw_decode(text, pos)
            message = request_type()
            # etcd's gateway (Go's jsonpb, AllowUnknownFields) ignores fields it does not know.
            json_format.ParseDict(obj, message, ignore_unknown_fields=True)
        except (ValueError, json_format.ParseError) as exc:
            return messages, exc
        messages.append(message)


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
        if route.client_streaming:
            # grpc-gateway sends the body's messages, then half-closes the stream (CloseSend):
            # LeaseKeepAlive then ends once it has answered them; a Watch goes on until the
            # client leaves. A first message that does not parse is an error of its own kind
            # (not a status: Unknown, 500); a later one ends the requests there.
            messages, error = parse_stream(request.body, route.request_type)
            if error is not None and not messages:
                return error_response(grpc.StatusCode.UNKNOWN.value[0], str(error))
            return self._streaming(route, messages)
        try:
            messages = parse_messages(request.body or b"{}", route.request_type)
        except (ValueError, json_format.ParseError, UnicodeDecodeError) as exc:
            return error_response(grpc.StatusCode.INVALID_ARGUMENT.value[0], str(exc))
        if not messages:
            messages = [route.request_type()]
        if route.server_streaming:
            return self._streaming(route, messages)
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

    def _streaming(self, route: Route, messages: list[Message]) -> StreamingResponse:
        response = StreamingResponse(200, _no_chunks(), JSON)
        response.chunks = self._stream(route, messages, response)
        return response

    async def _stream(
        self, route: Route, messages: list[Message], response: StreamingResponse
    ) -> AsyncIterator[bytes]:
        channel = self._get_channel()
        deserialize = route.response_type.FromString
        call: Any
        if route.client_streaming:
            stub = channel.stream_stream(
                route.path, request_serializer=_serialize, response_deserializer=deserialize
            )
            call = stub(_requests(messages))
        else:
            stub_us = channel.unary_stream(
                route.path, request_serializer=_serialize, response_deserializer=deserialize
            )
            call = stub_us(messages[0])
        sent = False
        try:
            async for answer in call:
                yield b'{"result":' + to_json(answer).encode() + b"}\n"
                sent = True
        except grpc.aio.AioRpcError as err:
            code = err.code().value[0]
            if not sent:  # the head is not out yet: grpc-gateway's status for the code
                response.status = HTTP_STATUS.get(code, 500)
            yield _stream_error(code, err.details() or "")
        finally:
            call.cancel()


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator with nothing in it


async def _requests(messages: list[Message]) -> AsyncIterator[Message]:
    """The body's requests; the end of the iterator half-closes the call."""
    for message in messages:
        yield message


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()
