"""The caller's identity on the core link (issue 17): the identity block's format, and a core
handler that sees the ``token``/``authorization`` metadata and the certificate name its
front-end's client came with, over a real unix socket, for unary calls (counted and uncounted)
and both kinds of stream."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdpy.call import CallContext
from etcdpy.corelink.client import CoreLinkClient, caller_identity
from etcdpy.corelink.core import CoreLinkServer
from etcdpy.corelink.wire import (
    CERT_CN_FIELD,
    IDENTIFIED,
    IDENTITY_ENTRY,
    IDENTITY_LENGTH,
    METHOD_NUMBER,
    REQUEST_HEADER,
    STREAM_MESSAGE,
    UNCOUNTED,
    Identity,
    RecordReader,
    encode_identity,
    encode_request,
    split_identity,
)
from etcdpy.h2grpc.context import RequestContext

PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
WATCH = "/etcdserverpb.Watch/Watch"
SNAPSHOT = "/etcdserverpb.Maintenance/Snapshot"
INTERNAL = grpc.StatusCode.INTERNAL.value[0]

# What a client's HTTP/2 headers look like in a front-end (h2grpc's RequestContext).
_CLIENT_HEADERS = [
    (b":method", b"POST"),
    (b":path", b"/etcdserverpb.KV/Put"),
    (b"te", b"trailers"),
    (b"content-type", b"application/grpc"),
    (b"user-agent", b"grpc-go/1.26.0"),
]


def _block(*entries: tuple[int, bytes]) -> bytes:
    body = b"".join(IDENTITY_ENTRY.pack(field, len(value)) + value for field, value in entries)
    return IDENTITY_LENGTH.pack(len(body)) + body


# -- the format -------------------------------------------------------------------------------


def test_a_call_without_auth_metadata_or_certificate_crosses_as_before() -> None:
    assert encode_identity([("user-agent", "x"), ("grpc-timeout", "1S")], None) == b""
    assert encode_request(5, 3, b"req", b"") == encode_request(5, 3, b"req")
    assert list(RecordReader(REQUEST_HEADER).feed(encode_request(5, 3, b"req"))) == [(5, 3, b"req")]


def test_only_auth_metadata_and_the_certificate_name_cross_in_order() -> None:
    metadata = [
        ("user-agent", "etcdctl"),
        ("token", "abc.def"),
        ("x-secret", "not for the core"),
        ("authorization", "Bearer tok"),
        ("token", "second"),
    ]
    block = encode_identity(metadata, "client-cn")
    identity, request = split_identity(block + b"request bytes")
    assert request == b"request bytes"
    assert identity == Identity(
        (("token", "abc.def"), ("authorization", "Bearer tok"), ("token", "second")), "client-cn"
    )


@pytest.mark.parametrize("cert_cn", ["", "root", "üser ✓"])
def test_a_certificate_name_alone_crosses_even_when_empty(cert_cn: str) -> None:
    identity, request = split_identity(encode_identity([], cert_cn) + b"")
    assert identity == Identity((), cert_cn) and request == b""


def test_header_values_h2grpc_decoded_as_latin1_come_out_the_same() -> None:
    value = "t\xe9\xff-\x80"  # bytes a client sent, as h2grpc's latin-1 decoding hands them out
    identity, _ = split_identity(encode_identity([("token", value)], None))
    assert identity.metadata == (("token", value),)


def test_the_identified_kind_and_the_block_precede_the_payload() -> None:
    block = encode_identity([("token", "t")], None)
    record = encode_request(9, UNCOUNTED + 4, b"payload", block)
    [(call_id, kind, payload)] = RecordReader(REQUEST_HEADER).feed(record)
    assert (call_id, kind) == (9, UNCOUNTED + 4 + IDENTIFIED)
    assert split_identity(payload) == (Identity((("token", "t"),), None), b"payload")


@given(
    st.lists(st.tuples(st.sampled_from(["token", "authorization", "other"]), st.text())),
    st.none() | st.text(),
    st.binary(),
)
def test_identity_round_trips(metadata: list[tuple[str, str]], cn: str | None, rest: bytes) -> None:
    block = encode_identity(metadata, cn)
    wanted = tuple((name, value) for name, value in metadata if name != "other")
    if not wanted and cn is None:
        assert block == b""
        return
    assert split_identity(block + rest) == (Identity(wanted, cn), rest)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x01\x00",  # the block's length cut short
        IDENTITY_LENGTH.pack(100) + b"short",  # a block longer than its record
        IDENTITY_LENGTH.pack(2) + b"\x01\x00",  # an entry cut short
        IDENTITY_LENGTH.pack(IDENTITY_ENTRY.size + 1) + IDENTITY_ENTRY.pack(1, 9) + b"x",  # value
        _block((7, b"what")),  # an unknown field
        _block((1, b"\xff\xfe")),  # not UTF-8
        _block((CERT_CN_FIELD, b"a"), (CERT_CN_FIELD, b"b")),  # two names
    ],
)
def test_a_malformed_block_is_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        split_identity(payload)


@given(st.binary(max_size=64))
def test_any_bytes_parse_or_raise_value_error(payload: bytes) -> None:
    try:
        identity, rest = split_identity(payload)
    except ValueError:
        return
    assert len(rest) <= len(payload) and isinstance(identity, Identity)


def test_caller_identity_reads_a_front_ends_request_context() -> None:
    plain = RequestContext(_CLIENT_HEADERS, "ipv4:127.0.0.1:1", None, None)
    assert caller_identity(plain) == b""
    headers = [*_CLIENT_HEADERS, (b"token", b"tok"), (b"authorization", b"jwt")]
    context = RequestContext(headers, "ipv4:127.0.0.1:1", None, None, cert_cn="cn")
    identity, _ = split_identity(caller_identity(context))
    assert identity == Identity((("token", "tok"), ("authorization", "jwt")), "cn")
    swagger = RequestContext([*_CLIENT_HEADERS, (b"authorization", b"jwt")], "ipv4:1", None, None)
    assert split_identity(caller_identity(swagger))[0] == Identity(
        (("authorization", "jwt"),), None
    )
    cn_only = RequestContext(_CLIENT_HEADERS, "ipv4:1", None, None, cert_cn="cn")
    assert split_identity(caller_identity(cn_only))[0] == Identity((), "cn")


# -- the core's handlers see the caller ---------------------------------------------------------

Seen = list[tuple[str, tuple[Any, ...], str | None]]


def _recording_handlers(seen: Seen) -> dict[str, Any]:
    def record(name: str, context: CallContext) -> None:
        seen.append((name, tuple(context.invocation_metadata()), context.client_cert_cn()))

    async def put(request: bytes, context: CallContext) -> bytes:
        record("put", context)
        return b"put:" + request

    async def range_(request: bytes, context: CallContext) -> bytes:
        record("range", context)
        return b"range:" + request

    async def snapshot(request: bytes, context: CallContext) -> AsyncIterator[bytes]:
        record("snapshot", context)
        yield b"chunk of " + request

    async def watch(requests: AsyncIterator[bytes], context: CallContext) -> None:
        record("watch", context)
        async for request in requests:
            await context.write(b"echo " + request)

    return {
        PUT: grpc.unary_unary_rpc_method_handler(put),
        RANGE: grpc.unary_unary_rpc_method_handler(range_),
        SNAPSHOT: grpc.unary_stream_rpc_method_handler(snapshot),
        WATCH: grpc.stream_stream_rpc_method_handler(watch),
    }


async def _with_link(seen: Seen, scenario: Any) -> None:
    handlers = _recording_handlers(seen)
    server = CoreLinkServer(handlers, lambda _: None, uncounted={RANGE: handlers[RANGE]})
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "link.sock")
        await server.listen(path)
        client = await CoreLinkClient.connect(path, lambda: None)
        try:
            await asyncio.wait_for(scenario(client), 10)
        finally:
            client.close()
            await server.close()


def test_the_core_sees_each_calls_token_and_certificate_name() -> None:
    seen: Seen = []
    token = encode_identity([("token", "alice-token")], None)
    both = encode_identity([("authorization", "Bearer jwt")], "alice")

    async def scenario(client: CoreLinkClient) -> None:
        put, rng = METHOD_NUMBER[PUT], METHOD_NUMBER[RANGE]
        results = await asyncio.gather(
            client.call(put, b"a", token),
            client.call(put, b"b"),
            client.call(UNCOUNTED + rng, b"c", both),
        )
        assert list(results) == [(0, b"put:a"), (0, b"put:b"), (0, b"range:c")]
        snapshot = client.open_stream(METHOD_NUMBER[SNAPSHOT], b"db", token)
        assert await snapshot.incoming.get() == (STREAM_MESSAGE, b"chunk of db")
        assert await snapshot.incoming.get() == (0, b"")
        watch = client.open_stream(METHOD_NUMBER[WATCH], b"", both)
        watch.send(b"w")
        assert await watch.incoming.get() == (STREAM_MESSAGE, b"echo w")
        watch.half_close()
        assert await watch.incoming.get() == (0, b"")

    asyncio.run(_with_link(seen, scenario))
    assert sorted(seen) == sorted(
        [
            ("put", (("token", "alice-token"),), None),
            ("put", (), None),
            ("range", (("authorization", "Bearer jwt"),), "alice"),
            ("snapshot", (("token", "alice-token"),), None),
            ("watch", (("authorization", "Bearer jwt"),), "alice"),
        ]
    )


def test_a_malformed_identity_fails_its_call_and_the_link_goes_on() -> None:
    seen: Seen = []
    bad = _block((7, b"??"))

    async def scenario(client: CoreLinkClient) -> None:
        code, text = await client.call(METHOD_NUMBER[PUT], b"x", bad)
        assert code == INTERNAL and b"unknown identity field" in text
        stream = client.open_stream(METHOD_NUMBER[WATCH], b"", IDENTITY_LENGTH.pack(99))
        kind, text = await stream.incoming.get()
        assert kind == INTERNAL and stream.ended
        # An unknown method with an identity: UNIMPLEMENTED, as without one.
        unknown = METHOD_NUMBER["/etcdserverpb.KV/Compact"]
        token = encode_identity([("token", "t")], None)
        assert (await client.call(unknown, b"", token))[0] == grpc.StatusCode.UNIMPLEMENTED.value[0]
        assert await client.call(METHOD_NUMBER[PUT], b"y", token) == (0, b"put:y")

    asyncio.run(_with_link(seen, scenario))
    assert seen == [("put", (("token", "t"),), None)]
