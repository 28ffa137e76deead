"""The core link between front-end processes and the core: its record format, and both ends
over a real unix socket with small handler tables (the etcd handlers run over it in the
integration suite, which `make test` runs with two front-end processes)."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from etcdpy.corelink.client import CoreLinkClient, CoreLinkLost
from etcdpy.corelink.core import CoreLinkServer
from etcdpy.corelink.wire import (
    INITIAL_CREDIT,
    LINK_METHODS,
    METHOD_NUMBER,
    REQUEST_HEADER,
    RESPONSE_HEADER,
    STREAM_MESSAGE,
    RecordReader,
    encode_request,
    encode_response,
)

PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
WATCH = "/etcdserverpb.Watch/Watch"
SNAPSHOT = "/etcdserverpb.Maintenance/Snapshot"


def test_every_v3_method_has_a_number_both_sides_agree_on() -> None:
    assert tuple(sorted(LINK_METHODS)) == LINK_METHODS
    assert {PUT, RANGE, WATCH, SNAPSHOT, "/etcdserverpb.Lease/LeaseKeepAlive"} <= set(LINK_METHODS)
    assert {"/v3lockpb.Lock/Lock", "/v3electionpb.Election/Observe"} <= set(LINK_METHODS)
    assert all(METHOD_NUMBER[path] == i for i, path in enumerate(LINK_METHODS))


def test_records_cut_anywhere_come_out_whole_and_in_order() -> None:
    records = [encode_request(i, i % 7, bytes([i]) * i) for i in range(1, 40)]
    stream = b"".join(records)
    for step in (1, 3, 10, 64, len(stream)):
        reader = RecordReader(REQUEST_HEADER)
        got = []
        for start in range(0, len(stream), step):
            got += list(reader.feed(stream[start : start + step]))
        assert got == [(i, i % 7, bytes([i]) * i) for i in range(1, 40)]


def test_response_records_carry_status_and_payload() -> None:
    reader = RecordReader(RESPONSE_HEADER)
    data = encode_response(7, 0, b"ok") + encode_response(8, STREAM_MESSAGE, b"") + b"\x09"
    assert list(reader.feed(data)) == [(7, 0, b"ok"), (8, STREAM_MESSAGE, b"")]


def test_an_impossible_length_is_refused() -> None:
    reader = RecordReader(RESPONSE_HEADER)
    with pytest.raises(ValueError):
        list(reader.feed(RESPONSE_HEADER.pack(1, 0, 2**32 - 1)))


# -- both ends over a unix socket -------------------------------------------------------------


async def _put(request: bytes, context: Any) -> bytes:
    if request == b"bad":
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")
    if request == b"boom":
        raise RuntimeError("boom")
    await asyncio.sleep(0)
    return b"put:" + request


class _Watch:
    """A stream handler like etcdpy's Watch: a coroutine that writes through the context."""

    def __init__(self) -> None:
        self.sent = 0
        self.cancelled = asyncio.Event()

    async def __call__(self, requests: AsyncIterator[bytes], context: Any) -> None:
        try:
            async for request in requests:
                if request == b"flood":
                    for i in range(INITIAL_CREDIT * 3):
                        await context.write(b"event %d" % i)
                        self.sent += 1
                else:
                    await context.write(b"echo " + request)
            await context.write(b"bye")
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


async def _snapshot(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for i in range(3):
        yield b"chunk %d of %s" % (i, request)
    await context.abort(grpc.StatusCode.DATA_LOSS, "snapshot: lost")


Scenario = Callable[[CoreLinkClient, _Watch], Awaitable[None]]


def _run(scenario: Scenario) -> None:
    async def main() -> None:
        watch = _Watch()
        handlers: dict[str, Any] = {
            PUT: grpc.unary_unary_rpc_method_handler(_put),
            WATCH: grpc.stream_stream_rpc_method_handler(watch),
            SNAPSHOT: grpc.unary_stream_rpc_method_handler(_snapshot),
        }
        hellos: list[bytes] = []
        server = CoreLinkServer(handlers, hellos.append)
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "link.sock")
            await server.listen(path)
            lost = asyncio.Event()
            client = await CoreLinkClient.connect(path, lost.set)
            client.hello("3")
            try:
                await asyncio.wait_for(scenario(client, watch), 10)
            finally:
                client.close()
                await server.close()
            assert hellos == [b"3"]

    asyncio.run(main())


def test_unary_calls_answer_ok_abort_and_unexpected_errors() -> None:
    async def scenario(client: CoreLinkClient, _: _Watch) -> None:
        number = METHOD_NUMBER[PUT]
        results = await asyncio.gather(
            *(client.call(number, b"k%d" % i) for i in range(100)),
            client.call(number, b"bad"),
            client.call(number, b"boom"),
            client.call(METHOD_NUMBER[RANGE], b""),
        )
        assert results[:100] == [(0, b"put:k%d" % i) for i in range(100)]
        assert results[100] == (3, b"etcdserver: key is not provided")
        code, text = results[101]
        assert code == grpc.StatusCode.UNKNOWN.value[0] and b"boom" in text
        assert results[102][0] == grpc.StatusCode.UNIMPLEMENTED.value[0]

    _run(scenario)


