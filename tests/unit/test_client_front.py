"""The client-port front: the HTTP/2 preface is relayed byte for byte to the gRPC socket,
anything else is answered as HTTP/1.1 in-process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from etcdpy.server.client_front import GRPC_PREFACE, ClientFront
from etcdpy.server.http1 import HttpRequest, HttpResponse, Response


async def hello(request: HttpRequest) -> Response:
    return HttpResponse(200, f"hello {request.path}".encode())


async def _scenario(tmp_path: Path) -> tuple[bytes, bytes, bytes]:
    sock = str(tmp_path / "up.sock")
    seen = bytearray()

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            seen.extend(data)
            writer.write(data.upper())  # an "answer" the relay must carry back unchanged
            await writer.drain()
        writer.close()

    up = await asyncio.start_unix_server(upstream, sock)
    front = ClientFront(hello, sock)
    server = await front.listen("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = GRPC_PREFACE + b"frames" * 1000
        writer.write(payload[:3])  # the decision waits for enough bytes
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(payload[3:])
        await writer.drain()
        relayed = await reader.readexactly(len(payload))
        writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        await writer.drain()
        http = await reader.read()
        writer.close()
    finally:
        await front.close()
        up.close()
    return relayed, bytes(seen), http


def test_preface_is_relayed_and_http_is_served(tmp_path: Path) -> None:
    relayed, seen, http = asyncio.run(_scenario(tmp_path))
    payload = GRPC_PREFACE + b"frames" * 1000
    assert seen == payload
    assert relayed == payload.upper()
    assert http.startswith(b"HTTP/1.1 200 OK\r\n")
    assert http.endswith(b"hello /x")
