"""The client-port front: a connection that starts with the HTTP/2 preface is served by the gRPC
server in-process, anything else is answered as HTTP/1.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from etcdpy.clientport.http1 import HttpRequest, HttpResponse, Response
from etcdpy.clientport.sniffer import GRPC_PREFACE, ClientFront
from etcdpy.h2grpc.server import GrpcServer


async def hello(request: HttpRequest) -> Response:
    return HttpResponse(200, f"hello {request.path}".encode())


async def _echo(request: bytes, context: object) -> bytes:
    return request[::-1]


async def _scenario(tmp_path: Path) -> tuple[bytes, bytes]:
    grpc_server = GrpcServer(
        {"/test.Echo/Unary": grpc.unary_unary_rpc_method_handler(_echo)}, 1 << 20
    )
    front = ClientFront(hello, grpc_server)
    server = await front.listen("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            # grpc-stubs wrongly require the serializers (they default to None: raw bytes)
            echo = channel.unary_unary("/test.Echo/Unary")  # type: ignore[call-arg]
            answer = await echo(b"abc", timeout=5)

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(GRPC_PREFACE[:3])  # the decision waits for enough bytes
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b" * HTTP/2.0\r\n\r\nXX\r\n\r\n")  # a bad preface: GOAWAY, closed
        await writer.drain()
        await reader.read()
        writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        await writer.drain()
        http = await reader.read()
        writer.close()
    finally:
        await grpc_server.stop(0)
        await front.close()
    return answer, http


def test_grpc_is_served_and_http_is_served(tmp_path: Path) -> None:
    answer, http = asyncio.run(_scenario(tmp_path))
    assert answer == b"cba"
    assert http.startswith(b"HTTP/1.1 200 OK\r\n")
    assert http.endswith(b"hello /x")