def test_a_stream_carries_messages_both_ways_and_ends_with_the_core() -> None:
    async def scenario(client: CoreLinkClient, _: _Watch) -> None:
        stream = client.open_stream(METHOD_NUMBER[WATCH], b"")
        stream.send(b"a")
        stream.send(b"b")
        stream.half_close()
        got = [await stream.incoming.get() for _ in range(4)]
        assert got == [
            (STREAM_MESSAGE, b"echo a"),
            (STREAM_MESSAGE, b"echo b"),
            (STREAM_MESSAGE, b"bye"),
            (0, b""),
        ]
        assert stream.ended

    _run(scenario)


def test_a_server_stream_ends_with_the_handlers_status() -> None:
    async def scenario(client: CoreLinkClient, _: _Watch) -> None:
        stream = client.open_stream(METHOD_NUMBER[SNAPSHOT], b"db")
        got = [await stream.incoming.get() for _ in range(4)]
        assert got[:3] == [(STREAM_MESSAGE, b"chunk %d of db" % i) for i in range(3)]
        assert got[3] == (grpc.StatusCode.DATA_LOSS.value[0], b"snapshot: lost")

    _run(scenario)


def test_the_core_sends_no_more_than_its_credit() -> None:
    async def scenario(client: CoreLinkClient, watch: _Watch) -> None:
        stream = client.open_stream(METHOD_NUMBER[WATCH], b"")
        stream.send(b"flood")
        for _ in range(INITIAL_CREDIT):
            assert (await stream.incoming.get())[0] == STREAM_MESSAGE
        await asyncio.sleep(0.1)  # a reader that does not keep up: the core waits for it
        assert watch.sent == INITIAL_CREDIT
        assert stream.incoming.empty()
        stream.grant(10)
        for _ in range(10):
            assert (await stream.incoming.get())[0] == STREAM_MESSAGE
        await asyncio.sleep(0.1)
        assert watch.sent == INITIAL_CREDIT + 10
        stream.cancel()  # the client went away: the core's handler is cancelled
        await asyncio.wait_for(watch.cancelled.wait(), 5)

    _run(scenario)


def test_a_unary_call_whose_client_goes_away_is_cancelled_in_the_core() -> None:
    lock = "/v3lockpb.Lock/Lock"  # a call that may wait as long as its client does
    cancelled = asyncio.Event()

    async def wait_forever(request: bytes, context: Any) -> bytes:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    async def main() -> None:
        handlers: dict[str, Any] = {
            lock: grpc.unary_unary_rpc_method_handler(wait_forever),
            PUT: grpc.unary_unary_rpc_method_handler(_put),
        }
        server = CoreLinkServer(handlers, lambda _: None)
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "link.sock")
            await server.listen(path)
            client = await CoreLinkClient.connect(path, lambda: None)
            try:
                waiting = asyncio.ensure_future(client.call(METHOD_NUMBER[lock], b"name"))
                await asyncio.sleep(0.05)
                assert not cancelled.is_set()
                client.cancel_call(waiting)  # what a front-end does when its client goes away
                waiting.cancel()
                await asyncio.wait_for(cancelled.wait(), 5)
                # The link goes on serving calls.
                assert await client.call(METHOD_NUMBER[PUT], b"k") == (0, b"put:k")
            finally:
                client.close()
                await server.close()

    asyncio.run(main())


def test_calls_fail_when_the_core_goes_away() -> None:
    async def main() -> None:
        handlers: dict[str, Any] = {WATCH: grpc.stream_stream_rpc_method_handler(_Watch())}
        server = CoreLinkServer(handlers, lambda _: None)
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "link.sock")
            await server.listen(path)
            lost = asyncio.Event()
            client = await CoreLinkClient.connect(path, lost.set)
            stream = client.open_stream(METHOD_NUMBER[WATCH], b"")
            await asyncio.sleep(0.05)
            await server.close()
            await asyncio.wait_for(lost.wait(), 5)
            assert stream.ended
            assert (await stream.incoming.get())[0] == grpc.StatusCode.CANCELLED.value[0]
            with pytest.raises(CoreLinkLost):
                await client.call(METHOD_NUMBER[PUT], b"k")
            with pytest.raises(CoreLinkLost):
                client.open_stream(METHOD_NUMBER[WATCH], b"")

    asyncio.run(main())


def test_renewal_batches_round_trip() -> None:
    from etcdpy.corelink.wire import (
        LEASE_NOT_FOUND_TTL,
        decode_lease_ids,
        decode_renewals,
        encode_lease_ids,
        encode_renewals,
    )

    ids = [1, 2**63 - 1, 7]
    assert decode_lease_ids(encode_lease_ids(ids)) == tuple(ids)
    with pytest.raises(ValueError):
        decode_lease_ids(encode_lease_ids(ids)[:-1])
    results = [(30, 0, ""), (LEASE_NOT_FOUND_TTL, 0, ""), (0, 14, "etcdserver: no leader")]
    assert decode_renewals(encode_renewals(results), 3) == results
    assert decode_renewals(encode_renewals(results[:2]), 2) == results[:2]
    with pytest.raises(ValueError):
        decode_renewals(encode_renewals(results)[:5], 3)
