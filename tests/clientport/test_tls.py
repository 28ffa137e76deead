"""The client port over TLS, in process: gRPC (ALPN h2) and HTTP/1.1 on one TLS listener, the
client certificate's CN in each gRPC call's context, and the connections etcd refuses (no client
certificate, another CA, a revoked one, plain text to the TLS port, TLS to a plain port), after
each of which the port still serves."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from etcdpy.call import CallContext
from etcdpy.clientport.http1 import HttpRequest, HttpResponse, Response
from etcdpy.clientport.sniffer import ClientFront
from etcdpy.clientport.tls import ClientTLS
from etcdpy.h2grpc.server import GrpcServer
from etcdpy.tls.info import TLSInfo
from tests.tls_certs import MemberCerts, write_member_certs

# What a gRPC client reports when it cannot connect (it retries until the deadline under load).
_CONNECTION_FAILED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def _hello(request: HttpRequest) -> Response:
    return HttpResponse(200, f"hello {request.path}".encode())


async def _whoami(request: bytes, context: CallContext) -> bytes:
    return repr(context.client_cert_cn()).encode()


class Port:
    def __init__(self, tmp_path: Path, **info: Any) -> None:
        self.ca = trustme.CA()
        self.server = write_member_certs(self.ca, tmp_path, "server")
        self.alice = write_member_certs(self.ca, tmp_path, "alice", common_name="alice")
        self.info = TLSInfo(str(self.server.cert), str(self.server.key), **info)
        self.grpc = GrpcServer(
            {"/test.Who/Am": grpc.unary_unary_rpc_method_handler(_whoami)}, 1 << 20
        )
        self.front = ClientFront(_hello, self.grpc)
        self.port = 0

    async def __aenter__(self) -> Port:
        server = await self.front.listen("127.0.0.1", 0, ClientTLS(self.info))
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.grpc.stop(0)
        await self.front.close()

    async def whoami(self, client: MemberCerts | None) -> str:
        key = client.key.read_bytes() if client else None
        chain = client.cert.read_bytes() if client else None
        creds = grpc.ssl_channel_credentials(self.server.ca.read_bytes(), key, chain)
        async with grpc.aio.secure_channel(f"127.0.0.1:{self.port}", creds) as channel:
            call = channel.unary_unary("/test.Who/Am")  # type: ignore[call-arg]
            return bytes(await call(b"", timeout=5)).decode()

    async def http(self, client: MemberCerts | None) -> bytes:
        ctx = ssl.create_default_context(cafile=str(self.server.ca))
        if client is not None:
            ctx.load_cert_chain(client.cert, client.key)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=ctx)
        writer.write(b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
        return answer


def test_grpc_and_http_share_the_tls_port_and_calls_carry_the_cn(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Port(tmp_path, trusted_ca_file="", client_cert_auth=False) as port:
            assert await port.whoami(None) == "None"  # no client certificate asked
            assert (await port.http(None)).startswith(b"HTTP/1.1 200 OK\r\n")
        ca_file = str(tmp_path / "server-ca.pem")
        async with Port(tmp_path, trusted_ca_file=ca_file, client_cert_auth=True) as port:
            assert await port.whoami(port.alice) == "'alice'"
            answer = await port.http(port.alice)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"hello /health")

    asyncio.run(scenario())


def _revoke(ca: trustme.CA, cert_path: Path, crl_path: Path) -> None:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    now = datetime.datetime.now(datetime.UTC)
    revoked = x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + datetime.timedelta(days=1))
        .add_revoked_certificate(revoked.revocation_date(now).build())
    )
    crl = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))


def test_refused_clients_and_the_port_keeps_serving(tmp_path: Path) -> None:
    crl = tmp_path / "crl.pem"

    async def scenario() -> None:
        port = Port(tmp_path, client_cert_auth=True, crl_file=str(crl))
        port.info = TLSInfo(
            port.info.cert_file,
            port.info.key_file,
            str(port.server.ca),
            client_cert_auth=True,
            crl_file=str(crl),
        )
        stranger = write_member_certs(trustme.CA(), tmp_path, "stranger", common_name="mallory")
        revoked = write_member_certs(port.ca, tmp_path, "revoked", common_name="eve")
        _revoke(port.ca, revoked.cert, crl)
        async with port:
            for client in (None, stranger, revoked):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await port.whoami(client)
                assert info.value.code() in _CONNECTION_FAILED
                with pytest.raises((ssl.SSLError, ConnectionError)):
                    answer = await port.http(client)
                    assert answer == b""  # closed after the handshake (the CRL check)
                    raise ConnectionError("closed")
            # plain text to the TLS port: closed, no answer (as etcd)
            reader, writer = await asyncio.open_connection("127.0.0.1", port.port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            # gRPC in plain text to the TLS port: a connection error
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port.port}") as channel:
                call = channel.unary_unary("/test.Who/Am")  # type: ignore[call-arg]
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await call(b"", timeout=2)
                assert failed.value.code() in _CONNECTION_FAILED
            assert await port.whoami(port.alice) == "'alice'"  # still serving

    asyncio.run(scenario())


def test_tls_to_a_plain_port_fails_the_handshake_and_the_port_keeps_serving() -> None:
    async def scenario() -> None:
        grpc_server = GrpcServer({}, 1 << 20)
        front = ClientFront(_hello, grpc_server)
        server = await front.listen("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            ctx = ssl.create_default_context()
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), 5)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 200 OK\r\n")
            writer.close()
        finally:
            await grpc_server.stop(0)
            await front.close()

    asyncio.run(scenario())
