"""The JSON gateway under /v3/ (etcd's grpc-gateway), for curl, Patroni and other HTTP clients.

It calls the member's handlers in process, through ``invoke`` and the same built handlers
its gRPC server runs (etcdpy.api.pipeline), so every answer is the gRPC answer: the same
validation, quota, learner guard, errors and metrics, without the gRPC client and connection
etcd's gateway goes through. (In front-end mode the gateway runs in the core: front-ends relay
HTTP to it.)
The JSON mapping is protobuf's own (json_format): bytes as base64, 64-bit integers as strings,
proto field names, zero values left out, unknown fields ignored. Errors are grpc-gateway's: an
HTTP status derived from the gRPC code and {"error": ..., "message": ..., "code": ...}.

Streams (watch, lease keep-alive, snapshot) answer one JSON object per line, {"result": ...}.
As grpc-gateway does, the body's requests are sent and then the stream is half-closed: a
keep-alive ends once its requests are answered, a watch goes on until the client leaves.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from etcdpy.api.services import SERVICES
from etcdpy.call import Handler, invoke
from etcdpy.clientport.http1 import (
    HttpRequest,
    HttpResponse,
    Response,
    StreamingResponse,
    text_error,
)
from etcdpy.h2grpc.context import RequestContext

JSON = "application/json"
# The peer a handler sees for a gateway call.
GATEWAY_PEER = "unix:gateway"
# grpc-go's status messages stop there (etcdpy.h2grpc.calls), as they did on the way back
# through a gRPC connection.
_MAX_STATUS_MESSAGE = 8192
# Responses of a stream waiting for the HTTP client: the handler waits beyond that.
_STREAM_BUFFER = 16

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
    """``handlers``: the member's built handlers by gRPC path (those its gRPC server serves);
    ``max_receive_bytes``: the gRPC server's message limit, which a request meets here too."""

    def __init__(self, handlers: Mapping[str, Handler], max_receive_bytes: int) -> None:
        self._handlers = handlers
        self._max_receive = max_receive_bytes
        self._routes = _routes()

    async def close(self) -> None:
        """Nothing to close: the calls are in process."""

    def _too_large(self, data: bytes) -> tuple[int, str] | None:
        # Oversized requests reach the server, which answers them as it answers any client.
        if len(data) > self._max_receive:
            code = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            return (
                code,
                f"grpc: received message larger than max ({len(data)} vs. {self._max_receive})",
            )
        return None

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
            return self._streaming(route, messages, request)
        try:
            messages = parse_messages(request.body or b"{}", route.request_type)
        except (ValueError, json_format.ParseError, UnicodeDecodeError) as exc:
            return error_response(grpc.StatusCode.INVALID_ARGUMENT.value[0], str(exc))
        if not messages:
            messages = [route.request_type()]
        if route.server_streaming:
            return self._streaming(route, messages, request)
        data = messages[0].SerializeToString()
        refused = self._too_large(data)
        if refused is not None:
            return error_response(*refused)
        context = _gateway_context(None, request)
        code, details, payload = await invoke(self._handlers[route.path], data, context)
        if code:
            return error_response(code, details[:_MAX_STATUS_MESSAGE])
        response = route.response_type.FromString(payload)
        return HttpResponse(200, to_json(response).encode(), JSON)

    def _streaming(
        self, route: Route, messages: list[Message], request: HttpRequest
    ) -> StreamingResponse:
        response = StreamingResponse(200, _no_chunks(), JSON)
        response.chunks = self._stream(route, messages, response, request)
        return response

    async def _stream(
        self,
        route: Route,
        messages: list[Message],
        response: StreamingResponse,
        http_request: HttpRequest,
    ) -> AsyncIterator[bytes]:
        handler = self._handlers[route.path]
        encoded = [message.SerializeToString() for message in messages]
        outcome: tuple[int, str, Any] | None = None
        for data in encoded:
            refused = self._too_large(data)
            if refused is not None:
                outcome = (*refused, None)
                break
        # The handler's messages wait here for the HTTP client (a few at most: a slow reader
        # slows its stream's handler, as a full HTTP/2 window does).
        queue: asyncio.Queue[bytes | tuple[int, str, Any]] = asyncio.Queue(_STREAM_BUFFER)
        serialize = handler.response_serializer

        async def write(message: Any) -> None:
            await queue.put(serialize(message) if serialize is not None else message)

        async def run() -> None:
            request: Any = (
                _requests(encoded, handler.request_deserializer)
                if route.client_streaming
                else encoded[0]
            )
            await queue.put(
                await invoke(handler, request, _gateway_context(write, http_request), route.path)
            )

        task = asyncio.get_running_loop().create_task(run()) if outcome is None else None
        parse = route.response_type.FromString
        sent = False
        try:
            while outcome is None:
                item = await queue.get()
                if isinstance(item, tuple):
                    outcome = item
                    break
                yield b'{"result":' + to_json(parse(item)).encode() + b"}\n"
                sent = True
            code, details, _ = outcome
            if code:
                if not sent:  # the head is not out yet: grpc-gateway's status for the code
                    response.status = HTTP_STATUS.get(code, 500)
                yield _stream_error(code, details[:_MAX_STATUS_MESSAGE])
        finally:
            if task is not None:
                task.cancel()  # nothing when it ended; else the HTTP client went away


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator with nothing in it


async def _requests(encoded: list[bytes], deserialize: Any) -> AsyncIterator[Any]:
    """The body's requests, as a stream's handler reads them; their end half-closes the call."""
    for data in encoded:
        yield deserialize(data) if deserialize is not None else data


def _gateway_context(write: Any, request: HttpRequest) -> RequestContext:
    """A call's context: its only metadata is the HTTP Authorization header, as grpc-gateway
    forwards it (the token of etcd's /v3/auth/authenticate); never a certificate's CN (etcd's
    fix for CVE-2018-16886: the gateway's own TLS identity is not the caller's)."""
    authorization = request.headers.get("authorization")
    headers = (
        []
        if authorization is None
        else [(b"authorization", authorization.encode("latin-1", "replace"))]
    )
    return RequestContext(headers, GATEWAY_PEER, None, write)
